"""PNG of a mesh's central slices: mask, tetra index and rigidity weight (matplotlib, Agg)."""

from __future__ import annotations

import numpy as np

from ..utils.figures import new_figure, save_png
from .core import TetMesh

_AXES = (("z", "x", "y"), ("y", "x", "z"), ("x", "y", "z"))  # slice axis, image columns, rows


def central_slices(volume: np.ndarray) -> list[np.ndarray]:
    """The three central slices of a ``[z, y, x]`` volume: ``[N//2, :, :]`` (y, x),
    ``[:, N//2, :]`` (z, x) and ``[:, :, N//2]`` (z, y)."""
    c = volume.shape[0] // 2
    return [volume[c], volume[:, c], volume[:, :, c]]


def plot_mesh_slices(mesh: TetMesh, path, title: str = "") -> None:
    """Write a 3 × 3 PNG: rows are the central z, y and x slices; columns the soft mask
    (hard-mask outline), the tetra index (neighbouring tets in different colours; white in
    solvent) and the rigidity weight of each voxel's tet."""
    n = mesh.box
    tet = mesh.tet_map
    shuffled = np.random.default_rng(0).permutation(max(mesh.n_cells, 1))  # neighbours differ
    tet_colour = np.where(tet >= 0, shuffled[np.maximum(tet, 0)] % 20, -1).astype(float)
    weight = np.where(tet >= 0, mesh.rigidity[np.maximum(tet, 0)], np.nan)
    fig = new_figure((11, 10.5), dpi=100)
    columns = [("mask (soft; hard outline)", mesh.mask_soft, "gray", (0.0, 1.0)),
               ("tetra index", np.ma.masked_less(tet_colour, 0), "tab20", (0, 19)),
               ("rigidity weight", np.ma.masked_invalid(weight), "viridis",
                (float(np.nanmin(weight)), float(np.nanmax(weight))) if mesh.n_cells else (0, 1))]
    extent = (-0.5 - n // 2, n - 0.5 - n // 2) * 2
    for row, (axis, cols, rows) in enumerate(_AXES):
        for col, (label, vol, cmap, (vmin, vmax)) in enumerate(columns):
            ax = fig.add_subplot(3, 3, 3 * row + col + 1)
            img = central_slices(vol)[row]
            im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower",
                           interpolation="nearest", extent=extent)
            if col == 0:
                ax.contour(central_slices(mesh.mask)[row], levels=[0.5], colors="tab:red",
                           linewidths=0.8, extent=extent, origin="lower")
            if col == 2:
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
            ax.set_title(f"{label}, {axis} = centre", fontsize=9)
            ax.set_xlabel(f"{cols} (voxels from centre)", fontsize=8)
            ax.set_ylabel(f"{rows} (voxels from centre)", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(title or f"mesh: {mesh.n_cells} cells, {mesh.n_vertices} vertices, box {n}, "
                          f"{mesh.pixel_size_A:.3g} Å/voxel", fontsize=11)
    # fixed margins for this fixed grid: tight_layout drew the figure once more to find them
    # (0.7 s of the mesh step's 3.6 s)
    fig.subplots_adjust(left=0.06, right=0.97, bottom=0.05, top=0.93, wspace=0.32, hspace=0.32)
    save_png(fig, path)
