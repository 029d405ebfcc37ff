"""Regular cube lattice split into tetrahedra (CryoSPARC's 5-tet layout).

Layout (reference/method.md §5.2): cubes of side ``h = N / n_cells`` voxels; cube
``(i, j, k)`` (x, y, z indices, any sign) is centred at ``(i, j, k) · h`` voxels from the box
centre ``N // 2``, so **the box centre is a cube centre**. Lattice vertex ``(I, J, K)`` sits at
``((I, J, K) - 1/2) · h``; cube ``i`` has corners ``I = i`` and ``I = i + 1``.

Each cube is split into **5 tetrahedra**: one central tet on four alternate corners and four
corner tets. With corner bits ``(a, b, c)`` for (x, y, z) and parity ``(i + j + k) mod 2``:

* even parity: central ``{000, 110, 101, 011}``, corners at ``100, 010, 001, 111``;
* odd parity: the same mirrored ``a → 1 - a`` (central ``{100, 010, 001, 111}``).

Alternating the parity makes the face diagonals of neighbouring cubes coincide, so the mesh
is conforming (every interior face is shared by exactly two tets). Cells are numbered cube by
cube in ``(k, j, i)`` (z-major) order, 5 per cube, the central tet first; vertices in the
z-major order of their lattice indices. Every cell has positive orientation.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .core import TetMesh
from .locate import locate_voxels, tet_volumes

TETS_PER_CUBE = 5
# corner id = a + 2b + 4c for corner bits (a, b, c) = (x, y, z) offsets
_EVEN = np.array([[0, 3, 5, 6], [1, 0, 3, 5], [2, 0, 3, 6], [4, 0, 5, 6], [7, 3, 5, 6]])
_CORNER_BITS = np.array([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)])


def _oriented(template: np.ndarray) -> np.ndarray:
    """Template with vertices 2, 3 swapped where needed so every tet has det > 0."""
    vol = tet_volumes(_CORNER_BITS.astype(np.float64), template)
    out = template.copy()
    neg = vol < 0
    out[neg, 2], out[neg, 3] = template[neg, 3], template[neg, 2]
    return out


TEMPLATES = (_oriented(_EVEN), _oriented(_EVEN ^ 1))  # parity 0, parity 1 (mirror a → 1 - a)


def cube_size(box: int, n_cells: int) -> float:
    """Cube side ``box / n_cells`` in voxels; requires ``2 <= n_cells <= box / 2``."""
    if not 2 <= int(n_cells) <= box // 2:
        raise ConfigError(f"n_cells must lie between 2 and box/2 = {box // 2} for box {box}, "
                          f"got {n_cells}")
    return box / int(n_cells)


def _axis_ranges(box: int, h: float, margin: int):
    """Per cube index ``k`` along one axis, the voxel index range ``[lo, hi]`` of voxels whose
    centres the closed cube touches, widened by ``margin`` voxels and clipped to the box."""
    c = box // 2
    eps = 1e-9 * h
    k_lo = int(np.floor((-c - margin) / h - 0.5)) - 1
    k_hi = int(np.ceil((box - 1 - c + margin) / h + 0.5)) + 1
    ks, los, his = [], [], []
    for k in range(k_lo, k_hi + 1):
        lo = int(np.ceil((k - 0.5) * h - eps)) + c - margin
        hi = int(np.floor((k + 0.5) * h + eps)) + c + margin
        lo, hi = max(lo, 0), min(hi, box - 1)
        if lo <= hi:
            ks.append(k)
            los.append(lo)
            his.append(hi)
    return np.array(ks), np.array(los), np.array(his)


def cubes_touching(mask: np.ndarray, n_cells: int, margin_voxels: int = 1) -> np.ndarray:
    """Cubes whose closed extent touches a voxel centre of ``mask`` dilated by
    ``margin_voxels`` (a ``(2m+1)³`` block).

    The one-voxel margin guarantees that every point within half a voxel of a mask voxel lies
    in a kept cube, so an upscaled mask (nearest-neighbour) is still covered.

    Parameters
    ----------
    mask : ``(N, N, N)`` boolean ``[z, y, x]`` volume.

    Returns
    -------
    ``(K, 3)`` int64 cube indices ``(i, j, k)`` = (x, y, z), sorted z-major.
    """
    mask = np.asarray(mask, dtype=bool)
    box = mask.shape[0]
    h = cube_size(box, n_cells)
    ks, los, his = _axis_ranges(box, h, margin_voxels)
    occ = mask
    for axis in range(3):  # reduce z, then y, then x to "any voxel in the cube's range"
        occ = np.stack([occ.take(np.arange(lo, hi + 1), axis=axis).any(axis=axis)
                        for lo, hi in zip(los, his)], axis=axis)
    kz, ky, kx = np.nonzero(occ)
    return np.stack([ks[kx], ks[ky], ks[kz]], axis=1).astype(np.int64)


def split_cubes(cubes: np.ndarray) -> np.ndarray:
    """``(5K, 4, 3)`` int64 lattice indices ``(I, J, K)`` of the tet vertices of ``cubes``
    ``(K, 3)`` (x, y, z cube indices), 5 tets per cube in input order, central tet first."""
    cubes = np.asarray(cubes, dtype=np.int64)
    parity = cubes.sum(axis=1) % 2
    tmpl = np.stack(TEMPLATES)[parity]  # (K, 5, 4) corner ids
    offsets = _CORNER_BITS[tmpl]  # (K, 5, 4, 3)
    return (cubes[:, None, None, :] + offsets).reshape(-1, 4, 3)


def lattice_positions(ijk: np.ndarray, h: float) -> np.ndarray:
    """Positions ``(x, y, z)`` in voxels relative to the box centre of lattice vertices."""
    return (np.asarray(ijk, dtype=np.float64) - 0.5) * h


def lattice_keys(ijk: np.ndarray, box: int) -> np.ndarray:
    """Unique int64 key per lattice vertex ``(..., 3)``, increasing in z-major order."""
    ijk = np.asarray(ijk, dtype=np.int64)
    off = box + 2  # lattice indices never go below -box - 1
    span = 2 * off + 1
    return ((ijk[..., 2] + off) * span + (ijk[..., 1] + off)) * span + (ijk[..., 0] + off)


def regular_mesh(mask: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points and cells of the 5-tet lattice over the cubes touching ``mask``.

    Returns
    -------
    points : ``(Nv, 3)`` float64 ``(x, y, z)`` voxels relative to the box centre.
    cells : ``(Nc, 4)`` int64, positively oriented.
    cubes : ``(Nc / 5, 3)`` int64 cube indices of the cells' cubes.
    """
    box = np.asarray(mask).shape[0]
    h = cube_size(box, n_cells)
    cubes = cubes_touching(mask, n_cells)
    if len(cubes) == 0:
        raise ConfigError("the solvent mask is empty: no cube of the mesh touches it")
    ijk = split_cubes(cubes)
    keys = lattice_keys(ijk, box)
    uniq, inverse = np.unique(keys.reshape(-1), return_inverse=True)
    first = np.zeros(len(uniq), dtype=np.int64)
    first[inverse] = np.arange(inverse.size)
    points = lattice_positions(ijk.reshape(-1, 3)[first], h)
    return points, inverse.reshape(-1, 4).astype(np.int64), cubes


def regular_tet_mesh(mask: np.ndarray, mask_soft: np.ndarray, pixel_size_A: float,
                     n_cells: int = 20):
    """``TetMesh`` of the 5-tet lattice over the hard mask (``> 0.5``), rigidity 1.0.

    Returns ``(mesh, n_cubes)``.
    """
    hard = np.asarray(mask) > 0.5
    points, cells, cubes = regular_mesh(hard, n_cells)
    tet_map = locate_voxels(points, cells, np.where(hard, 0, -1))
    mesh = TetMesh(points=points, cells=cells, rigidity=np.ones(len(cells), np.float32),
                   box=hard.shape[0], pixel_size_A=pixel_size_A, tet_map=tet_map, mask=hard,
                   mask_soft=np.maximum(mask_soft, hard))
    return mesh, len(cubes)
