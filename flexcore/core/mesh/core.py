"""``TetMesh``: the tetrahedral mesh that carries 3DFlex's deformation field.

Frame and units (docs/conventions.md): vertex positions are ``(x, y, z)`` in voxels of the
mesh's box relative to the box centre ``N // 2``; volumes are ``[z, y, x]`` arrays. The
voxel → tet map comes from :func:`~flexcore.core.mesh.locate.locate_voxels` for every kind of
mesh, so saved, imported and upscaled meshes all agree with the rasteriser.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..errors import InputFileError
from ..masks import resize_mask
from ..ops.geometry import VoxelGeometry
from ..utils.atomic import atomic_path
from .locate import barycentric_coordinates, locate_voxels, orient_cells, rest_edges_inverse, voxel_positions

FORMAT_NAME = "flexcore-mesh"
FORMAT_VERSION = 1
_REQUIRED = ("format", "format_version", "points", "cells", "rigidity", "box", "pixel_size_A",
             "tet_map", "mask", "mask_soft")


@dataclasses.dataclass(eq=False)
class TetMesh:
    """A tetrahedral mesh over a cubic box, with its solvent mask and voxel → tet map.

    Attributes
    ----------
    points : ``(Nv, 3)`` float64 vertex positions ``(x, y, z)`` in voxels relative to ``N//2``.
    cells : ``(Nc, 4)`` int64 vertex indices, positively oriented
        (``det[p1-p0, p2-p0, p3-p0] > 0``).
    rigidity : ``(Nc,)`` float32 rigidity-prior weight of each cell.
    box : ``N``, the box size in voxels.
    pixel_size_A : voxel size in Å.
    tet_map : ``(N, N, N)`` int32 ``[z, y, x]`` cell containing each voxel centre, ``-1``
        outside the hard mask.
    mask : ``(N, N, N)`` float32 hard (binary) solvent mask; ``mask > 0.5`` ⇔ ``tet_map >= 0``.
    mask_soft : ``(N, N, N)`` float32 soft mask in ``[0, 1]``.
    segments : ``(Nc,)`` int32 segment id of each cell, or ``None`` for unsegmented meshes.
    fuses : ``(F, 2)`` int32 fused segment pairs ``(X, Y)`` ("Y joined to X"), or ``None``.
    """

    points: np.ndarray
    cells: np.ndarray
    rigidity: np.ndarray
    box: int
    pixel_size_A: float
    tet_map: np.ndarray
    mask: np.ndarray
    mask_soft: np.ndarray
    segments: np.ndarray | None = None
    fuses: np.ndarray | None = None

    def __post_init__(self):
        self.box = int(self.box)
        self.pixel_size_A = float(self.pixel_size_A)
        self.points = np.ascontiguousarray(self.points, dtype=np.float64)
        self.cells = np.ascontiguousarray(self.cells, dtype=np.int64)
        self.rigidity = np.ascontiguousarray(self.rigidity, dtype=np.float32)
        self.tet_map = np.ascontiguousarray(self.tet_map, dtype=np.int32)
        self.mask = np.ascontiguousarray(self.mask, dtype=np.float32)
        self.mask_soft = np.ascontiguousarray(self.mask_soft, dtype=np.float32)
        if self.segments is not None:
            self.segments = np.ascontiguousarray(self.segments, dtype=np.int32)
        if self.fuses is not None:
            self.fuses = np.ascontiguousarray(self.fuses, dtype=np.int32).reshape(-1, 2)
        self._validate()

    def _validate(self) -> None:
        n, nv, nc = self.box, len(self.points), len(self.cells)
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ValueError(f"points must be (Nv, 3), got {self.points.shape}")
        if self.cells.ndim != 2 or self.cells.shape[1] != 4:
            raise ValueError(f"cells must be (Nc, 4), got {self.cells.shape}")
        if nc and (self.cells.min() < 0 or self.cells.max() >= nv):
            raise ValueError(f"cells index vertices outside 0..{nv - 1}")
        if self.rigidity.shape != (nc,):
            raise ValueError(f"rigidity must be (Nc,) = ({nc},), got {self.rigidity.shape}")
        for name in ("tet_map", "mask", "mask_soft"):
            if getattr(self, name).shape != (n, n, n):
                raise ValueError(f"{name} must be ({n}, {n}, {n}), got {getattr(self, name).shape}")
        if self.tet_map.max(initial=-1) >= nc or self.tet_map.min(initial=-1) < -1:
            raise ValueError(f"tet_map holds cell indices outside -1..{nc - 1}")
        if not np.array_equal(self.tet_map >= 0, self.mask > 0.5):
            raise ValueError("tet_map >= 0 must coincide with the hard mask (mask > 0.5)")
        if self.segments is not None and self.segments.shape != (nc,):
            raise ValueError(f"segments must be (Nc,) = ({nc},), got {self.segments.shape}")
        if not self.pixel_size_A > 0:
            raise ValueError(f"pixel_size_A must be positive, got {self.pixel_size_A}")

    @property
    def n_vertices(self) -> int:
        return len(self.points)

    @property
    def n_cells(self) -> int:
        return len(self.cells)

    def voxel_labels(self) -> np.ndarray:
        """``(N, N, N)`` int32 labels used by the rasteriser: the segment id of each mask
        voxel (0 for unsegmented meshes), ``-1`` outside the mask."""
        if self.segments is None:
            return np.where(self.tet_map >= 0, 0, -1).astype(np.int32)
        return np.where(self.tet_map >= 0, self.segments[np.maximum(self.tet_map, 0)], -1)

    def voxel_data(self) -> dict[str, np.ndarray]:
        """Per-mask-voxel arrays for the forward model (numpy, no torch).

        Returns a dict with ``voxel_index (M,) int64`` (linear index into the flattened
        ``[z, y, x]`` volume), ``coords (M, 3) float32`` (x, y, z voxels relative to the box
        centre), ``vertex_index (M, 4) int32`` and ``barycentric (M, 4) float32``. Rows are
        sorted by tet index, then by linear voxel index (consecutive voxels share a tet).
        """
        flat = self.tet_map.reshape(-1)
        lin = np.flatnonzero(flat >= 0)
        tet = flat[lin].astype(np.int64)
        order = np.lexsort((lin, tet))
        lin, tet = lin[order], tet[order]
        pos = voxel_positions(lin, self.box)
        bary = barycentric_coordinates(self.points, self.cells, tet, pos)
        return {
            "voxel_index": lin.astype(np.int64),
            "coords": pos.astype(np.float32),
            "vertex_index": self.cells[tet].astype(np.int32),
            "barycentric": bary.astype(np.float32),
        }

    def voxel_tensors(self, device=None) -> VoxelGeometry:
        """:meth:`voxel_data` as a :class:`~flexcore.core.ops.VoxelGeometry` on ``device`` (the
        form the operators take)."""
        return VoxelGeometry.from_arrays(self.voxel_data(), self.box, device)

    def rest_edges_inverse(self) -> np.ndarray:
        """``(Nc, 3, 3)`` float64 inverse of the rest edge matrix ``[p1-p0, p2-p0, p3-p0]``
        (edges as columns), in 1/voxel; the rigidity prior's ``F = [q1-q0, ...] @ E⁻¹``."""
        return rest_edges_inverse(self.points, self.cells)

    def upscale(self, new_box: int) -> TetMesh:
        """The same mesh on a box of ``new_box`` voxels (same cells, weights and segments).

        Vertices are scaled by ``new_box / box`` and the pixel size by ``box / new_box``; the
        hard mask and segment labels are upsampled nearest-neighbour, the soft mask linearly,
        and the voxel → tet map is rebuilt by the rasteriser at ``new_box``. Voxels of the
        upsampled mask that no cell of their segment contains are dropped from the mask (none
        for regular and segmented meshes, whose cubes cover the mask with a 1-voxel margin).
        """
        new_box = int(new_box)
        if new_box < 1:
            raise ValueError(f"new_box must be positive, got {new_box}")
        scale = new_box / self.box
        labels = resize_mask(self.voxel_labels(), new_box, order=0)
        points = self.points * scale
        tet_map = locate_voxels(points, self.cells, labels, self.segments)
        soft = np.maximum(resize_mask(self.mask_soft, new_box, order=1), tet_map >= 0)
        return dataclasses.replace(
            self, points=points, box=new_box, pixel_size_A=self.pixel_size_A / scale,
            tet_map=tet_map, mask=(tet_map >= 0).astype(np.float32),
            mask_soft=np.clip(soft, 0.0, 1.0))

    def save(self, path) -> None:
        """Write the mesh as ``.npz`` (compressed, no pickled objects), atomically."""
        arrays = {
            "format": np.array(FORMAT_NAME), "format_version": np.array(FORMAT_VERSION),
            "points": self.points, "cells": self.cells, "rigidity": self.rigidity,
            "box": np.array(self.box), "pixel_size_A": np.array(self.pixel_size_A),
            "tet_map": self.tet_map, "mask": self.mask, "mask_soft": self.mask_soft,
        }
        if self.segments is not None:
            arrays["segments"] = self.segments
        if self.fuses is not None:
            arrays["fuses"] = self.fuses
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path) -> TetMesh:
        """Read a mesh written by :meth:`save` (``allow_pickle=False``).

        Raises ``InputFileError`` naming the file for a missing file or key, another format
        or version, or arrays that do not fit together.
        """
        path = Path(path)
        data = read_npz(path, "mesh file")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise InputFileError(path, f"not a flexcore mesh: missing key(s) {', '.join(missing)}")
        if str(data["format"]) != FORMAT_NAME:
            raise InputFileError(path, f"format is {str(data['format'])!r}, "
                                       f"expected {FORMAT_NAME!r}")
        if int(data["format_version"]) != FORMAT_VERSION:
            raise InputFileError(path, f"mesh format version {int(data['format_version'])} is not "
                                       f"supported (this flexcore reads version {FORMAT_VERSION})")
        try:
            return cls(points=data["points"], cells=data["cells"], rigidity=data["rigidity"],
                       box=int(data["box"]), pixel_size_A=float(data["pixel_size_A"]),
                       tet_map=data["tet_map"], mask=data["mask"], mask_soft=data["mask_soft"],
                       segments=data.get("segments"), fuses=data.get("fuses"))
        except ValueError as exc:
            raise InputFileError(path, f"inconsistent mesh arrays: {exc}") from exc


