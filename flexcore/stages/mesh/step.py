"""The ``mesh`` pipeline step: consensus map (+ mask, segmentation) → mesh and its views."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ...core.errors import ConfigError, InputFileError
from ...core.io.mrc import read_map, write_map
from ...core.io.pixels import check_volume
from ...core.mesh.core import TetMesh
from ...core.mesh.custom import delaunay_mesh, load_custom_arrays
from ...core.mesh.interop import import_cryosparc_pickle
from ...core.mesh.plots import plot_mesh_slices
from ...core.mesh.regular import cube_size, regular_tet_mesh
from ...core.mesh.seg_file import read_segmentation
from ...core.mesh.segments import parse_connections, parse_segment_ids, segmented_mesh
from ...core.mesh.solvent import lowpassed, mask_from_file, mask_from_map
from ...core.mesh.weights import RIGID_WEIGHT, rigidity_weights
from ...core.utils.logging import get_logger
from ...core.utils.outputs import prepare_outputs
from ...core.utils.provenance import write_provenance
from .chimerax import write_chimerax_script, write_mesh_pdb

log = get_logger("flexcore.mesh")
MESH_TYPES = ("regular", "delaunay")
OUTPUTS = ("mesh.npz", "mask.mrc", "mask_soft.mrc", "mesh_slices.png", "mesh.pdb", "mesh.cxc",
           "mesh_summary.json")


def _check_options(p: dict) -> None:
    if p["mesh_type"] not in MESH_TYPES:
        raise ConfigError(f"mesh_type must be one of {', '.join(MESH_TYPES)}, "
                          f"got {p['mesh_type']!r}")
    if p["cryosparc_mesh"] is not None:
        clash = [k for k in ("mask", "segmentation", "custom_mesh") if p[k] is not None]
        if p["connections"]:
            raise ConfigError("connections cannot change an imported CryoSPARC mesh (its "
                              "segments and fuses come from the pickle)")
        if clash or p["mesh_type"] != "regular":
            raise ConfigError(f"cryosparc_mesh brings its own mask and cells; it cannot be "
                              f"combined with {', '.join(clash) or 'mesh_type=' + p['mesh_type']}")
    elif p["segmentation"] is None and (p["connections"] or p["rigid_segments"]):
        raise ConfigError("connections and rigid_segments need a segmentation (a Segger .seg or "
                          "a label .mrc)")
    if p["segmentation"] is not None and (p["custom_mesh"] is not None
                                          or p["mesh_type"] != "regular"):
        raise ConfigError("a segmentation builds its own lattice submeshes; it cannot be combined "
                          "with custom_mesh or mesh_type='delaunay'")
    if p["custom_mesh"] is not None and p["mesh_type"] != "regular":
        raise ConfigError("custom_mesh and mesh_type='delaunay' exclude each other")


def run_mesh(consensus_map, out_dir, *, mask=None, n_cells: int = 20, lowpass_A: float = 10.0,
             threshold: float = 0.5, threshold_mode: str = "absolute", dilate_A: float = 2.0,
             pad_A: float = 5.0, rigidity_min: float = 0.5, stiffen_low_density: bool = False,
             segmentation=None, connections=None, rigid_segments=None, cryosparc_mesh=None,
             custom_mesh=None, mesh_type: str = "regular") -> dict:
    """Build the 3DFlex mesh for a consensus map and write it with its masks and views.

    Parameters
    ----------
    consensus_map : MRC path, the consensus map at the training box (voxel size in header).
    out_dir : folder for ``mesh.npz``, ``mask.mrc``, ``mask_soft.mrc``, ``mesh_slices.png``,
        ``mesh.pdb``, ``mesh.cxc`` and ``mesh_summary.json``.
    mask : optional MRC mask (same box and voxel size); else one is made from the map by
        low-pass (``lowpass_A``), threshold, dilation (``dilate_A``) and soft pad (``pad_A``).
    n_cells : lattice cubes across the box (5 tets per cube).
    threshold, threshold_mode : ``absolute`` density level, ``quantile`` (0-1) of the
        low-passed map or ``sigma`` above its mean; the level used goes into the summary.
    rigidity_min, stiffen_low_density : density-based weights (floor; 3.0 on the periphery).
    segmentation : Segger ``.seg`` or label ``.mrc``; ``connections`` ``"X>Y, ..."`` (a tree,
        breadth-first) fuses segments; ``rigid_segments`` ``"3, 5"`` get weight 20.
    cryosparc_mesh : a **trusted** CryoSPARC 3DFlex mesh pickle to import (its mask, cells
        and weights are kept; the voxel → tet map is recomputed and compared).
    custom_mesh : ``.npz`` with ``points`` (voxels, x y z from the centre) and ``cells``
        (+ optional ``rigidity``, ``segments``) to use over the mask.
    mesh_type : ``regular`` (default) or ``delaunay`` (needs the AGPL ``tetgen`` extra).

    Returns
    -------
    The record written to ``mesh_summary.json``: counts (``n_cells``, ``n_vertices``,
    ``mask_voxels``), ``mask`` (source, ``threshold_level`` used), ``weights``, the mesh
    details, ``parameters`` and provenance (versions, command, time).
    """
    params = {k: v for k, v in locals().items() if k not in ("consensus_map", "out_dir")}
    _check_options(params)
    out = prepare_outputs("mesh", out_dir, OUTPUTS, {
        "consensus map": consensus_map, "mask": mask, "segmentation": segmentation,
        "CryoSPARC mesh": cryosparc_mesh, "custom mesh": custom_mesh})
    volume, psize = read_map(consensus_map)
    if not psize > 0:
        raise InputFileError(consensus_map, "voxel size is 0 in the header; set it (e.g. with "
                                            "relion_image_handler --setangpix) and rerun")
    check_volume(volume, consensus_map, "consensus map")
    box = volume.shape[0]
    summary = {"consensus_map": str(consensus_map), "box": box, "pixel_size_A": psize}
    pairs = parse_connections(connections)
    rigid = parse_segment_ids(rigid_segments)
    if cryosparc_mesh is not None:
        mesh, level = _imported_mesh(cryosparc_mesh, box, rigid, summary), None
    else:
        mesh, level = _mesh_of_map(volume, psize, params, pairs, rigid, summary)
    summary.update(_write_outputs(mesh, out, consensus_map, level))
    log.info("mesh: %d cells, %d vertices, %d mask voxels, threshold level %s; wrote %s",
             mesh.n_cells, mesh.n_vertices, summary["mask_voxels"],
             "n/a" if level is None else f"{level:.6g}", out)
    return write_provenance(out / "mesh_summary.json", "mesh", params, extra=summary)


def _imported_mesh(cryosparc_mesh, box: int, rigid: list[int], summary: dict) -> TetMesh:
    """A trusted CryoSPARC mesh pickle, with ``rigid`` segments stiffened; records the
    import in ``summary``."""
    mesh, report = import_cryosparc_pickle(cryosparc_mesh, trusted=True)
    if mesh.box != box:
        raise InputFileError(cryosparc_mesh, f"mesh box N={mesh.box} does not match the map "
                                             f"box {box}")
    summary["mask"] = {"source": f"CryoSPARC mesh {cryosparc_mesh}"}
    summary["import"] = report
    summary["mesh_type"] = "cryosparc"
    log.info("imported %s: tm_points convention %s; tet map equal on %d voxels, %d face "
             "ties, %d mismatches", cryosparc_mesh, report["convention"],
             report["tet_map_equal"], report["tet_map_ties"], report["tet_map_mismatch"])
    if rigid:
        _check_rigid(rigid, mesh.segments)
        w = mesh.rigidity.copy()
        w[np.isin(mesh.segments, rigid)] = RIGID_WEIGHT
        mesh = dataclasses.replace(mesh, rigidity=w)
    return mesh


def _mesh_of_map(volume: np.ndarray, psize: float, p: dict, pairs, rigid: list[int],
                 summary: dict) -> tuple[TetMesh, float]:
    """The solvent mask (from ``p["mask"]`` or the map), the mesh the options ask for and
    its density-based rigidity weights; returns the mesh and the mask's threshold level."""
    box = volume.shape[0]
    if p["mask"] is not None:
        solvent = mask_from_file(p["mask"], box, psize, dilate_A=p["dilate_A"], pad_A=p["pad_A"])
    else:
        solvent = mask_from_map(volume, psize, lowpass_A=p["lowpass_A"], threshold=p["threshold"],
                                threshold_mode=p["threshold_mode"], dilate_A=p["dilate_A"],
                                pad_A=p["pad_A"])
    summary["mask"] = {"source": solvent.source, "threshold_level": solvent.level,
                       "threshold_mode": None if p["mask"] is not None else p["threshold_mode"]}
    density = lowpassed(volume, psize, p["lowpass_A"]) * solvent.soft
    mesh = _build(volume, density, solvent, psize, p["n_cells"], p["segmentation"], pairs,
                  p["custom_mesh"], p["mesh_type"], summary)
    if p["segmentation"] is not None:
        _check_rigid(rigid, mesh.segments)
    if p["custom_mesh"] is None or not _has_rigidity(p["custom_mesh"]):
        w, summary["weights"] = rigidity_weights(
            mesh.points, mesh.cells, density, rigidity_min=p["rigidity_min"],
            stiffen_low_density=p["stiffen_low_density"], segments=mesh.segments,
            rigid_segments=rigid)
        mesh = dataclasses.replace(mesh, rigidity=w)
    return mesh, solvent.level


