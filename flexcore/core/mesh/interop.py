"""CryoSPARC 3DFlex mesh pickles: export, and import with detection of the point convention.

The pickle (reference/method.md §5.5) is a dict of numpy arrays: ``tm_points (Nv, 3)``,
``tm_cells (Nc, 4)``, ``tm_tetraidx_map (N, N, N)`` (tet per voxel, -1 in solvent),
``tm_rweights (Nc,)``, ``mask``, ``mask_soft``, ``N``, ``psize_A``, ``version`` (= 1) and
optionally ``map_r``, ``map_r_masked``, ``segmask``, ``segmask_exp``, ``tm_segmask``,
``segfuses``. Volumes are taken as ``[z, y, x]`` (mrcfile order, as cryoSPARC reads maps).

The units, axis order and origin of ``tm_points`` are undocumented, so the importer tries
every candidate :class:`PointConvention` and keeps the one under which the voxels' stored
tets contain the voxel centres. The exporter writes flexcore's own choice by default:
voxels, ``(x, y, z)``, relative to the box centre ``N // 2`` (docs/mesh.md).

**Security**: unpickling runs code chosen by whoever wrote the file. Only import pickles
you trust (your own CryoSPARC jobs); the importer refuses to run unless called with
``trusted=True`` and, as a second guard, only lets numpy arrays and plain Python values
be reconstructed.
"""

from __future__ import annotations

import dataclasses
import itertools
import pickle
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputFileError
from ..utils.atomic import atomic_path
from .core import TetMesh
from .locate import INSIDE_TOL, barycentric_coordinates, locate_voxels, orient_cells, voxel_positions
from .segments import parse_connections

PICKLE_VERSION = 1
REQUIRED_KEYS = ("mask", "mask_soft", "N", "psize_A", "tm_points", "tm_cells",
                 "tm_tetraidx_map", "tm_rweights", "version")
