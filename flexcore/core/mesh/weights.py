"""Rigidity-prior weights per cell from the consensus density (reference/method.md §5.4).

Rule (the [P] proposal of method.md; CryoSPARC's exact mapping is not published):

* ``ρ_c`` = mean of the low-passed consensus × soft mask (negative values clipped to 0) over
  cell ``c``, sampled at the points of a barycentric lattice fine enough for ~2-voxel spacing;
* ``ρ_ref`` = 99th percentile of ``ρ_c`` over non-empty cells (``ρ_c > 0``);
* ``w_c = clip(ρ_c / ρ_ref, rigidity_min, ∞)``: 1.0 in dense regions, the floor (0.5) in
  empty ones, slightly above 1 in the densest 1 %;
* ``stiffen_low_density``: non-empty low-density cells on the periphery get 3.0. Non-empty:
  ``ρ_c/ρ_ref >= 0.1``; low density: ``ρ_c/ρ_ref < 0.5``; periphery: the cell shares a
  vertex with an empty cell or with the mesh's outer boundary;
* rigid segments: every cell of a listed segment gets 20.0 (applied last).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from .topology import boundary_vertices

DENSE_PERCENTILE = 99.0
EMPTY_FRACTION = 0.1
LOW_DENSITY_FRACTION = 0.5
STIFF_WEIGHT = 3.0
RIGID_WEIGHT = 20.0


def barycentric_lattice(order: int) -> np.ndarray:
    """``(P, 4)`` barycentric coordinates ``(i, j, k, l) / order`` with ``i+j+k+l = order``."""
    r = np.arange(order + 1)
    i, j, k = np.meshgrid(r, r, r, indexing="ij")
    keep = (i + j + k) <= order
    ijk = np.stack([i[keep], j[keep], k[keep]], axis=1)
    return np.concatenate([order - ijk.sum(axis=1, keepdims=True), ijk], axis=1) / order


def density_per_cell(points: np.ndarray, cells: np.ndarray, density: np.ndarray,
                     spacing_voxels: float = 2.0) -> np.ndarray:
    """``(Nc,)`` mean of ``density`` (``[z, y, x]``, trilinear) over each cell, sampled on a
    barycentric lattice whose step is about ``spacing_voxels`` along the longest mean edge."""
    cells = np.asarray(cells, dtype=np.int64)
    p = np.asarray(points, dtype=np.float64)[cells]  # (Nc, 4, 3)
    edge = np.linalg.norm(p[:, 1:] - p[:, :1], axis=2).mean()
    order = max(2, math.ceil(edge / spacing_voxels))
    bary = barycentric_lattice(order)
    n = density.shape[0]
    out = np.empty(len(cells), dtype=np.float64)
    step = max(1, (1 << 21) // len(bary))
    for s in range(0, len(cells), step):
        pos = np.einsum("pk,ckd->cpd", bary, p[s:s + step]) + n // 2  # (C, P, 3) x, y, z index
        zyx = pos[..., ::-1].reshape(-1, 3).T
        vals = ndimage.map_coordinates(density, zyx, order=1, mode="constant", cval=0.0)
        out[s:s + step] = vals.reshape(len(pos), -1).mean(axis=1)
    return out


def rigidity_weights(points: np.ndarray, cells: np.ndarray, density: np.ndarray, *,
                     rigidity_min: float = 0.5, stiffen_low_density: bool = False,
                     segments: np.ndarray | None = None,
                     rigid_segments=None) -> tuple[np.ndarray, dict]:
    """Rigidity weights from density (see the module docstring for the rule).

    Parameters
    ----------
    points, cells : the mesh (voxels relative to the box centre; ``(Nc, 4)`` cells).
    density : ``(N, N, N)`` ``[z, y, x]`` low-passed consensus × soft mask.
    rigidity_min : floor of the density-based weights (CryoSPARC default 0.5).
    stiffen_low_density : set non-empty peripheral low-density cells to 3.0.
    segments : ``(Nc,)`` segment id per cell (needed for ``rigid_segments``).
    rigid_segments : segment ids whose cells get 20.0.

    Returns
    -------
    ``(Nc,)`` float32 weights and a summary dict (``rho_ref``, counts per category).
    """
    if not rigidity_min > 0:
        raise ConfigError(f"rigidity_min must be positive, got {rigidity_min}")
    rho = density_per_cell(points, cells, np.clip(np.asarray(density, np.float32), 0.0, None))
    filled = rho > 0
    if not filled.any():
        raise ConfigError("the consensus map has no positive density inside the mask, so no "
                          "density-based rigidity weights can be made")
    rho_ref = float(np.percentile(rho[filled], DENSE_PERCENTILE))
    rel = rho / rho_ref
    w = np.maximum(rel, rigidity_min)
    n_stiff = 0
    if stiffen_low_density:
        empty = rel < EMPTY_FRACTION
        exposed = boundary_vertices(points, cells)
        exposed[np.asarray(cells)[empty].reshape(-1)] = True
        periphery = exposed[np.asarray(cells)].any(axis=1)
        stiff = periphery & ~empty & (rel < LOW_DENSITY_FRACTION)
        w[stiff] = STIFF_WEIGHT
        n_stiff = int(stiff.sum())
    n_rigid = 0
    if rigid_segments:
        if segments is None:
            raise ConfigError("rigid_segments needs a segmented mesh (give a segmentation)")
        rigid = np.isin(segments, np.asarray(list(rigid_segments), dtype=np.int64))
        w[rigid] = RIGID_WEIGHT
        n_rigid = int(rigid.sum())
    info = {"rho_ref": rho_ref, "dense_percentile": DENSE_PERCENTILE,
            "cells_at_floor": int((w == rigidity_min).sum()), "cells_stiffened": n_stiff,
            "cells_rigid": n_rigid, "weight_min": float(w.min()), "weight_max": float(w.max()),
            "weight_median": float(np.median(w))}
    return w.astype(np.float32), info