def _has_rigidity(path) -> bool:
    with np.load(path, allow_pickle=False) as z:
        return "rigidity" in z.files


def _check_rigid(rigid, segments) -> None:
    known = set() if segments is None else {int(s) for s in np.unique(segments)}
    for s in rigid:
        if s not in known:
            raise ConfigError(f"rigid_segments: segment {s} is not in the mesh's segments "
                              f"({sorted(known) or 'none: the mesh is not segmented'})")


def _build(volume, density, solvent, psize, n_cells, segmentation, pairs, custom_mesh,
           mesh_type, summary) -> TetMesh:
    """Make the mesh the options ask for; records its kind and details in ``summary``."""
    box = volume.shape[0]
    summary["mesh_type"] = ("segmented" if segmentation is not None
                            else "custom" if custom_mesh is not None else mesh_type)
    if segmentation is not None:
        labels, seg_info = read_segmentation(segmentation, box, psize)
        mesh, info = segmented_mesh(labels, solvent.hard, solvent.soft, psize, n_cells, pairs)
        info.pop("segmask_exp")
        summary["segmentation"] = {"file": str(segmentation), **seg_info, **info,
                                   "connections": [f"{x}>{y}" for x, y in pairs]}
        return mesh
    if custom_mesh is not None:
        return load_custom_arrays(custom_mesh, solvent.hard, solvent.soft, psize)
    if mesh_type == "delaunay":
        return delaunay_mesh(density, solvent.hard, solvent.soft, psize, n_cells)
    mesh, n_cubes = regular_tet_mesh(solvent.hard, solvent.soft, psize, n_cells)
    summary["lattice"] = {"n_cubes": n_cubes, "cube_size_voxels": cube_size(box, n_cells),
                          "tets_per_cube": 5, "split": "5-tet, alternating parity (CryoSPARC)"}
    return mesh


def _write_outputs(mesh: TetMesh, out: Path, consensus_map, level) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    mesh.save(out / "mesh.npz")
    write_map(out / "mask.mrc", mesh.mask, mesh.pixel_size_A)
    write_map(out / "mask_soft.mrc", mesh.mask_soft, mesh.pixel_size_A)
    plot_mesh_slices(mesh, out / "mesh_slices.png")
    write_mesh_pdb(mesh, out / "mesh.pdb")
    lo = float(mesh.rigidity.min())
    hi = max(float(mesh.rigidity.max()), lo + 1e-3)
    write_chimerax_script(out / "mesh.cxc", consensus_map, out / "mesh.pdb", mesh.pixel_size_A,
                          level=level, weight_range=(lo, hi))
    return {"n_cells": mesh.n_cells, "n_vertices": mesh.n_vertices,
            "mask_voxels": int((mesh.tet_map >= 0).sum()),
            "segments": (None if mesh.segments is None
                         else sorted(int(s) for s in np.unique(mesh.segments))),
            "outputs": {name: str(out / name) for name in OUTPUTS}}
