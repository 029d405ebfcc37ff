"""Voxel → tetrahedron map and barycentric weights, for any tetrahedral mesh.

One code path serves every mesh (regular, segmented, imported, Delaunay): each tetrahedron
is rasterised over the voxels of its bounding box with a barycentric inside test. The test
is evaluated on whole chunks of tetrahedra at once; because a voxel's barycentric
coordinates are affine in ``x``, ``y`` and ``z`` separately, each coordinate is the sum of
three per-axis terms, so the work per (tet, voxel) pair is a few additions.

Frames: ``points`` are ``(x, y, z)`` in voxels relative to the box centre ``N // 2``;
voxel ``[iz, iy, ix]`` sits at ``(ix - N//2, iy - N//2, iz - N//2)``.

Tie-break: a voxel on a face, edge or vertex shared by several tetrahedra (all of which
contain it to within ``tol``) belongs to the one with the **lowest cell index**. The rule
depends only on the mesh, not on chunking or evaluation order.
"""

from __future__ import annotations

import numpy as np

INSIDE_TOL = 1e-9  # barycentric slack; voxels within it of a face count as on the face
_NO_CELL = np.iinfo(np.int32).max


def cell_vertices(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """``(Nc, 4, 3)`` float64 vertex positions of every cell."""
    return np.asarray(points, dtype=np.float64)[np.asarray(cells, dtype=np.int64)]


def tet_volumes(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Signed volumes ``det[p1-p0, p2-p0, p3-p0] / 6`` of every cell (voxels³)."""
    p = cell_vertices(points, cells)
    return np.linalg.det(np.swapaxes(p[:, 1:] - p[:, :1], 1, 2)) / 6.0


def orient_cells(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Copy of ``cells`` with vertices 2 and 3 swapped where the volume is negative, so
    every cell has ``det[p1-p0, p2-p0, p3-p0] > 0``. Raises ``ValueError`` on flat cells."""
    cells = np.array(cells, dtype=np.int64, copy=True)
    vol = tet_volumes(points, cells)
    scale = np.abs(vol).max() if vol.size else 1.0
    flat = np.abs(vol) <= 1e-12 * max(scale, 1e-300)
    if flat.any():
        raise ValueError(f"{int(flat.sum())} cells have zero volume "
                         f"(first: cell {int(np.argmax(flat))})")
    neg = vol < 0
    cells[neg, 2], cells[neg, 3] = cells[neg, 3].copy(), cells[neg, 2].copy()
    return cells


def rest_edges_inverse(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """``(Nc, 3, 3)`` float64 inverse of the rest edge matrices ``[p1-p0, p2-p0, p3-p0]``
    (edges as columns). ``E⁻¹ @ (x - p0)`` gives the barycentric weights ``b1..b3``."""
    p = cell_vertices(points, cells)
    return np.linalg.inv(np.swapaxes(p[:, 1:] - p[:, :1], 1, 2))


def voxel_positions(linear_index: np.ndarray, box: int) -> np.ndarray:
    """``(M, 3)`` float64 ``(x, y, z)`` positions (voxels, relative to ``box // 2``) of the
    voxels with linear indices into a flattened ``[z, y, x]`` volume."""
    iz, iy, ix = np.unravel_index(np.asarray(linear_index, dtype=np.int64), (box,) * 3)
    c = box // 2
    return np.stack([ix - c, iy - c, iz - c], axis=1).astype(np.float64)


def barycentric_coordinates(points: np.ndarray, cells: np.ndarray, cell_index: np.ndarray,
                            positions: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """``(M, 4)`` float64 barycentric weights of ``positions (M, 3)`` (x, y, z voxels) in
    cells ``cell_index (M,)``; they sum to 1 and reproduce the position exactly."""
    cell_index = np.asarray(cell_index, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.float64)
    out = np.empty((len(cell_index), 4), dtype=np.float64)
    inv = rest_edges_inverse(points, cells)
    p0 = np.asarray(points, dtype=np.float64)[np.asarray(cells, dtype=np.int64)[:, 0]]
    for s in range(0, len(cell_index), chunk):
        t = cell_index[s:s + chunk]
        d = positions[s:s + chunk] - p0[t]
        b = np.einsum("mij,mj->mi", inv[t], d)
        out[s:s + chunk, 1:] = b
        out[s:s + chunk, 0] = 1.0 - b.sum(axis=1)
    return out


def locate_voxels(points: np.ndarray, cells: np.ndarray, voxel_labels: np.ndarray,
                  cell_labels: np.ndarray | None = None, *, tol: float = INSIDE_TOL,
                  max_pairs: int = 1 << 22) -> np.ndarray:
    """Voxel → tetrahedron map by rasterising every cell over its bounding box.

    Parameters
    ----------
    points : ``(Nv, 3)`` vertex positions ``(x, y, z)`` in voxels relative to ``N // 2``.
    cells : ``(Nc, 4)`` vertex indices (any orientation; flat cells never claim voxels).
    voxel_labels : ``(N, N, N)`` integer ``[z, y, x]`` volume; voxels with a negative label
        are skipped (solvent). Pass the hard mask as ``0`` inside / ``-1`` outside.
    cell_labels : ``(Nc,)`` integer label of each cell, or ``None``. When given, a cell only
        claims voxels with the same label (a voxel's tet comes from its own segment).
    tol : barycentric slack of the inside test.
    max_pairs : (cell, voxel) candidate pairs evaluated at once (bounds memory only).

    Returns
    -------
    ``(N, N, N)`` int32 ``[z, y, x]`` map: the index of the lowest-numbered cell containing
    the voxel centre, ``-1`` for skipped voxels and voxels no cell contains.
    """
    labels = np.asarray(voxel_labels)
    n = labels.shape[0]
    if labels.shape != (n, n, n):
        raise ValueError(f"voxel_labels must be a cubic (N, N, N) volume, got {labels.shape}")
    flat_labels = labels.reshape(-1)
    best = np.full(n ** 3, _NO_CELL, dtype=np.int32)
    cells = np.asarray(cells, dtype=np.int64)
    if len(cells) == 0:
        return np.full((n, n, n), -1, dtype=np.int32)
    p = cell_vertices(points, cells)
    c = n // 2
    lo = np.maximum(np.ceil(p.min(axis=1) - 1e-6).astype(np.int64) + c, 0)  # (Nc, 3) x, y, z
    hi = np.minimum(np.floor(p.max(axis=1) + 1e-6).astype(np.int64) + c, n - 1)
    ext = hi - lo + 1
    edges = np.swapaxes(p[:, 1:] - p[:, :1], 1, 2)
    det = np.linalg.det(edges)
    scale = np.abs(det).max()
    usable = np.flatnonzero((ext > 0).all(axis=1) & (np.abs(det) > 1e-12 * scale))
    inv = np.zeros_like(edges)
    inv[usable] = np.linalg.inv(edges[usable])
    cell_labels = None if cell_labels is None else np.asarray(cell_labels, dtype=np.int64)
    # Group cells by bounding-box extent so a chunk is an exact block (no padding).
    shapes, group = np.unique(ext[usable], axis=0, return_inverse=True)
    for g, e in enumerate(shapes):
        members = usable[group.reshape(-1) == g]
        step = max(1, max_pairs // int(np.prod(e)))
        for s in range(0, len(members), step):
            _rasterise_chunk(members[s:s + step], e, lo, inv, p[:, 0], c, n, flat_labels,
                             cell_labels, tol, best)
    best[best == _NO_CELL] = -1
    return best.reshape(n, n, n)


def _rasterise_chunk(ids, extent, lo, inv, p0, c, n, flat_labels, cell_labels, tol, best):
    """Inside test of cells ``ids`` (all with bounding-box ``extent`` (x, y, z) voxels)
    against the voxels of their boxes; lowers ``best`` where a cell claims a voxel."""
    ex, ey, ez = (int(v) for v in extent)
    idx = [lo[ids, a][:, None] + np.arange(e)[None, :] for a, e in enumerate((ex, ey, ez))]
    rel = [(idx[a] - c).astype(np.float64) - p0[ids, a][:, None] for a in range(3)]
    t = inv[ids]  # b_k = Σ_a t[k, a] · rel_a, separable over the axes

    def coordinate(k):
        tx, ty, tz = (t[:, k, a][:, None] * rel[a] for a in range(3))
        return tz[:, :, None, None] + ty[:, None, :, None] + tx[:, None, None, :]

    b1, b2, b3 = coordinate(0), coordinate(1), coordinate(2)
    inside = (b1 >= -tol) & (b2 >= -tol) & (b3 >= -tol)
    inside &= (b1 + b2 + b3) <= 1.0 + tol  # b0 = 1 - b1 - b2 - b3 >= -tol
    ci, oz, oy, ox = np.nonzero(inside)
    if ci.size == 0:
        return
    lin = (idx[2][ci, oz] * n + idx[1][ci, oy]) * n + idx[0][ci, ox]
    lab = flat_labels[lin]
    cell = ids[ci]
    keep = lab >= 0 if cell_labels is None else lab == cell_labels[cell]
    np.minimum.at(best, lin[keep], cell[keep].astype(np.int32))
