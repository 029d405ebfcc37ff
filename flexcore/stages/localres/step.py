"""``flexcore localres``: where flexible reconstruction helped — half-map FSC per region
(moving domain, core, or segments) for the flexible and rigid reconstructions, and local-
resolution maps of both.

Regions come from :mod:`flexcore.stages.localres.regions` (the mesh's segments, or the mesh cells
grouped by how far the flow moves them); local resolution from
:mod:`flexcore.stages.localres.windowed`. Inputs: the training checkpoint (flow, latents, mesh) and
the reconstruction folder (``flex_map_half_A/B.mrc``, ``noflex_map_half_A/B.mrc``).

Outputs in ``out_dir``: ``regions.tsv`` (per region: voxels, motion amplitude, FSC 0.143 of
flex and rigid, gain, median local resolution), ``regions_fsc.tsv`` and ``fsc_regions.png``
(whole mask and every region, flex solid, rigid dashed), ``regions.mrc`` (region labels),
``localres_flex.mrc``, ``localres_noflex.mrc`` (Å; 0 outside the mask), ``localres.png``
(central slices and histograms), ``localres.cxc`` (ChimeraX: the maps coloured by local
resolution) and ``localres.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...core.errors import InputFileError
from ...core.fsc import format_resolution
from ...core.fsc_outputs import write_fsc_table
from ...core.io import read_half_maps as read_half_map_pair
from ...core.io import write_map
from ...core.trained import load_trained_model
from ...core.utils import distributed
from ...core.utils.atomic import write_text_atomic
from ...core.utils.logging import get_logger
from ...core.utils.outputs import prepare_outputs
from ...core.utils.provenance import write_provenance
from .parameters import check_parameters
from .plots import display_range, plot_local_resolution, plot_region_fsc
from .regions import (
    LABEL_NAMES,
    motion_amplitude,
    motion_labels,
    region_fsc,
    segment_labels,
    soft_region_mask,
)
from .windowed import local_resolution

log = get_logger("flexcore.localres")
KINDS = ("flex", "noflex")

OUTPUTS = ("regions.mrc", "localres_flex.mrc", "localres_noflex.mrc", "regions.tsv",
           "regions_fsc.tsv", "fsc_regions.png", "localres.png", "localres.cxc", "localres.json")

def read_half_maps(recon_dir: Path) -> tuple[dict, float]:
    """``{kind: (half_A, half_B)}`` of the flexible and (when present) rigid reconstruction."""
    maps, psize = {}, None
    for kind in KINDS:
        paths = [recon_dir / f"{kind}_map_half_{h}.mrc" for h in ("A", "B")]
        if not all(p.is_file() for p in paths):
            if kind == "flex":
                raise InputFileError(paths[0], "half map not found: run `flexcore reconstruct` first")
            log.warning("no rigid baseline half maps in %s: flexible maps only", recon_dir)
            continue
        a, b, voxel = read_half_map_pair(*paths)
        if maps and (a.shape != maps["flex"][0].shape or abs(voxel - psize) > 1e-3 * psize):
            raise InputFileError(paths[0], f"rigid half map is {a.shape[0]} px at {voxel:.4g} "
                                           f"Å/px but the flexible ones are "
                                           f"{maps['flex'][0].shape[0]} px at {psize:.4g} Å/px: "
                                           "both must come from one reconstruction")
        maps[kind], psize = (a, b), voxel
    return maps, float(psize)


def run_localres(checkpoint, recon_dir, out_dir, *, mesh=None, region_quantile: float = 0.25,
                         window_px: int = 16, stride: int | None = None, threshold: float = 0.5,
                         n_samples: int = 256, device: str = "auto") -> dict:
    """Per-region FSC and local-resolution maps (see the module docstring).

    Parameters
    ----------
    checkpoint : training checkpoint (``.pt``); its latents and flow define the motion.
    recon_dir : the reconstruction folder.
    mesh : mesh file (default: the one the checkpoint records); a segmented mesh gives one
        region per segment.
    region_quantile : fraction of the mask voxels in the ``moving`` (largest motion) and the
        ``core`` (smallest) regions.
    window_px, stride, threshold : windowed FSC (window edge in voxels of the reconstruction
        box, grid spacing — None = ``max(2, round(N / 48))`` — and FSC threshold).
    n_samples : particles' latents sampled for the motion amplitude.
    device : ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """
    check_parameters(window_px, stride, threshold, region_quantile=region_quantile,
                     n_samples=n_samples)
    recon_dir = Path(recon_dir)
    dev = distributed.resolve_device(device, "localres.device")
    model = load_trained_model(checkpoint, mesh, device=dev)
    out = prepare_outputs("localres", out_dir, OUTPUTS, {
        "checkpoint": checkpoint, "mesh": model.mesh_path,
        **{f"half map {m.name}": m for m in sorted(recon_dir.glob("*_map_half_[AB].mrc"))}})
    maps, psize = read_half_maps(recon_dir)
    box = maps["flex"][0].shape[0]
    scale = box / model.box
    mesh_hi = model.mesh if box == model.box else model.mesh.upscale(box)
    if abs(mesh_hi.pixel_size_A - psize) > 1e-3 * psize:
        raise InputFileError(recon_dir / "flex_map_half_A.mrc",
                             f"voxel size {psize:.4f} Å differs from the model's upscaled mesh "
                             f"({mesh_hi.pixel_size_A:.4f} Å): another model's reconstruction?")
    check_parameters(window_px, stride, threshold, box=box)
    stride = stride or max(2, round(box / 48))
    amp_v = motion_amplitude(lambda z: model.displacements(z, dev), model.latents,
                             model.pixel_size_A, n_samples=n_samples)
    if mesh_hi.segments is not None:
        labels, names = segment_labels(mesh_hi.tet_map, mesh_hi.segments)
        thresholds, grouping = {}, "segments of the mesh"
        amp = np.where(mesh_hi.tet_map >= 0,
                       amp_v[mesh_hi.cells].mean(1)[np.maximum(mesh_hi.tet_map, 0)], 0.0)
    else:
        labels, amp, thresholds = motion_labels(mesh_hi.tet_map, mesh_hi.cells, amp_v,
                                                region_quantile)
        names, grouping = dict(LABEL_NAMES), (f"mesh cells by motion amplitude (top and bottom "
                                              f"{region_quantile:.0%} of the mask voxels)")
    write_map(out / "regions.mrc", labels.astype(np.float32), psize)
    masks = {"whole": mesh_hi.mask_soft}
    for label, name in names.items():
        if (labels == label).any():
            masks[name] = soft_region_mask(labels == label, mesh_hi.mask_soft, 2.0 * scale)
        else:
            log.warning("region %s is empty (the flow moves every cell alike)", name)
    curves, res = region_fsc(maps, masks, psize)
    local = {kind: local_resolution(a, b, mesh_hi.mask, psize, window_px, stride, threshold,
                                    device=dev) for kind, (a, b) in maps.items()}
    for kind, vol in local.items():
        write_map(out / f"localres_{kind}.mrc", vol, psize)
    rows = region_rows(masks, labels, names, amp, res, local, maps)
    write_region_table(out / "regions.tsv", rows)
    write_fsc_table(out / "regions_fsc.tsv", curves, box, psize)
    moving = "moving" if "moving" in masks else None
    title = _headline(res, moving)
    plot_region_fsc(out / "fsc_regions.png", curves, res, box, psize, title)
    plot_local_resolution(out / "localres.png", local, labels, names, psize, window_px)
    write_chimerax_localres(out / "localres.cxc", recon_dir, out, local, psize, window_px)
    summary = {"checkpoint": str(Path(checkpoint).resolve()), "recon_dir": str(recon_dir.resolve()),
               "box": box, "pixel_size_A": psize, "grouping": grouping, "thresholds": thresholds,
               "regions": rows, "resolution_0143_A": res, "summary": title,
               "localres": {"window_px": window_px, "window_A": window_px * psize,
                            "stride": stride, "threshold": threshold}}
    write_provenance(out / "localres.json", "localres",
                     dict(mesh=str(mesh) if mesh else None, region_quantile=region_quantile,
                          window_px=window_px, stride=stride, threshold=threshold,
                          n_samples=n_samples, device=device), extra=summary)
    log.info("%s", title)
    return summary


def _headline(res: dict, region: str | None) -> str:
    whole = f"whole mask: flex {format_resolution(res['flex_whole'])}"
    if "noflex_whole" in res:
        whole += f", rigid {format_resolution(res['noflex_whole'])}"
    if region is None:
        return whole
    line = f"{region}: flex {format_resolution(res[f'flex_{region}'])}"
    if f"noflex_{region}" in res:
        line += f", rigid {format_resolution(res[f'noflex_{region}'])}"
    return f"FSC 0.143 — {line}; {whole}"


def region_rows(masks, labels, names, amp, res, local, maps) -> list[dict]:
    """One record per region (``whole`` first) for ``regions.tsv`` / ``localres.json``."""
    by_name = {v: k for k, v in names.items()}
    rows = []
    n_mask = int((labels > 0).sum())
    for region in masks:
        hard = labels > 0 if region == "whole" else labels == by_name[region]
        row = {"region": region, "voxels": int(hard.sum()),
               "fraction": float(hard.sum() / max(n_mask, 1)),
               "motion_rms_A": float(amp[hard].mean()) if hard.any() else 0.0}
        for kind in maps:
            row[f"fsc0143_{kind}_A"] = res[f"{kind}_{region}"]
            row[f"localres_median_{kind}_A"] = float(np.median(local[kind][hard]))
        if "noflex" in maps:
            row["gain_A"] = row["fsc0143_noflex_A"] - row["fsc0143_flex_A"]
        rows.append(row)
    return rows


def write_region_table(path, rows: list[dict]) -> None:
    cols = list(rows[0])
    lines = ["\t".join(cols)]
    for r in rows:
        lines.append("\t".join(r[c] if isinstance(r[c], str) else
                               (str(r[c]) if isinstance(r[c], int) else f"{r[c]:.4g}") for c in cols))
    write_text_atomic(path, "\n".join(lines) + "\n")


def write_chimerax_localres(path: Path, recon_dir: Path, out: Path, local: dict, psize: float,
                            window_px: int) -> None:
    """ChimeraX command file: each reconstruction's surface coloured by its local resolution
    (blue = fine, red = coarse; one palette for both, :func:`display_range`), side by side.
    Paths are relative to the file (ChimeraX runs a .cxc from its folder)."""
    lo, hi = display_range(np.concatenate([v[v > 0] for v in local.values()]), psize, window_px)
    mid = 0.5 * (lo + hi)
    palette = f"{lo:.2f},blue:{mid:.2f},white:{hi:.2f},red"
    lines = [f"# flexcore local resolution: open in ChimeraX with `open {path.name}`",
             f"# colours: {lo:.2f} Å blue, {mid:.2f} Å white, {hi:.2f} Å red"]
    model = 1
    for kind in local:
        rel = os.path.relpath(recon_dir / f"{kind}_map.mrc", out)
        lines += [f"open {rel}", f"open localres_{kind}.mrc",
                  f"volume #{model + 1} hide",
                  f"volume #{model} style surface",
                  f"color sample #{model} map #{model + 1} palette {palette}"]
        model += 2
    lines += [f"key blue:{lo:.1f} white:{mid:.1f} red:{hi:.1f}", "tile", "view"]
    write_text_atomic(path, "\n".join(lines) + "\n")
