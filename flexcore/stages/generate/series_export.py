"""What ``flexcore generate`` writes for a volume series besides the frames: a ChimeraX
command file that plays them, an animated GIF of projections and a PNG strip of slices.

Figures are drawn on their own Agg canvas (:mod:`flexcore.core.utils.figures`), never through
pyplot, so importing this module leaves the matplotlib backend alone.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ...core.utils.atomic import atomic_path, write_text_atomic
from ...core.utils.figures import new_figure, save_png


def write_chimerax_series(path: Path, frame_glob: str, level: float) -> None:
    """A ChimeraX command file that opens frames as a volume series and plays it.
    (ChimeraX runs a .cxc with its folder as the current directory, so paths are relative.)"""
    write_text_atomic(path, "\n".join([
        f"# flexcore volume series: open in ChimeraX with `open {path.name}`",
        f"open {frame_glob} vseries true",
        f"volume #1 level {level:.4g} style surface",
        "vseries play #1 loop true direction oscillate",
        "view",
    ]) + "\n")


def write_motion_gif(frames: list[np.ndarray], path: Path, title: str, fps: int = 8) -> None:
    """Animated GIF of projections along z, x and y (forth and back).

    Each frame is drawn once and the return trip reuses the drawings: matplotlib's animation
    writer drew every one of the ``2n - 2`` steps twice, 2-2.5 s more on the demo's 21 frames.
    """
    projs = [np.stack([f.sum(0), f.sum(1), f.sum(2)]) for f in frames]
    lo, hi = min(p.min() for p in projs), max(p.max() for p in projs)
    fig = new_figure((7.5, 2.8))
    axes = fig.subplots(1, 3)
    ims = []
    for ax, name, img in zip(axes, ("along z", "along y", "along x"), projs[0]):
        ims.append(ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower"))
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    drawn = []
    for i, proj in enumerate(projs):
        for im, img in zip(ims, proj):
            im.set_data(img)
        fig.suptitle(f"{title} — frame {i + 1}/{len(frames)}", fontsize=9)
        buf = io.BytesIO()
        fig.savefig(buf, format="rgba", dpi=fig.dpi)
        width, height = (int(v) for v in fig.bbox.size)  # the Agg canvas truncates likewise
        drawn.append(Image.frombuffer("RGBA", (width, height), buf.getbuffer(), "raw", "RGBA", 0, 1))
    order = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))
    movie = [drawn[i] for i in order]
    with atomic_path(path) as tmp:
        movie[0].save(tmp, format="GIF", save_all=True, append_images=movie[1:],
                      duration=int(1000 / fps), loop=0)


def write_slice_strip(frames: list[np.ndarray], path: Path, labels: list[str]) -> None:
    picks = np.unique(np.linspace(0, len(frames) - 1, min(5, len(frames))).round().astype(int))
    fig = new_figure((2.4 * len(picks), 2.6))
    axes = fig.subplots(1, len(picks), squeeze=False)
    for ax, i in zip(axes[0], picks):
        ax.imshow(frames[i].sum(0), cmap="gray", origin="lower")
        ax.set_title(labels[i], fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    save_png(fig, path, dpi=100, bbox_inches="tight")
