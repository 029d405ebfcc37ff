"""Meshes that are not the regular lattice: user-supplied arrays and Delaunay meshes.

* ``load_custom_arrays``: an ``.npz`` (read with ``allow_pickle=False``) holding at least
  ``points (Nv, 3)`` in voxels ``(x, y, z)`` relative to the box centre and ``cells (Nc, 4)``;
  optional ``rigidity (Nc,)`` and ``segments (Nc,)``. A flexcore mesh file qualifies.
* ``delaunay_mesh``: Delaunay tetrahedralisation (TetGen via ``pytetgen``) of the lattice
  vertices of the regular mesh plus as many extra points drawn where the density is high,
  so cells are smaller in dense regions. ``pytetgen`` bundles TetGen, which is **AGPL-3**:
  it is an optional extra (``pip install 'flexcore[tetgen]'``), imported only here, only
  when asked for; using it makes the combined program subject to the AGPL.

Both go through :func:`~flexcore.core.mesh.core.mesh_from_arrays`, so the voxel → tet map comes
from the same rasteriser as every other mesh.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import ConfigError, InputFileError
from .core import TetMesh, mesh_from_arrays, read_npz
from .locate import locate_voxels
from .regular import regular_mesh


def load_custom_arrays(path, mask: np.ndarray, mask_soft: np.ndarray,
                       pixel_size_A: float) -> TetMesh:
    """Build a mesh from an ``.npz`` of ``points``/``cells`` (+ ``rigidity``, ``segments``)
    over the given masks. Raises ``InputFileError`` naming ``path`` for a missing file or key,
    a box that differs from the mask's, or a mesh that does not cover the mask."""
    path = Path(path)
    data = read_npz(path, "custom mesh file")
    for key in ("points", "cells"):
        if key not in data:
            raise InputFileError(path, f"missing array {key!r} (need points (Nv, 3) in voxels "
                                       f"x, y, z relative to the box centre, cells (Nc, 4))")
    box = np.asarray(mask).shape[0]
    if "box" in data and int(data["box"]) != box:
        raise InputFileError(path, f"mesh box {int(data['box'])} does not match the map box {box}")
    try:
        return mesh_from_arrays(data["points"], data["cells"], mask, mask_soft, pixel_size_A,
                                rigidity=data.get("rigidity"), segments=data.get("segments"))
    except ValueError as exc:
        raise InputFileError(path, str(exc)) from exc


def _import_pytetgen():
    try:
        import pytetgen
    except ImportError:
        raise ConfigError("Delaunay meshes need the optional 'tetgen' extra "
                          "(pip install 'flexcore[tetgen]'; TetGen is AGPL-3)") from None
    return pytetgen


def density_points(density: np.ndarray, mask: np.ndarray, n_points: int,
                   rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` random positions (x, y, z voxels relative to the centre) in ``mask``, drawn
    with probability proportional to the positive density, jittered within their voxel."""
    weight = np.where(mask, np.clip(density, 0.0, None), 0.0).reshape(-1).astype(np.float64)
    if weight.sum() <= 0:
        weight = np.asarray(mask, dtype=np.float64).reshape(-1)
    lin = rng.choice(weight.size, size=n_points, p=weight / weight.sum())
    n = mask.shape[0]
    iz, iy, ix = np.unravel_index(lin, mask.shape)
    pos = np.stack([ix, iy, iz], axis=1) - n // 2
    return pos + rng.uniform(-0.5, 0.5, size=pos.shape)


def delaunay_mesh(density: np.ndarray, mask: np.ndarray, mask_soft: np.ndarray,
                  pixel_size_A: float, n_cells: int, seed: int = 0) -> TetMesh:
    """Density-adaptive Delaunay mesh (needs the ``tetgen`` extra; AGPL-3).

    Points: the regular mesh's lattice vertices (so the hull covers the mask with its
    1-voxel margin) plus the same number drawn in the mask in proportion to ``density``; all
    jittered by 1e-3 voxel (seeded) so lattice points are not co-spherical. Cells that meet
    no voxel of the mask dilated by one voxel are dropped, then unused vertices.
    """
    pytetgen = _import_pytetgen()
    hard = np.asarray(mask) > 0.5
    rng = np.random.default_rng(seed)
    lattice, _, _ = regular_mesh(hard, n_cells)
    extra = density_points(density, hard, len(lattice), rng)
    pts = np.concatenate([lattice, extra])
    pts += rng.normal(0.0, 1e-3, size=pts.shape)
    cells = np.asarray(pytetgen.Delaunay(pts).simplices, dtype=np.int64)
    near = ndimage.binary_dilation(hard, structure=np.ones((3, 3, 3), bool))
    tm = locate_voxels(pts, cells, np.where(near, 0, -1))
    cells = cells[np.unique(tm[tm >= 0])]
    used, cells = np.unique(cells, return_inverse=True)
    return mesh_from_arrays(pts[used], cells.reshape(-1, 4), hard, mask_soft, pixel_size_A)
