"""Show a mesh over its map in UCSF ChimeraX: a PDB of the vertices and a ``.cxc`` script.

Placement: ChimeraX puts voxel index ``i`` of a map with origin 0 at ``i · pixel_size`` Å,
so a vertex at ``r`` voxels from the box centre is written at ``(r + N//2) · pixel_size``
Å (x, y, z). Each vertex is a one-atom residue ``VTX`` (element C); every mesh edge is a
``CONECT`` bond, so ChimeraX draws the wireframe. The B-factor column holds the largest
rigidity weight of the cells that use the vertex (``color bfactor``), and the chain id
the vertex's segment (A, B, ... in segment order; A for unsegmented meshes). Serial
numbers above 99,999 and residue numbers above 9,999 use the hybrid-36 encoding.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import numpy as np

from ...core.mesh.core import TetMesh
from ...core.mesh.topology import unique_edges
from ...core.utils.atomic import atomic_path, write_text_atomic

_CHAINS = string.ascii_uppercase + string.ascii_lowercase + string.digits
_DIGITS_UPPER = string.digits + string.ascii_uppercase
_DIGITS_LOWER = string.digits + string.ascii_lowercase


def _base36(value: int, digits: str, width: int) -> str:
    out = ""
    while value:
        value, r = divmod(value, 36)
        out = digits[r] + out
    return out.rjust(width, digits[0])


def hybrid36(value: int, width: int) -> str:
    """Hybrid-36 text of ``value`` in ``width`` columns (decimal while it fits, then base 36
    with upper-case letters, then lower-case), as used for large PDB serials."""
    if value < 10 ** width:
        return f"{value:>{width}d}"
    value -= 10 ** width
    block = 26 * 36 ** (width - 1)
    if value < block:
        return _base36(value + 10 * 36 ** (width - 1), _DIGITS_UPPER, width)
    value -= block
    if value < block:
        return _base36(value + 10 * 36 ** (width - 1), _DIGITS_LOWER, width)
    raise ValueError(f"{value} does not fit hybrid-36 with width {width}")


def vertex_positions_A(mesh: TetMesh) -> np.ndarray:
    """``(Nv, 3)`` vertex positions ``(x, y, z)`` in Å in the map's frame (origin 0)."""
    return (mesh.points + mesh.box // 2) * mesh.pixel_size_A


def write_mesh_pdb(mesh: TetMesh, path) -> None:
    """Write the mesh as a PDB (HETATM per vertex, CONECT per edge), atomically."""
    xyz = vertex_positions_A(mesh)
    bfac = np.zeros(mesh.n_vertices)
    np.maximum.at(bfac, mesh.cells.reshape(-1), np.repeat(mesh.rigidity.astype(float), 4))
    chain_of = np.zeros(mesh.n_vertices, dtype=np.int64)
    if mesh.segments is not None:
        seg_rank = np.searchsorted(np.unique(mesh.segments), mesh.segments)
        first = np.full(mesh.n_vertices, np.iinfo(np.int64).max)
        np.minimum.at(first, mesh.cells.reshape(-1), np.repeat(seg_rank, 4))
        chain_of = np.where(first == np.iinfo(np.int64).max, 0, first) % len(_CHAINS)
    lines = [f"REMARK   1 flexcore mesh: {mesh.n_vertices} vertices, {mesh.n_cells} cells, box "
             f"{mesh.box}, {mesh.pixel_size_A:.4f} A/voxel",
             "REMARK   2 vertex (x, y, z) voxels from centre r -> (r + N//2) * pixel size A"]
    for i, ((x, y, z), b, ch) in enumerate(zip(xyz, np.minimum(bfac, 999.99), chain_of)):
        lines.append(f"HETATM{hybrid36(i + 1, 5)}  C   VTX {_CHAINS[ch]}{hybrid36(i + 1, 4)}"
                     f"    {x:8.3f}{y:8.3f}{z:8.3f}  1.00{b:6.2f}           C")
    edges = unique_edges(mesh.cells)
    order = np.argsort(edges[:, 0], kind="stable")
    edges = edges[order]
    starts = np.searchsorted(edges[:, 0], np.arange(mesh.n_vertices + 1))
    for v in range(mesh.n_vertices):
        partners = edges[starts[v]:starts[v + 1], 1]
        for s in range(0, len(partners), 4):
            lines.append("CONECT" + hybrid36(v + 1, 5)
                         + "".join(hybrid36(int(p) + 1, 5) for p in partners[s:s + 4]))
    lines.append("END")
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


def _relative(target, start_dir) -> str:
    try:
        rel = os.path.relpath(Path(target).resolve(), Path(start_dir).resolve())
    except ValueError:  # another drive on Windows
        rel = str(Path(target).resolve())
    return rel.replace("\\", "/")


def write_chimerax_script(path, map_path, pdb_path, pixel_size_A: float,
                          level: float | None = None, weight_range=(0.5, 1.5)) -> None:
    """Write a ChimeraX ``.cxc`` that opens ``map_path`` (#1, placed with origin 0 and the
    mesh's voxel size) and ``pdb_path`` (#2, sticks coloured by rigidity weight).

    ChimeraX runs a ``.cxc`` from the script's folder, so paths are written relative to it.
    """
    here = Path(path).parent
    lo, hi = weight_range
    level_opt = f" level {level:.6g}" if level is not None else ""
    text = "\n".join([
        "# flexcore mesh over its map. In ChimeraX: open mesh.cxc",
        f'open "{_relative(map_path, here)}"',
        f"volume #1 origin 0,0,0 voxelSize {pixel_size_A:.6g}{level_opt} style surface "
        f"transparency 0.6",
        f'open "{_relative(pdb_path, here)}"',
        "style #2 stick",
        "size #2 stickRadius 0.15",
        f"color bfactor #2 palette blue:white:red range {lo:.3g},{hi:.3g}",
        "view",
    ]) + "\n"
    write_text_atomic(path, text)