def read_npz(path, what: str) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (``allow_pickle=False``), with errors naming ``path``."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, f"{what} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile/ValueError with terse messages
        raise InputFileError(path, f"cannot be read as .npz: {exc}") from exc


def mesh_from_arrays(points, cells, mask, mask_soft, pixel_size_A: float, rigidity=None,
                     segments=None, fuses=None, voxel_labels=None) -> TetMesh:
    """Build a ``TetMesh`` from user-supplied arrays; the voxel → tet map is rasterised.

    Parameters
    ----------
    points : ``(Nv, 3)`` vertices ``(x, y, z)`` in voxels relative to the box centre.
    cells : ``(Nc, 4)`` vertex indices; flipped cells are re-oriented (vertices 2, 3 swapped).
    mask : ``(N, N, N)`` solvent mask (``> 0.5`` is inside); every inside voxel must lie in a
        cell (of its own segment, when ``voxel_labels`` is given).
    mask_soft : ``(N, N, N)`` soft mask, or ``None`` to use the hard mask.
    rigidity : ``(Nc,)`` weights, or ``None`` for 1.0 everywhere.
    segments, fuses : optional segment id per cell and fused pairs (see ``TetMesh``).
    voxel_labels : ``(N, N, N)`` segment id per voxel (``-1`` outside), with ``segments``.

    Raises ``ValueError`` naming how many mask voxels no cell contains.
    """
    hard = np.asarray(mask) > 0.5
    cells = orient_cells(points, cells)
    labels = np.where(hard, 0, -1) if voxel_labels is None else np.where(hard, voxel_labels, -1)
    tet_map = locate_voxels(points, cells, labels, None if voxel_labels is None else segments)
    missing = int((hard & (tet_map < 0)).sum())
    if missing:
        raise ValueError(f"{missing} of {int(hard.sum())} mask voxels lie in no cell of the mesh "
                         f"(the mesh does not cover the mask)")
    rigidity = np.ones(len(cells), np.float32) if rigidity is None else rigidity
    soft = hard.astype(np.float32) if mask_soft is None else np.maximum(mask_soft, hard)
    return TetMesh(points=points, cells=cells, rigidity=rigidity, box=hard.shape[0],
                   pixel_size_A=pixel_size_A, tet_map=tet_map, mask=hard, mask_soft=soft,
                   segments=segments, fuses=fuses)
