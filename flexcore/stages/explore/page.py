"""The explorer page: one self-contained HTML file (inline script, style and images; no
network), assembled from ``page/explorer.html``, ``explorer.css`` and ``explorer.js`` and the
data of one training.

Data handed to the script (JSON in ``<script id="flexdata">``):

* ``latents``: every particle's latent, little-endian float32 ``(N, K)`` row-major, base64;
  ``drawn``: the indices (uint32, base64) of the particles drawn when they are subsampled
  (``null``: all are drawn). Selections always test every particle.
* ``views``: ``K = 1`` a strip (``z1`` against a jitter ``frac(i·0.618…)·2 − 1``) under a
  histogram; ``K = 2`` ``z1`` against ``z2``; ``K > 2`` the first two principal components,
  then every pair of latent axes.
* ``grid``: the nodes' axes and latents and one PNG per node
  (:mod:`flexcore.stages.explore.images`).
"""

from __future__ import annotations

import base64
import json
from importlib.resources import files
from itertools import combinations
from string import Template

import numpy as np

GOLDEN = 0.6180339887498949


def strip_jitter(n: int) -> np.ndarray:
    """The K = 1 strip's vertical coordinate of particles ``0…n−1``: ``frac(i·φ⁻¹)·2 − 1``
    (the page computes the same in double precision)."""
    return 2.0 * ((np.arange(n, dtype=np.float64) * GOLDEN) % 1.0) - 1.0


def page_views(latent_dim: int) -> list[dict]:
    """The views the page offers (``id``, ``label``, ``kind``, latent ``dims``, ``axes`` names)."""
    if latent_dim == 1:
        return [{"id": "z1", "label": "z1 (strip)", "kind": "strip", "dims": [0],
                 "axes": ["z1", "jitter"]}]
    pairs = [{"id": f"z{a + 1}-z{b + 1}", "label": f"z{a + 1} vs z{b + 1}", "kind": "axes",
              "dims": [a, b], "axes": [f"z{a + 1}", f"z{b + 1}"]}
             for a, b in combinations(range(latent_dim), 2)]
    if latent_dim == 2:
        return pairs
    return [{"id": "pc1-pc2", "label": "PC1 vs PC2", "kind": "pca", "dims": [],
             "axes": ["PC1", "PC2"]}, *pairs]


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def build_page(*, title: str, meta: str, latents: np.ndarray, drawn: np.ndarray | None,
               sha256: str, checkpoint: str, grid: dict, pca: dict | None) -> str:
    """The page's HTML text. ``latents (N, K)``; ``drawn``: indices of the particles drawn
    (None: all); ``grid``: ``kind`` (``latent`` or ``pca``), ``axes``, ``latents``,
    ``images`` (base64 PNGs); ``pca``: ``mean`` and ``components`` for K > 2."""
    z = np.asarray(latents, dtype="<f4")
    data = {
        "n": int(z.shape[0]), "k": int(z.shape[1]), "latents": _b64(z),
        "drawn": None if drawn is None else _b64(np.asarray(drawn, dtype="<u4")),
        "sha256": sha256, "checkpoint": checkpoint, "views": page_views(z.shape[1]),
        "grid": grid, "pca": pca,
    }
    # inside <script>, "</" would end the element early
    text = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    here = files(__package__) / "page"
    html = Template((here / "explorer.html").read_text(encoding="utf-8"))
    return html.substitute(title=_escape(title), meta=_escape(meta), data=text,
                           css=(here / "explorer.css").read_text(encoding="utf-8"),
                           js=(here / "explorer.js").read_text(encoding="utf-8"))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
