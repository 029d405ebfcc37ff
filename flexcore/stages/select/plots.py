"""The latent-space plot of a selection: every particle, the selected ones coloured by subset,
each subset's state marked, and the region outline for boxes, ellipses and points."""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Circle, Ellipse, Polygon, Rectangle

from ...core.utils.figures import new_figure, save_png
from .regions import Subset

_COLOURS = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown",
            "tab:pink", "tab:olive", "tab:cyan"]


def _colour(i: int) -> str:
    return _COLOURS[i % len(_COLOURS)]


def plot_selection(z: np.ndarray, subsets: list[Subset], path, title: str, *, method: str = "",
                   half_widths=None, radius: float | None = None, regions=None) -> None:
    """PNG of the selection. ``K = 1``: histogram of ``z1`` with each subset's particles
    stacked in its colour and its state as a vertical line. ``K ≥ 2``: scatter plots of
    neighbouring latent pairs (up to three), unselected particles grey; box/ellipse/point
    regions outlined in the first pair; ``regions`` (subset name → the boxes and lassos drawn
    in the latent explorer) are outlined in the pair they were drawn in."""
    z = np.asarray(z, dtype=np.float64)
    k = z.shape[1]
    pairs = [(0, 0)] if k == 1 else [(d, d + 1) for d in range(min(k - 1, 3))]
    fig = new_figure((4.6 * len(pairs), 3.8), dpi=100)
    lim = max(1.5, float(np.abs(z).max()) * 1.05)
    for p, (a, b) in enumerate(pairs):
        ax = fig.add_subplot(1, len(pairs), p + 1)
        if k == 1:
            bins = np.linspace(-lim, lim, 61)
            ax.hist(z[:, 0], bins=bins, color="0.8", label=f"all ({len(z)})")
            for i, s in enumerate(subsets):
                ax.hist(z[s.members, 0], bins=bins, color=_colour(i), alpha=0.75,
                        label=f"{s.name} ({s.count})")
                ax.axvline(s.state[0], color=_colour(i), ls="--", lw=1.2)
            ax.set_xlabel("z1")
            ax.set_ylabel("particles")
        else:
            chosen = np.zeros(len(z), bool)
            for s in subsets:
                chosen |= s.members
            ax.scatter(z[~chosen, a], z[~chosen, b], s=2, color="0.75", alpha=0.5,
                       label=f"not selected ({int((~chosen).sum())})")
            for i, s in enumerate(subsets):
                ax.scatter(z[s.members, a], z[s.members, b], s=3, color=_colour(i), alpha=0.6,
                           label=f"{s.name} ({s.count})")
                ax.plot(s.state[a], s.state[b], "X", color="k", ms=9, mec="w")
                ax.annotate(s.name, (s.state[a], s.state[b]), xytext=(5, 5),
                            textcoords="offset points", fontsize=8)
                if p == 0:
                    _outline(ax, s, i, method, half_widths, radius, a, b)
                for r in (regions or {}).get(s.name, []):
                    _outline_drawn(ax, r, i, f"z{a + 1}-z{b + 1}")
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_xlabel(f"z{a + 1}")
            ax.set_ylabel(f"z{b + 1}")
        if p == 0:
            ax.legend(fontsize=7, loc="upper left", markerscale=3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def _outline(ax, s: Subset, i: int, method: str, half_widths, radius, a: int, b: int) -> None:
    c = (s.state[a], s.state[b])
    style = dict(fill=False, ec=_colour(i), lw=1.5, ls="--")
    if method in ("box", "ellipse") and half_widths is not None:
        w = np.broadcast_to(np.asarray(half_widths, dtype=np.float64), s.state.shape)
        if method == "box":
            ax.add_patch(Rectangle((c[0] - w[a], c[1] - w[b]), 2 * w[a], 2 * w[b], **style))
        else:
            ax.add_patch(Ellipse(c, 2 * w[a], 2 * w[b], **style))
    elif method == "points" and radius:
        ax.add_patch(Circle(c, radius, **style))


def _outline_drawn(ax, region, i: int, view: str) -> None:
    """A box or lasso drawn in the explorer, in the panel of the view it was drawn in."""
    if not isinstance(region, dict) or region.get("view") != view:
        return
    style = dict(fill=False, ec=_colour(i), lw=1.2, ls="--")
    if region.get("kind") == "box":
        (x0, x1), (y0, y1) = region["x"], region["y"]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, **style))
    elif region.get("kind") == "lasso" and len(region.get("vertices", [])) >= 3:
        ax.add_patch(Polygon(np.asarray(region["vertices"], dtype=np.float64), closed=True, **style))
