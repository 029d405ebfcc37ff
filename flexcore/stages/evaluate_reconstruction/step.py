"""Score the flexible and rigid reconstructions against a simulated dataset's ground truth, in
the moving domain (the simulation's ``moving_mask.mrc``) and in the whole mask.

* **Half-map FSC** inside the moving domain, the static core (whole mask × (1 − moving)) and
  the whole mask, flexible vs rigid (resolution at 0.143).
* **FSC with the truth**: for every ground-truth map, the flexible map deformed to the median
  latent of the particles whose true coordinate is nearest that map's (the generator's high-
  resolution path), and the rigid map as it is, each against the ground-truth map — mean FSC
  over the shells where the rigid half maps still carry signal (up to their whole-mask 0.143
  shell) and the resolution at FSC 0.5.

Outputs of :func:`write_reconstruction_evaluation`: ``reconstruction.tsv`` (one row per
ground-truth map), ``reconstruction.json`` (the record) and ``moving_fsc.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...core.deform import VolumeDeformer
from ...core.errors import InputFileError
from ...core.fourier import center_crop
from ...core.fsc import format_resolution, fsc_curve, mean_fsc, resolution_at, shell_frequencies
from ...core.fsc_outputs import format_fsc_axes
from ...core.ground_truth import check_latents_match, read_truth
from ...core.io import read_map
from ...core.trained import load_trained_model
from ...core.utils.atomic import write_text_atomic
from ...core.utils.figures import new_figure, save_png
from ...core.utils.logging import get_logger
from ...core.utils.outputs import prepare_outputs

log = get_logger("flexcore.evaluate")

def _map(path: Path, box: int) -> np.ndarray:
    vol, _ = read_map(path)
    return center_crop(torch.from_numpy(vol), box, 3).numpy() if vol.shape[0] != box else vol


def evaluate_reconstruction(sim_dir, prep_dir, checkpoint, recon_dir, mesh=None,
                            window: float = 0.15) -> dict:
    """Compare ``recon_dir``'s maps with the ground truth of ``flexcore simulate`` output
    (see the module docstring). Needs the rigid baseline (``noflex_map*.mrc``)."""
    sim_dir, prep_dir, recon_dir = Path(sim_dir), Path(prep_dir), Path(recon_dir)
    info, truth = read_truth(sim_dir, prep_dir)
    names = ["flex_map_half_A", "flex_map_half_B", "noflex_map_half_A", "noflex_map_half_B",
             "flex_map", "noflex_map"]
    for n in names:
        if not (recon_dir / f"{n}.mrc").is_file():
            raise InputFileError(recon_dir / f"{n}.mrc", "not found (the evaluation needs the flexible "
                                                         "reconstruction and its rigid baseline)")
    fa, psize = read_map(recon_dir / "flex_map_half_A.mrc")
    box = fa.shape[0]
    fb, ra, rb, flex, rigid = (read_map(recon_dir / f"{n}.mrc")[0] for n in names[1:])
    for n, vol in zip(names[1:], (fb, ra, rb, flex, rigid)):
        if vol.shape != fa.shape:
            raise InputFileError(recon_dir / f"{n}.mrc", f"map is {vol.shape[0]} px but "
                                                         f"flex_map_half_A.mrc is {box} px: all "
                                                         "must come from one reconstruction")
    moving = np.clip(_map(sim_dir / "moving_mask.mrc", box), 0, 1)
    whole = np.clip(_map(sim_dir / "mask.mrc", box), 0, 1)
    masks = {"moving": moving, "core": whole * (1 - moving), "whole": whole}
    half = {}
    for region, m in masks.items():
        for kind, (a, b) in (("flex", (fa, fb)), ("rigid", (ra, rb))):
            curve = fsc_curve(a, b, mask=m)
            half[f"{kind}_{region}"] = {"curve": curve, "res0143_A": resolution_at(curve, 0.143, psize)}
    below = np.flatnonzero(half["rigid_whole"]["curve"][1:] < 0.143)
    top = int(below[0]) if len(below) else box // 2
    model = load_trained_model(checkpoint, mesh)
    check_latents_match(model.latents, truth, checkpoint, prep_dir)
    deformer = VolumeDeformer(model, torch.from_numpy(flex), psize, supersample=2, device="cpu")
    rows, truth_curves = [], {"flex_moving": [], "rigid_moving": []}
    for path, coord in zip(info["gt_maps"], info["gt_coordinates"]):
        near = np.all(np.abs(truth - np.asarray(coord)) <= window, axis=1)
        if near.sum() < 5:
            continue
        z = np.median(model.latents[near], axis=0).astype(np.float32)
        gt = _map(sim_dir / path, box)
        frame = deformer.frame(z)
        row = {"gt_map": path, "coordinate": " ".join(f"{c:+.3f}" for c in coord),
               "n_particles": int(near.sum())}
        for region in ("moving", "whole"):
            for kind, vol in (("flex", frame), ("rigid", rigid)):
                curve = fsc_curve(vol, gt, mask=masks[region])
                row[f"fsc_{region}_{kind}"] = mean_fsc(curve, top)
                row[f"res05_{region}_{kind}_A"] = resolution_at(curve, 0.5, psize)
                if region == "moving":
                    truth_curves[f"{kind}_moving"].append(curve)
        rows.append(row)
    gain = np.array([r["fsc_moving_flex"] - r["fsc_moving_rigid"] for r in rows])
    return {
        "box": box, "pixel_size_A": psize, "signal_shells": top,
        "half_map_res0143_A": {k: v["res0143_A"] for k, v in half.items()},
        "half_map_fsc": {k: v["curve"].tolist() for k, v in half.items()},
        "truth_fsc_moving": {k: np.mean(v, axis=0).tolist() for k, v in truth_curves.items() if v},
        "maps": rows, "n_maps": len(rows),
        "mean_fsc_moving_flex": float(np.mean([r["fsc_moving_flex"] for r in rows])),
        "mean_fsc_moving_rigid": float(np.mean([r["fsc_moving_rigid"] for r in rows])),
        "mean_fsc_moving_gain": float(gain.mean()) if len(gain) else float("nan"),
        "flex_better_moving": int((gain > 0).sum()),
    }


def write_reconstruction_evaluation(record: dict, out_dir) -> None:
    """``reconstruction.tsv``, ``reconstruction.json`` and ``moving_fsc.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "reconstruction.json", json.dumps(record, indent=2) + "\n")
    table = pd.DataFrame(record["maps"])
    for k, v in record["half_map_res0143_A"].items():
        table[f"halfmap_res0143_{k}_A"] = v
    write_text_atomic(out / "reconstruction.tsv", table.to_csv(sep="\t", index=False,
                                                               float_format="%.4g"))
    box, psize = record["box"], record["pixel_size_A"]
    freqs = shell_frequencies(box, psize)
    fig = new_figure((11, 4.2), dpi=100)
    ax = fig.add_subplot(1, 2, 1)
    res = record["half_map_res0143_A"]
    for region, colour in (("moving", "tab:red"), ("core", "tab:green"), ("whole", "tab:blue")):
        for kind, style in (("flex", "-"), ("rigid", "--")):
            key = f"{kind}_{region}"
            ax.plot(freqs[1:], record["half_map_fsc"][key][1:], style, color=colour,
                    label=f"{region}, {kind}: {format_resolution(res[key])}")
    ax.axhline(0.143, color="0.3", lw=0.8, ls=":")
    ax.set_title("half-map FSC in the simulation's masks", fontsize=9)
    ax2 = fig.add_subplot(1, 2, 2)
    for kind, style in (("flex", "-"), ("rigid", "--")):
        curve = record["truth_fsc_moving"].get(f"{kind}_moving")
        if curve is not None:
            label = "flex map deformed to each state" if kind == "flex" else "rigid map"
            ax2.plot(freqs[1:], curve[1:], style, color="tab:red", label=label)
    ax2.axhline(0.5, color="0.3", lw=0.8, ls=":")
    ax2.set_title(f"FSC with the ground truth in the moving domain, mean of {record['n_maps']} "
                  f"states\n(mean over the signal shells: flex {record['mean_fsc_moving_flex']:.3f}, "
                  f"rigid {record['mean_fsc_moving_rigid']:.3f})", fontsize=9)
    for a in (ax, ax2):
        format_fsc_axes(a, freqs, resolution_axis=False)
        a.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    save_png(fig, out / "moving_fsc.png")


def run_evaluate_reconstruction(sim_dir, prep_dir, checkpoint, recon_dir, out_dir, *,
                                mesh=None) -> dict:
    """The ``evaluate_reconstruction`` step: :func:`evaluate_reconstruction`, written by
    :func:`write_reconstruction_evaluation` into ``out_dir``. Returns the record."""
    prepare_outputs("evaluate-reconstruction", out_dir,
                    ["reconstruction.json", "reconstruction.tsv", "moving_fsc.png"],
                    {"checkpoint": checkpoint, "reconstruction folder": recon_dir})
    record = evaluate_reconstruction(sim_dir, prep_dir, checkpoint, recon_dir, mesh=mesh)
    write_reconstruction_evaluation(record, out_dir)
    res = record["half_map_res0143_A"]
    log.info("moving domain: half-map FSC 0.143 flex %s, rigid %s; mean FSC with the truth flex "
             "%.3f, rigid %.3f", format_resolution(res["flex_moving"]),
             format_resolution(res["rigid_moving"]), record["mean_fsc_moving_flex"],
             record["mean_fsc_moving_rigid"])
    return record
