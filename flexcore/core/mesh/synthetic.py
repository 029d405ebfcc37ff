"""Synthetic inputs for tests, benchmarks and demos: a "protein" map of Gaussian blobs, and
a regular lattice mesh over a mask in the operators' voxel layout."""

from __future__ import annotations

import itertools

import numpy as np

_PERMS = list(itertools.permutations(range(3)))


def blob_map(box: int, centres_vox, radii_vox, heights=None) -> np.ndarray:
    """``(box, box, box)`` float32 ``[z, y, x]`` sum of isotropic Gaussians.

    Parameters
    ----------
    centres_vox : ``(K, 3)`` blob centres ``(x, y, z)`` in voxels relative to ``box // 2``.
    radii_vox : ``(K,)`` Gaussian sigmas in voxels.
    heights : ``(K,)`` peak values (default 1).
    """
    centres = np.asarray(centres_vox, dtype=np.float64).reshape(-1, 3)
    radii = np.broadcast_to(np.asarray(radii_vox, dtype=np.float64), (len(centres),))
    heights = np.broadcast_to(1.0 if heights is None else heights, (len(centres),))
    ax = np.arange(box, dtype=np.float64) - box // 2
    out = np.zeros((box,) * 3, dtype=np.float64)
    for (cx, cy, cz), r, h in zip(centres, radii, heights):
        gx = np.exp(-((ax - cx) ** 2) / (2 * r * r))
        gy = np.exp(-((ax - cy) ** 2) / (2 * r * r))
        gz = np.exp(-((ax - cz) ** 2) / (2 * r * r))
        out += h * gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
    return out.astype(np.float32)


def lattice_geometry(size: int, n_cells: int, mask: np.ndarray):
    """Kuhn (6-tetrahedra) triangulation of a regular lattice over a ``size``³ box.

    Returns ``coords (M, 3)`` float64 (voxel centres ``(x, y, z)`` from the box centre, for
    the ``[z, y, x]`` voxels where ``mask`` is true), ``vertex_index (M, 4)`` int64,
    ``barycentric (M, 4)`` float64 and ``vertices (Nv, 3)`` float64 with
    ``Σ_k b_k vertices[idx_k] = coords`` exactly; voxels are sorted by tetrahedron (runs of
    equal vertex indices), as the mesh code provides them.
    """
    h = size / n_cells
    zyx = np.argwhere(mask)
    coords = (zyx[:, ::-1] - size // 2).astype(np.float64)
    u = (coords + size / 2) / h
    cell = np.clip(np.floor(u), 0, n_cells - 1).astype(np.int64)
    f = u - cell
    order = np.argsort(-f, axis=1, kind="stable")
    fs = np.take_along_axis(f, order, axis=1)
    bary = np.stack([1 - fs[:, 0], fs[:, 0] - fs[:, 1], fs[:, 1] - fs[:, 2], fs[:, 2]], axis=1)
    corners = [cell]
    for k in range(3):
        step = np.zeros_like(cell)
        np.put_along_axis(step, order[:, k:k + 1], 1, axis=1)
        corners.append(corners[-1] + step)
    n1 = n_cells + 1
    lattice_id = np.stack([c[:, 0] + n1 * (c[:, 1] + n1 * c[:, 2]) for c in corners], axis=1)
    used, vertex_index = np.unique(lattice_id, return_inverse=True)
    vertex_index = vertex_index.reshape(-1, 4).astype(np.int64)
    vertices = np.stack([used % n1, (used // n1) % n1, used // (n1 * n1)], axis=1) * h - size / 2
    perm_id = np.array([_PERMS.index(tuple(o)) for o in order], dtype=np.int64)
    cell_id = cell[:, 0] + n_cells * (cell[:, 1] + n_cells * cell[:, 2])
    sort = np.argsort(cell_id * 6 + perm_id, kind="stable")
    return coords[sort], vertex_index[sort], bary[sort], vertices.astype(np.float64)
