"""Per-state maps: the high-resolution flexible reconstruction deformed to chosen latent points,
each with its own half-map FSC.

The reconstruction's canonical half maps (``flex_map_half_A/B.mrc``) are each convected to a
state ``z`` by the trained flow upscaled to their box (the generator's high-resolution path,
:class:`~flexcore.core.deform.VolumeDeformer`); the two deformed halves stay independent, so
their FSC — inside the mesh's soft mask deformed the same way — is the gold-standard FSC of
the state map. The state map is their average, and a sharpened copy uses the reconstruction's
B-factor (``recon.json``) with the state's own FSC weighting and 0.143 low-pass.

States come from ``select.json`` (each subset's state: k-means centroids, region centres,
given points), ``generate.json`` (every frame of every series) or a latent-point file
(``.npy``, ``.csv``/``.txt``, ``.star``/``.cs`` with latent columns).

Outputs in ``out_dir``: ``maps/state_<name>.mrc``, ``_half_A.mrc``, ``_half_B.mrc``,
``_sharp.mrc``; ``states.tsv`` (per state: latent, particles, FSC 0.143 and 0.5
resolutions), ``states_fsc.tsv`` and ``states_fsc.png`` (FSC curves), ``states.cxc``
(ChimeraX: the sharpened state maps side by side) and ``states.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ...core.deform import VolumeDeformer
from ...core.errors import InputFileError
from ...core.fsc import format_resolution, fsc_curve, resolution_at, shell_frequencies
from ...core.fsc_outputs import format_fsc_axes, sharpen, write_fsc_table
from ...core.io import read_half_maps, read_latent_points, write_map
from ...core.trained import load_trained_model
from ...core.utils import distributed
from ...core.utils.atomic import write_text_atomic
from ...core.utils.figures import new_figure, save_png
from ...core.utils.logging import get_logger
from ...core.utils.outputs import prepare_outputs
from ...core.utils.provenance import write_provenance

log = get_logger("flexcore.states")


def read_states(path, latent_dim: int) -> tuple[list[str], np.ndarray, list[int | None]]:
    """Names, latents ``(S, K)`` and particle counts (``None`` when unknown) of the states in
    ``path`` (``select.json``, ``generate.json`` or a latent-point file)."""
    path = Path(path)
    if path.suffix != ".json":
        z = read_latent_points(path, latent_dim)
        return [f"point{i + 1:02d}" for i in range(len(z))], z, [None] * len(z)
    if not path.is_file():
        raise InputFileError(path, "state file not found")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"is not valid JSON: {exc}") from exc
    if record.get("format") == "flexcore-selection":
        raise InputFileError(path, "is a selection drawn in the latent explorer; write its subsets "
                                   "with `flexcore select --from` first and give that select.json")
    if "subsets" in record:
        names = [s["name"] for s in record["subsets"]]
        z = np.array([s["state"] for s in record["subsets"]], dtype=np.float32)
        counts = [int(s["n_particles"]) for s in record["subsets"]]
    elif "series" in record:
        names, rows = [], []
        for series, rec in record["series"].items():
            for i, latent in enumerate(rec["latents"]):
                names.append(f"{series}_{i:03d}")
                rows.append(latent)
        z, counts = np.array(rows, dtype=np.float32), [None] * len(rows)
    else:
        raise InputFileError(path, "has neither 'subsets' (select.json) nor 'series' "
                                   "(generate.json)")
    if z.ndim != 2 or len(z) == 0 or z.shape[1] != latent_dim:
        raise InputFileError(path, f"states have shape {z.shape}; the model has {latent_dim} "
                                   "latent dimension(s)")
    return names, z, counts


def _half_maps(recon_dir: Path, model) -> tuple[np.ndarray, np.ndarray, float]:
    paths = [recon_dir / f"flex_map_half_{half}.mrc" for half in ("A", "B")]
    for path in paths:
        if not path.is_file():
            raise InputFileError(path, "half map not found: run `flexcore reconstruct` first")
    half_a, half_b, psize = read_half_maps(*paths)
    extent, train_extent = half_a.shape[0] * psize, model.box * model.pixel_size_A
    if psize <= 0 or abs(extent - train_extent) > 0.01 * train_extent:
        raise InputFileError(paths[0], f"map spans {extent:.1f} Å but the model's box spans "
                                       f"{train_extent:.1f} Å (another model's reconstruction?)")
    return half_a, half_b, psize


def run_state_maps(checkpoint, recon_dir, out_dir, *, states, mesh=None, supersample: int = 2,
                   bfactor: float | None = None, device: str = "auto") -> dict:
    """Per-state maps with half-map FSCs (see the module docstring).

    Parameters
    ----------
    checkpoint : training checkpoint (``.pt``).
    recon_dir : the reconstruction folder (``flex_map_half_A/B.mrc``, ``recon.json``).
    states : ``select.json``, ``generate.json`` or a latent-point file.
    mesh : mesh file (default: the one the checkpoint records).
    supersample : sub-points per voxel edge of the mass-conserving splat.
    bfactor : B-factor (Å², positive = decay) for the sharpened maps; None = the one
        ``recon.json`` records (a Guinier fit per state when it records none).
    device : ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """
    recon_dir = Path(recon_dir)
    dev = distributed.resolve_device(device, "states.device")
    model = load_trained_model(checkpoint, mesh, device=dev)
    names, points, counts = read_states(states, model.latent_dim)
    out = prepare_outputs("state-maps", out_dir, [
        "states.tsv", "states_fsc.tsv", "states_fsc.png", "states.cxc", "states.json",
        *(f"maps/state_{n}{s}.mrc" for n in names for s in ("", "_half_A", "_half_B", "_sharp"))],
        {"checkpoint": checkpoint, "mesh": model.mesh_path, "state file": states,
         **{f"half map {h}": recon_dir / f"flex_map_half_{h}.mrc" for h in "AB"}})
    half_a, half_b, psize = _half_maps(recon_dir, model)
    if bfactor is None and (recon_dir / "recon.json").is_file():
        bfactor = json.loads((recon_dir / "recon.json").read_text()).get("sharpening", {}).get(
            "bfactor_A2")
    box = half_a.shape[0]
    mesh_hi = model.mesh if box == model.box else model.mesh.upscale(box)
    deform = {name: VolumeDeformer(model, torch.from_numpy(vol), psize, supersample, dev,
                                   keep_outside=True, mesh=mesh_hi)
              for name, vol in (("A", half_a), ("B", half_b),
                                ("mask", mesh_hi.mask_soft.astype(np.float32)))}
    (out / "maps").mkdir(parents=True, exist_ok=True)
    curves, rows, level = {}, [], None
    for name, z, count in zip(names, points, counts):
        a, b = deform["A"].frame(z), deform["B"].frame(z)
        mask = np.clip(deform["mask"].frame(z), 0.0, 1.0)
        fsc = fsc_curve(a, b, mask=mask)
        res = resolution_at(fsc, 0.143, psize)
        full = 0.5 * (a + b)
        sharp, record = sharpen(full, psize, fsc, res, bfactor)
        stem = out / "maps" / f"state_{name}"
        for suffix, vol in (("_half_A", a), ("_half_B", b), ("", full), ("_sharp", sharp)):
            write_map(stem.with_name(stem.name + suffix + ".mrc"), vol, psize)
        curves[name] = fsc
        level = level if level is not None else float(np.percentile(sharp, 99.5)) * 0.35
        rows.append({"state": name, "latent": [float(v) for v in z], "n_particles": count,
                     "fsc0143_A": res, "fsc05_A": resolution_at(fsc, 0.5, psize),
                     "bfactor_A2": record["bfactor_A2"]})
        log.info("state %s at z = %s: FSC 0.143 %s (half maps deformed at box %d)", name,
                 np.round(z, 3).tolist(), format_resolution(res), box)
    write_state_table(out / "states.tsv", rows)
    write_fsc_table(out / "states_fsc.tsv", curves, box, psize)
    plot_state_fsc(out / "states_fsc.png", curves, rows, box, psize)
    write_chimerax_states(out / "states.cxc", [f"maps/state_{n}_sharp.mrc" for n in names], level)
    summary = {"checkpoint": str(Path(checkpoint).resolve()), "recon_dir": str(recon_dir.resolve()),
               "states_from": str(states), "box": box, "pixel_size_A": psize,
               "fsc_mask": "mesh mask_soft upscaled and deformed to each state", "states": rows}
    write_provenance(out / "states.json", "state_maps",
                     dict(states=str(states), supersample=supersample, bfactor=bfactor,
                          device=device, mesh=str(mesh) if mesh else None), extra=summary)
    return summary


def write_state_table(path, rows: list[dict]) -> None:
    """TSV: state, latent (space-separated), n_particles, fsc0143_A, fsc05_A."""
    lines = ["state\tlatent\tn_particles\tfsc0143_A\tfsc05_A"]
    for r in rows:
        lines.append("\t".join([r["state"], " ".join(f"{v:+.4f}" for v in r["latent"]),
                                "" if r["n_particles"] is None else str(r["n_particles"]),
                                f"{r['fsc0143_A']:.3f}", f"{r['fsc05_A']:.3f}"]))
    write_text_atomic(path, "\n".join(lines) + "\n")


def plot_state_fsc(path, curves: dict[str, np.ndarray], rows: list[dict], box: int,
                   pixel_size_A: float) -> None:
    """Half-map FSC of every state map (at most 12 drawn: evenly picked), 0.143 line."""
    freqs = shell_frequencies(box, pixel_size_A)
    names = list(curves)
    picks = np.unique(np.linspace(0, len(names) - 1, min(12, len(names))).round().astype(int))
    fig = new_figure((6.4, 4.2), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    for j, i in enumerate(picks):
        r = rows[i]
        ax.plot(freqs[1:], curves[names[i]][1:], color=f"C{j % 10}",
                label=f"{names[i]}: {format_resolution(r['fsc0143_A'])}")
    ax.axhline(0.143, color="tab:red", lw=0.8, ls=":")
    format_fsc_axes(ax, freqs, "FSC of the deformed half maps", resolution_axis=False)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(f"per-state maps ({len(names)} states{'' if len(picks) == len(names) else ', 12 shown'})",
                 fontsize=10)
    save_png(fig, path, bbox_inches="tight")


def write_chimerax_states(path: Path, maps: list[str], level: float) -> None:
    """ChimeraX command file opening the state maps side by side (paths relative to it)."""
    lines = [f"# flexcore per-state maps: open in ChimeraX with `open {path.name}`"]
    lines += [f"open {m}" for m in maps]
    lines += [f"volume all level {level:.4g} style surface", "tile", "view"]
    write_text_atomic(path, "\n".join(lines) + "\n")
