"""Figures drawn off-screen: a matplotlib ``Figure`` with its own Agg canvas, saved atomically.

Nothing here touches pyplot or the global backend, so importing flexcore never changes the
backend of a notebook or another program.
"""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .atomic import atomic_path


def new_figure(figsize: tuple[float, float], dpi: float | None = None) -> Figure:
    """A figure of ``figsize`` inches with an Agg canvas (no pyplot state)."""
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path, **savefig_kwargs) -> None:
    """Write ``fig`` as a PNG under a temporary name, then rename it to ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **savefig_kwargs)
