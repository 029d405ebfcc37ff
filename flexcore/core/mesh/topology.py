"""Faces, edges and boundaries of tetrahedral meshes (index bookkeeping, numpy only)."""

from __future__ import annotations

import numpy as np

_FACES = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
_EDGES = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])


def cell_faces(cells: np.ndarray) -> np.ndarray:
    """``(4 Nc, 3)`` vertex indices of every cell's faces, each row sorted."""
    return np.sort(np.asarray(cells, dtype=np.int64)[:, _FACES].reshape(-1, 3), axis=1)


def face_counts(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique faces ``(F, 3)`` (sorted vertex indices) and how many cells share each.

    In a conforming mesh interior faces have count 2 and outer-boundary faces count 1.
    """
    return np.unique(cell_faces(cells), axis=0, return_counts=True)


def unique_edges(cells: np.ndarray) -> np.ndarray:
    """``(E, 2)`` int64 unique edges ``(i < j)`` of all cells."""
    e = np.sort(np.asarray(cells, dtype=np.int64)[:, _EDGES].reshape(-1, 2), axis=1)
    return np.unique(e, axis=0)


def position_ids(points: np.ndarray, decimals: int = 6) -> np.ndarray:
    """``(Nv,)`` id per vertex, equal for vertices at the same position (copies made for
    unfused segments share an id)."""
    rounded = np.round(np.asarray(points, dtype=np.float64), decimals)
    return np.unique(rounded, axis=0, return_inverse=True)[1].reshape(-1)


def boundary_vertices(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """``(Nv,)`` bool: vertices on the outer boundary of the region the cells cover.

    Works on geometry rather than indices, so the internal interfaces between unfused
    segments (separate vertex copies) and cubes present in two segments' submeshes do not
    count as boundary.
    """
    pid = position_ids(points)
    geo = np.unique(np.sort(pid[np.asarray(cells, dtype=np.int64)], axis=1), axis=0)
    faces, counts = face_counts(geo)
    on_boundary = np.zeros(pid.max() + 1 if pid.size else 0, dtype=bool)
    on_boundary[faces[counts == 1].reshape(-1)] = True
    return on_boundary[pid]
