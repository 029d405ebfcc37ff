"""Segmented meshes: one submesh per segment on the global lattice, fused along a tree.

Mechanics (reference/method.md §5.3):

* every voxel of the hard mask gets a segment: its own label, or that of the nearest
  labelled voxel (the "expanded" segmentation, CryoSPARC's ``segmask_exp``);
* segment ``s``'s submesh is the 5-tet split of the lattice cubes touching its expanded
  region (with the same 1-voxel margin as the regular mesh);
* a connection ``X>Y`` ("Y is joined to X") merges the coincident lattice vertices of the
  two submeshes, so their interface moves together; segments not connected keep separate
  vertex copies and can slide apart. Merging is per connection: two segments share a
  vertex only through a chain of connections that all contain it;
* a voxel's tet is looked up in its own segment's submesh (the rasteriser's label test).
"""

from __future__ import annotations

import re

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import ConfigError
from .core import TetMesh
from .locate import locate_voxels
from .regular import cube_size, cubes_touching, lattice_keys, lattice_positions, split_cubes

_PAIR = re.compile(r"^\s*(-?\d+)\s*>\s*(-?\d+)\s*$")


def parse_connections(connections) -> list[tuple[int, int]]:
    """``"0>3, 0>4, 3>2"`` (or a list of pairs) → ``[(0, 3), (0, 4), (3, 2)]``.

    Raises ``ConfigError`` naming the item that is not of the form ``X>Y``.
    """
    if connections is None:
        return []
    if isinstance(connections, str):
        items = [s for s in connections.split(",") if s.strip()]
        pairs = []
        for item in items:
            m = _PAIR.match(item)
            if not m:
                raise ConfigError(f"connections: {item.strip()!r} is not of the form X>Y "
                                  f"(integer segment ids, e.g. '0>3, 0>4, 3>2')")
            pairs.append((int(m.group(1)), int(m.group(2))))
        return pairs
    return [(int(x), int(y)) for x, y in connections]


def parse_segment_ids(ids, name: str = "rigid_segments") -> list[int]:
    """``"3, 5"`` or ``[3, 5]`` → ``[3, 5]``; raises ``ConfigError`` naming ``name``."""
    if ids is None:
        return []
    if isinstance(ids, str):
        try:
            return [int(s) for s in ids.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"{name}: expected comma-separated segment ids, "
                              f"got {ids!r}") from None
    return [int(s) for s in ids]


def _bfs_order(pairs):
    children: dict[int, list[int]] = {}
    for x, y in pairs:
        children.setdefault(x, []).append(y)
    order, queue = [], [pairs[0][0]]
    while queue:
        node = queue.pop(0)
        for y in children.get(node, []):
            order.append((node, y))
            queue.append(y)
    return ", ".join(f"{x}>{y}" for x, y in order)


def validate_connections(pairs: list[tuple[int, int]], known_ids) -> None:
    """Check that ``pairs`` form one tree listed breadth-first from its root.

    Raises ``ConfigError`` naming the offending pair for an unknown segment id, a self
    connection, a cycle (or a segment joined twice), a pair whose parent is not yet in the
    tree, or a pair out of breadth-first order.
    """
    known = set(int(k) for k in known_ids)
    for x, y in pairs:
        for s in (x, y):
            if s not in known:
                raise ConfigError(f"connections: pair {x}>{y} names segment {s}, which is not "
                                  f"in the segmentation (ids: {sorted(known)})")
        if x == y:
            raise ConfigError(f"connections: pair {x}>{y} joins a segment to itself")
    if not pairs:
        return
    rank = {pairs[0][0]: 0}  # breadth-first discovery order of the nodes
    last_parent_rank = 0
    for x, y in pairs:
        if x not in rank:
            raise ConfigError(
                f"connections: pair {x}>{y} starts at segment {x}, which is not yet joined to "
                f"the tree rooted at {pairs[0][0]} (pairs must form one tree, root first)")
        if y in rank:
            raise ConfigError(f"connections: pair {x}>{y} would close a cycle (segment {y} is "
                              f"already in the tree); connections must form a tree")
        if rank[x] < last_parent_rank:
            raise ConfigError(f"connections: pair {x}>{y} is out of breadth-first order; "
                              f"list them as: {_bfs_order(pairs)}")
        last_parent_rank = rank[x]
        rank[y] = len(rank)