_SAFE_GLOBALS = {
    (mod, name)
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {(mod, "_frombuffer") for mod in ("numpy.core.numeric", "numpy._core.numeric")} | {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict")}


@dataclasses.dataclass(frozen=True)
class PointConvention:
    """How ``tm_points`` are stored: ``unit`` ``voxel``/``angstrom``/``fraction`` (of the
    box), ``order`` ``xyz``/``zyx``, ``origin`` ``centre`` (relative to voxel ``N // 2``) or
    ``corner`` (voxel index coordinates, voxel 0 at 0)."""

    unit: str = "voxel"
    order: str = "xyz"
    origin: str = "centre"

    @property
    def name(self) -> str:
        return f"{self.unit}-{self.order}-{self.origin}"

    def _scale(self, box: int, pixel_size_A: float) -> float:
        return {"voxel": 1.0, "angstrom": pixel_size_A, "fraction": 1.0 / box}[self.unit]

    def to_flexcore(self, stored: np.ndarray, box: int, pixel_size_A: float) -> np.ndarray:
        """Stored points → ``(x, y, z)`` voxels relative to ``N // 2`` (float64)."""
        p = np.asarray(stored, dtype=np.float64) / self._scale(box, pixel_size_A)
        p = p[:, ::-1] if self.order == "zyx" else p
        return p - box // 2 if self.origin == "corner" else p.copy()

    def from_flexcore(self, points: np.ndarray, box: int, pixel_size_A: float) -> np.ndarray:
        """Inverse of :meth:`to_flexcore`."""
        p = np.asarray(points, dtype=np.float64)
        p = p + box // 2 if self.origin == "corner" else p
        p = p[:, ::-1] if self.order == "zyx" else p
        return np.ascontiguousarray(p * self._scale(box, pixel_size_A))


FLEXCORE_CONVENTION = PointConvention()
CANDIDATE_CONVENTIONS = tuple(
    PointConvention(u, o, c) for u, o, c in itertools.product(
        ("voxel", "angstrom", "fraction"), ("xyz", "zyx"), ("centre", "corner")))


def export_cryosparc_pickle(mesh: TetMesh, path, *, consensus_map: np.ndarray | None = None,
                            convention: PointConvention = FLEXCORE_CONVENTION) -> None:
    """Write ``mesh`` as a CryoSPARC 3DFlex mesh pickle (atomically).

    ``tm_points`` are written in ``convention`` (default voxels, x y z, relative to
    ``N // 2``); ``tm_tetraidx_map`` is our ``[z, y, x]`` map. ``consensus_map`` (the map at
    the mesh box) adds ``map_r`` and ``map_r_masked``; segmented meshes add ``tm_segmask``,
    ``segmask_exp`` and ``segfuses`` (``(F, 2)`` int32 pairs ``X, Y`` for ``X>Y``).
    """
    data = {
        "mask": mesh.mask.copy(), "mask_soft": mesh.mask_soft.copy(), "N": int(mesh.box),
        "psize_A": float(mesh.pixel_size_A),
        "tm_points": convention.from_flexcore(mesh.points, mesh.box, mesh.pixel_size_A),
        "tm_cells": mesh.cells.copy(), "tm_tetraidx_map": mesh.tet_map.copy(),
        "tm_rweights": mesh.rigidity.copy(), "version": PICKLE_VERSION,
    }
    if consensus_map is not None:
        data["map_r"] = np.asarray(consensus_map, dtype=np.float32)
        data["map_r_masked"] = data["map_r"] * mesh.mask_soft
    if mesh.segments is not None:
        data["tm_segmask"] = mesh.segments.copy()
        data["segmask_exp"] = mesh.voxel_labels()
        data["segfuses"] = (mesh.fuses if mesh.fuses is not None
                            else np.zeros((0, 2), np.int32)).copy()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(data, fh, protocol=4)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not a numpy array type)")


def _load_pickle(path: Path) -> dict:
    if not path.is_file():
        raise InputFileError(path, "mesh pickle does not exist")
    try:
        with open(path, "rb") as fh:
            data = _NumpyOnlyUnpickler(fh).load()
    except Exception as exc:
        raise InputFileError(path, f"cannot be read as a CryoSPARC mesh pickle: {exc}") from exc
    if not isinstance(data, dict):
        raise InputFileError(path, f"expected a dict of arrays, got {type(data).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise InputFileError(path, f"missing key(s) {', '.join(missing)} of a 3DFlex mesh")
    return data


def detect_point_convention(stored_points, cells, tet_map, box: int, pixel_size_A: float,
                            n_samples: int = 4096, path="") -> tuple[PointConvention, dict]:
    """Find how ``stored_points`` are stored by testing every candidate convention.

    For up to ``n_samples`` voxels with ``tet_map >= 0`` (seeded choice), the voxel centre
    must lie in its stored tet once the points are converted. Returns the convention with
    the highest fraction inside (first in :data:`CANDIDATE_CONVENTIONS` order among ties,
    which also covers conventions that coincide, e.g. Å with a 1 Å pixel) and a report with
    every candidate's fraction. Raises ``InputFileError`` when none reaches 99.9 %.
    """
    flat = np.asarray(tet_map).reshape(-1)
    lin = np.flatnonzero(flat >= 0)
    if lin.size == 0:
        raise InputFileError(path, "tm_tetraidx_map has no voxel inside the mask")
    rng = np.random.default_rng(0)
    if lin.size > n_samples:
        lin = np.sort(rng.choice(lin, n_samples, replace=False))
    tet = flat[lin].astype(np.int64)
    if tet.max() >= len(cells):
        raise InputFileError(path, f"tm_tetraidx_map refers to tet {tet.max()} but tm_cells has "
                                   f"{len(cells)}")
    pos = voxel_positions(lin, box)
    scores = {}
    for conv in CANDIDATE_CONVENTIONS:
        pts = conv.to_flexcore(stored_points, box, pixel_size_A)
        p = pts[cells[tet]]
        ok = np.abs(np.linalg.det(np.swapaxes(p[:, 1:] - p[:, :1], 1, 2))) > 1e-12
        if not ok.any():
            scores[conv.name] = 0.0
            continue
        b = barycentric_coordinates(pts, cells, tet[ok], pos[ok])
        scores[conv.name] = float((b.min(axis=1) >= -1e-6).mean() * ok.mean())
    best = max(CANDIDATE_CONVENTIONS, key=lambda c: scores[c.name])  # first among ties
    if scores[best.name] < 0.999:
        raise InputFileError(path, f"tm_points fit no known convention: best {best.name} holds "
                                   f"only {100 * scores[best.name]:.1f} % of sampled voxels in "
                                   f"their stored tets")
    tied = [c.name for c in CANDIDATE_CONVENTIONS if scores[c.name] == scores[best.name]]
    return best, {"convention": best.name, "fraction_inside": scores[best.name],
                  "tied_with": [t for t in tied if t != best.name], "candidates": scores}


def _parse_fuses(value):
    if value is None:
        return None
    if isinstance(value, str | bytes):
        text = value.decode() if isinstance(value, bytes) else value
        return np.array(parse_connections(text), dtype=np.int32).reshape(-1, 2)
    arr = np.asarray(value)
    if arr.size == 0:
        return np.zeros((0, 2), np.int32)
    if arr.dtype.kind in "iu" and arr.ndim == 2 and arr.shape[1] == 2:
        return arr.astype(np.int32)
    return None  # an unknown encoding of the fuse list: keep the mesh, drop the record


def import_cryosparc_pickle(path, trusted: bool = False) -> tuple[TetMesh, dict]:
    """Read a CryoSPARC 3DFlex mesh pickle into a ``TetMesh``. Only for trusted files.

    Unpickling can execute arbitrary code, so the call must say ``trusted=True``.

    The point convention is detected (:func:`detect_point_convention`); the voxel → tet map
    is recomputed by flexcore's rasteriser over the stored map's in-mask voxels (each
    voxel's own segment when ``tm_segmask`` is present) and compared with the stored one.

    Returns
    -------
    The mesh and a report: ``convention`` (and candidate scores), ``tet_map_equal`` (voxels
    where both maps agree), ``tet_map_ties`` (voxels on shared faces where the stored tet
    also contains the voxel but another won our tie-break), ``tet_map_mismatch``,
    ``mask_differs`` (voxels where ``mask > 0.5`` and the stored map's ``>= 0`` differ) and
    ``dropped_voxels`` (in the stored map but in no cell; removed from the mask).
    """
    path = Path(path)
    if trusted is not True:
        raise ConfigError(f"refusing to unpickle {path}: pickles can run arbitrary code. Pass "
                          f"trusted=True (CLI: --cryosparc-mesh) only for files you trust.")
    data = _load_pickle(path)
    box, psize = int(data["N"]), float(data["psize_A"])
    if int(data["version"]) != PICKLE_VERSION:
        raise InputFileError(path, f"mesh version {data['version']} is not supported (expected 1)")
    stored_map = np.asarray(data["tm_tetraidx_map"]).astype(np.int64)
    for key in ("tm_tetraidx_map", "mask", "mask_soft"):
        if np.shape(data[key]) != (box,) * 3:
            raise InputFileError(path, f"{key} has shape {np.shape(data[key])}, expected "
                                       f"({box}, {box}, {box}) from N")
    cells = np.asarray(data["tm_cells"]).astype(np.int64)
    stored = np.asarray(data["tm_points"])
    if stored.ndim != 2 or stored.shape[1] != 3 or cells.ndim != 2 or cells.shape[1] != 4:
        raise InputFileError(path, f"tm_points {stored.shape} / tm_cells {cells.shape} must be "
                                   f"(Nv, 3) / (Nc, 4)")
    conv, report = detect_point_convention(stored, cells, stored_map, box, psize, path=path)
    points = conv.to_flexcore(stored, box, psize)
    try:
        cells = orient_cells(points, cells)
    except ValueError as exc:
        raise InputFileError(path, f"tm_cells: {exc}") from exc
    segments = data.get("tm_segmask")
    inside = stored_map >= 0
    labels = np.where(inside, 0, -1)
    if segments is not None:
        segments = np.asarray(segments).astype(np.int32).reshape(-1)
        labels = np.where(inside, segments[np.maximum(stored_map, 0)], -1)
    tet_map = locate_voxels(points, cells, labels, segments)
    differ = np.flatnonzero((tet_map != stored_map).reshape(-1) & inside.reshape(-1))
    ties = 0
    if differ.size:
        b = barycentric_coordinates(points, cells, stored_map.reshape(-1)[differ],
                                    voxel_positions(differ, box))
        ties = int((b.min(axis=1) >= -INSIDE_TOL).sum())
    covered = tet_map >= 0
    report.update({
        "tet_map_equal": int((inside & (tet_map == stored_map)).sum()),
        "tet_map_ties": ties, "tet_map_mismatch": int(differ.size - ties),
        "mask_differs": int(((np.asarray(data["mask"]) > 0.5) != inside).sum()),
        "dropped_voxels": int((inside & ~covered).sum()),
    })
    try:
        mesh = TetMesh(points=points, cells=cells, rigidity=np.asarray(data["tm_rweights"]),
                       box=box, pixel_size_A=psize, tet_map=tet_map, mask=covered,
                       mask_soft=np.maximum(np.asarray(data["mask_soft"], np.float32), covered),
                       segments=segments, fuses=_parse_fuses(data.get("segfuses")))
    except ValueError as exc:
        raise InputFileError(path, f"inconsistent mesh arrays: {exc}") from exc
    return mesh, report
