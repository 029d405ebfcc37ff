"""The structure at latent points: a trained model's canonical map deformed to each node of a
grid over the particles' latents, drawn as three orthogonal projections in one small PNG.

Grid (``grid`` nodes per axis):

* ``K = 1``: ``grid`` points along ``z1``; ``K = 2``: ``grid × grid`` nodes over ``(z1, z2)``,
  row-major (``z1`` slow). Each axis spans the particles' 0.5th–99.5th percentiles.
* ``K > 2``: ``grid × grid`` nodes on the plane of the latents' first two principal
  components through their mean, over the same percentiles of the two scores.

Each map (training box, :class:`~flexcore.core.deform.VolumeDeformer` on the canonical map,
nothing kept outside the mask) is summed along ``z``, ``y`` and ``x`` (volume ``[z, y, x]``):
three images ``[y, x]``, ``[z, x]``, ``[z, y]`` side by side, downsampled to ``image_px``,
grey levels on one scale for the whole grid so that changes between nodes show.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...core.deform import VolumeDeformer
from ...core.trained import TrainedModel


@dataclass
class LatentGrid:
    """Nodes where maps are drawn.

    Attributes
    ----------
    axes : the coordinates of the nodes along each grid axis (one array for ``K = 1``, two
        otherwise), in the grid's own coordinates (latent units, or principal-component scores).
    latents : ``(G, K)`` latent of every node, row-major over ``axes``.
    mean, components : for ``K > 2``, the latents' mean ``(K,)`` and the two principal
        directions ``(2, K)`` (unit rows); node = ``mean + a·components[0] + b·components[1]``.
    """

    axes: list[np.ndarray]
    latents: np.ndarray
    mean: np.ndarray | None = None
    components: np.ndarray | None = None


def principal_plane(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(K,)`` and first two principal directions ``(2, K)`` of latents ``z (N, K)``;
    each direction's sign makes its largest-magnitude entry positive (reproducible)."""
    z = np.asarray(z, dtype=np.float64)
    mean = z.mean(axis=0)
    _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
    comps = vt[:2].copy()
    for row in comps:
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1
    return mean, comps


def _span(values: np.ndarray, n: int) -> np.ndarray:
    lo, hi = np.percentile(values, [0.5, 99.5])
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n)


def latent_grid(z: np.ndarray, grid: int) -> LatentGrid:
    """The grid of nodes for latents ``z (N, K)`` (see the module docstring)."""
    z = np.asarray(z, dtype=np.float64)
    k = z.shape[1]
    if k == 1:
        a = _span(z[:, 0], grid)
        return LatentGrid([a], a[:, None])
    if k == 2:
        a, b = _span(z[:, 0], grid), _span(z[:, 1], grid)
        aa, bb = np.meshgrid(a, b, indexing="ij")
        return LatentGrid([a, b], np.stack([aa.ravel(), bb.ravel()], axis=1))
    mean, comps = principal_plane(z)
    scores = (z - mean) @ comps.T
    a, b = _span(scores[:, 0], grid), _span(scores[:, 1], grid)
    aa, bb = np.meshgrid(a, b, indexing="ij")
    nodes = mean + aa.ravel()[:, None] * comps[0] + bb.ravel()[:, None] * comps[1]
    return LatentGrid([a, b], nodes, mean, comps)


def projections(volume: np.ndarray, image_px: int) -> np.ndarray:
    """Sums of ``volume [z, y, x]`` along z, y and x, side by side: ``(P, 3·P)`` float32 with
    ``P = min(box, image_px)`` (area-averaged downsampling)."""
    vol = torch.as_tensor(np.asarray(volume, dtype=np.float32))
    views = torch.stack([vol.sum(0), vol.sum(1), vol.sum(2)])  # [y,x], [z,x], [z,y]
    px = min(int(vol.shape[-1]), int(image_px))
    if px != vol.shape[-1]:
        views = F.interpolate(views[:, None], size=(px, px), mode="area")[:, 0]
    # image row 0 is drawn at the top: flip so +y (+z) points up, as in ChimeraX
    return torch.cat(list(views.flip(-2)), dim=-1).numpy()


def png_base64(image: np.ndarray) -> str:
    """8-bit greyscale PNG of ``image`` (values already in 0…255) as base64 text."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8)).save(buf, format="PNG",
                                                                           optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def render_grid(model: TrainedModel, nodes: np.ndarray, *, image_px: int = 64,
                supersample: int = 1, device="cpu") -> list[str]:
    """Base64 PNGs (see :func:`projections`) of the canonical map deformed to each node
    ``(G, K)``, on one grey scale: the 0.1th–99.9th percentile over all nodes."""
    deformer = VolumeDeformer(model, model.volume, model.pixel_size_A, supersample, device,
                              keep_outside=False)
    images = np.stack([projections(deformer.frame(np.asarray(z, dtype=np.float32)), image_px)
                       for z in nodes])
    lo, hi = np.percentile(images, [0.1, 99.9])
    scaled = (images - lo) * (255.0 / max(float(hi - lo), 1e-12))
    return [png_base64(im) for im in scaled]
