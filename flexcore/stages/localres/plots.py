"""Plots of ``flexcore localres``: FSC per region, and local-resolution slices."""

from __future__ import annotations

import numpy as np

from ...core.fsc import format_resolution, shell_frequencies
from ...core.fsc_outputs import format_fsc_axes
from ...core.mesh.plots import central_slices
from ...core.utils.figures import new_figure, save_png

_REGION_COLOURS = {"whole": "tab:blue", "moving": "tab:red", "middle": "tab:orange",
                   "core": "tab:green"}


def _save(fig, path) -> None:
    save_png(fig, path, bbox_inches="tight")


def plot_region_fsc(path, curves: dict, resolutions: dict, box: int, pixel_size_A: float,
                    title: str) -> None:
    """Half-map FSC per region: one colour per region, flexible solid, rigid dashed; the
    legend gives each 0.143 resolution."""
    freqs = shell_frequencies(box, pixel_size_A)
    fig = new_figure((7.2, 4.6), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    regions = list(dict.fromkeys(k.split("_", 1)[1] for k in curves))
    for i, region in enumerate(regions):
        colour = _REGION_COLOURS.get(region, f"C{(i + 4) % 10}")
        for kind, style, label in (("flex", "-", "flex"), ("noflex", "--", "rigid")):
            key = f"{kind}_{region}"
            if key in curves:
                ax.plot(freqs[1:], curves[key][1:], style, color=colour,
                        lw=2.0 if region == "moving" else 1.3,
                        label=f"{region}, {label}: {format_resolution(resolutions[key])}")
    ax.axhline(0.143, color="0.3", lw=0.8, ls=":")
    format_fsc_axes(ax, freqs, "half-map FSC inside the region")
    ax.legend(fontsize=7, loc="upper right", ncol=1 if len(regions) <= 4 else 2)
    ax.set_title(title, fontsize=9)
    _save(fig, path)


def display_range(values: np.ndarray, pixel_size_A: float, window_px: int) -> tuple[float, float]:
    """Colour range (Å) for local-resolution maps: the 2nd to the 90th percentile of the mask's
    values (windows at the mask edge that hold mostly solvent reach the window size and would
    squash the scale)."""
    if not len(values):
        return 2 * pixel_size_A, window_px * pixel_size_A
    lo, hi = np.percentile(values, [2, 90])
    return float(lo), max(float(hi), float(lo) + 0.5)


def plot_local_resolution(path, local: dict, labels: np.ndarray, names: dict,
                          pixel_size_A: float, window_px: int) -> None:
    """Rows: flexible and rigid local resolution; columns: central z, y, x slices (one colour
    scale, Å, :func:`display_range`) and a histogram per region (values beyond the scale in
    the end bins)."""
    inside = labels > 0
    lo, hi = display_range(np.concatenate([v[inside] for v in local.values()]), pixel_size_A,
                           window_px)
    fig = new_figure((13, 3.4 * len(local)), dpi=100)
    bins = np.linspace(lo, hi + 1e-6, 31)
    for r, (kind, vol) in enumerate(local.items()):
        im = None
        for c, (axis, img) in enumerate(zip("zyx", central_slices(vol))):
            ax = fig.add_subplot(len(local), 4, 4 * r + c + 1)
            im = ax.imshow(np.ma.masked_equal(img, 0.0), cmap="jet", vmin=lo, vmax=hi,
                           origin="lower", interpolation="nearest")
            ax.set_title(f"{'flexible' if kind == 'flex' else 'rigid'}: central {axis} slice",
                         fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="Å")
        ax = fig.add_subplot(len(local), 4, 4 * r + 4)
        for i, (label, name) in enumerate(names.items()):
            sel = labels == label
            if sel.any():
                ax.hist(np.clip(vol[sel], lo, hi), bins=bins, histtype="step", lw=1.5,
                        color=_REGION_COLOURS.get(name, f"C{(i + 4) % 10}"),
                        label=f"{name}: median {np.median(vol[sel]):.2f} Å")
        ax.set_xlabel(f"local resolution (Å; {window_px}-voxel window; ends: beyond)")
        ax.set_ylabel("voxels")
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