def expand_segments(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Partition the mask: each mask voxel takes its label, or the nearest labelled voxel's.

    ``labels`` is ``(N, N, N)`` int (``< 0`` = no segment), ``mask`` boolean. Returns int32
    labels, ``-1`` outside the mask.
    """
    labels = np.asarray(labels)
    unlabeled = labels < 0
    if unlabeled.all():
        raise ConfigError("the segmentation has no labelled voxel")
    idx = ndimage.distance_transform_edt(unlabeled, return_distances=False, return_indices=True)
    nearest = labels[tuple(idx)]
    return np.where(mask, nearest, -1).astype(np.int32)


def segmented_mesh(labels: np.ndarray, mask: np.ndarray, mask_soft: np.ndarray,
                   pixel_size_A: float, n_cells: int, connections=None) -> tuple[TetMesh, dict]:
    """Build a segmented ``TetMesh`` (rigidity 1.0; set weights afterwards).

    Parameters
    ----------
    labels : ``(N, N, N)`` int segment ids (``< 0`` = none), ``[z, y, x]``.
    mask, mask_soft : hard (``> 0.5``) and soft solvent masks.
    n_cells : cubes across the box.
    connections : ``"X>Y, ..."`` or list of pairs (validated as a breadth-first tree).

    Returns
    -------
    The mesh and a dict: ``segment_ids``, ``voxels_per_segment``, ``cells_per_segment``,
    ``shared_vertices`` (vertex merges made by connections), ``segmask_exp``.
    """
    hard = np.asarray(mask) > 0.5
    box = hard.shape[0]
    h = cube_size(box, n_cells)
    pairs = parse_connections(connections)
    validate_connections(pairs, np.unique(labels[labels >= 0]))
    seg_exp = expand_segments(labels, hard)
    ids, counts = np.unique(seg_exp[hard], return_counts=True)
    for x, y in pairs:
        for s in (x, y):
            if s not in ids:
                raise ConfigError(f"connections: pair {x}>{y} names segment {s}, which has no "
                                  f"voxel inside the solvent mask")
    cell_keys, cell_ijk, cell_seg = [], [], []
    for s in ids:
        ijk = split_cubes(cubes_touching(seg_exp == s, n_cells))
        cell_ijk.append(ijk)
        cell_keys.append(lattice_keys(ijk, box))
        cell_seg.append(np.full(len(ijk), s, dtype=np.int64))
    keys = np.concatenate(cell_keys)  # (Nc, 4)
    ijk = np.concatenate(cell_ijk)  # (Nc, 4, 3)
    seg = np.concatenate(cell_seg)
    # a node is (segment, lattice vertex); connections merge nodes of the same vertex
    seg_rank = np.searchsorted(ids, seg)
    node_code = seg_rank[:, None] * (keys.max() + 1) + keys
    nodes, node_of = np.unique(node_code.reshape(-1), return_inverse=True)
    node_seg, node_key = nodes // (keys.max() + 1), nodes % (keys.max() + 1)
    rows, cols = [], []
    for x, y in pairs:
        rx, ry = np.searchsorted(ids, [x, y])
        kx, ky = node_key[node_seg == rx], node_key[node_seg == ry]
        common = np.intersect1d(kx, ky)
        rows.append(np.searchsorted(nodes, rx * (keys.max() + 1) + common))
        cols.append(np.searchsorted(nodes, ry * (keys.max() + 1) + common))
    rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(nodes), len(nodes)))
    n_vertices, vertex_of_node = connected_components(graph, directed=False)
    cells = vertex_of_node[node_of].reshape(-1, 4).astype(np.int64)
    points = np.zeros((n_vertices, 3))
    points[cells.reshape(-1)] = lattice_positions(ijk.reshape(-1, 3), h)
    tet_map = locate_voxels(points, cells, seg_exp, seg)
    missing = int((hard & (tet_map < 0)).sum())
    if missing:  # cannot happen by construction; guard the invariant TetMesh relies on
        raise RuntimeError(f"{missing} mask voxels lie in no cell of their segment's submesh")
    mesh = TetMesh(points=points, cells=cells, rigidity=np.ones(len(cells), np.float32), box=box,
                   pixel_size_A=pixel_size_A, tet_map=tet_map, mask=hard, mask_soft=mask_soft,
                   segments=seg.astype(np.int32),
                   fuses=np.array(pairs, dtype=np.int32).reshape(-1, 2))
    info = {"segment_ids": [int(s) for s in ids],
            "voxels_per_segment": {int(s): int(c) for s, c in zip(ids, counts)},
            "cells_per_segment": {int(s): int((seg == s).sum()) for s in ids},
            "shared_vertices": int(len(nodes) - n_vertices), "segmask_exp": seg_exp}
    return mesh, info
