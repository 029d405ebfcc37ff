"""Regions of the map by motion, and the half-map FSC inside each.

Without a segmentation the mesh cells are grouped by how far the learned flow moves them over
the particles: per vertex the **motion amplitude** is the RMS over the particles' latents of
the displacement about its mean, ``sqrt(mean_i |Δ_i − Δ̄|²)`` (Å; a part that the flow shifts
the same way for every particle does not move between states), and a cell's amplitude is the
mean over its four vertices. Mask voxels take their cell's amplitude; the top quartile of the
voxels (``quantile`` = 0.25) is the **moving** region, the bottom quartile the **core**, the
rest **middle** (cells whose amplitude equals a threshold join the outer region, so with ties
a region can hold a little more than a quarter). With a segmented mesh each segment is a
region. Regions are whole cells; their FSC masks get a raised-cosine edge of two training-box
voxels and are multiplied by the mesh's soft mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ...core.fsc import fsc_curve, resolution_at
from ...core.masks import cosine_falloff
from ...core.strain import strain_samples

LABEL_NAMES = {1: "core", 2: "middle", 3: "moving"}


def motion_amplitude(displacement_fn, latents: np.ndarray, pixel_size_A: float,
                     n_samples: int = 256, seed: int = 0, batch: int = 32) -> np.ndarray:
    """Per-vertex motion amplitude ``(Nv,)`` in Å over (a sample of) the particles' latents.

    ``displacement_fn``: ``z (B, K) ↦ (B, Nv, 3)`` displacements in voxels of ``pixel_size_A``.
    """
    z = strain_samples(latents, n_samples, seed)
    disp = np.concatenate([displacement_fn(z[s:s + batch]).detach().cpu().numpy()
                           for s in range(0, len(z), batch)]).astype(np.float64)
    dev = disp - disp.mean(axis=0, keepdims=True)
    return np.sqrt((dev**2).sum(-1).mean(0)) * pixel_size_A


def motion_labels(tet_map: np.ndarray, cells: np.ndarray, vertex_amplitude: np.ndarray,
                  quantile: float = 0.25) -> tuple[np.ndarray, np.ndarray, dict]:
    """Region labels ``(N, N, N)`` int8 (0 solvent, 1 core, 2 middle, 3 moving), each voxel's
    amplitude ``(N, N, N)`` (Å, 0 in solvent) and the two thresholds (voxel-weighted
    quantiles ``quantile`` and ``1 − quantile`` of the mask voxels' amplitude)."""
    cell_amp = vertex_amplitude[cells].mean(axis=1)
    inside = tet_map >= 0
    amp = np.where(inside, cell_amp[np.maximum(tet_map, 0)], 0.0)
    lo, hi = np.quantile(amp[inside], [quantile, 1.0 - quantile])
    labels = np.zeros(tet_map.shape, np.int8)
    labels[inside] = 2
    labels[inside & (amp <= lo)] = 1
    labels[inside & (amp >= hi) & (amp > lo)] = 3
    return labels, amp.astype(np.float32), {"core_max_A": float(lo), "moving_min_A": float(hi)}


def segment_labels(tet_map: np.ndarray, segments: np.ndarray) -> tuple[np.ndarray, dict]:
    """Labels ``(N, N, N)`` int32: 1 + the index of each voxel's segment among the mesh's
    sorted segment ids (0 in solvent), and the label → ``segment<id>`` names."""
    ids = np.unique(segments)
    inside = tet_map >= 0
    labels = np.zeros(tet_map.shape, np.int32)
    labels[inside] = np.searchsorted(ids, segments[tet_map[inside]]) + 1
    return labels, {i + 1: f"segment{int(s)}" for i, s in enumerate(ids)}


def soft_region_mask(region: np.ndarray, mask_soft: np.ndarray, edge_px: float) -> np.ndarray:
    """Hard region ``(N, N, N)`` bool → soft mask: raised-cosine edge of ``edge_px`` voxels
    outside it, times the solvent mask ``mask_soft``."""
    dist = ndimage.distance_transform_edt(~region)
    return (cosine_falloff(dist, edge_px) * mask_soft).astype(np.float32)


def region_fsc(maps: dict, masks: dict, pixel_size_A: float) -> tuple[dict, dict]:
    """FSC curves and 0.143 resolutions of every map pair inside every mask.

    ``maps``: kind (``flex``, ``noflex``) → ``(half_A, half_B)``; ``masks``: region → mask.
    Returns ``curves[f"{kind}_{region}"]`` and ``resolution[f"{kind}_{region}"]`` (Å).
    """
    curves, res = {}, {}
    for region, mask in masks.items():
        for kind, (a, b) in maps.items():
            key = f"{kind}_{region}"
            curves[key] = fsc_curve(a, b, mask=mask)
            res[key] = resolution_at(curves[key], 0.143, pixel_size_A)
    return curves, res
