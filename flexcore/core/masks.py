"""Soft masks: spheres, and thresholded maps dilated and given a cosine edge.

All masks are ``[z, y, x]`` float32 arrays in ``[0, 1]`` with the box centre at ``N // 2``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .fourier import lowpass_volume


def _radius_grid(n: int) -> np.ndarray:
    c = n // 2
    z, y, x = np.ogrid[:n, :n, :n]
    return np.sqrt((x - c) ** 2 + (y - c) ** 2 + (z - c) ** 2)


def sphere_mask(n: int, radius_px: float, soft_edge_px: float = 0.0) -> np.ndarray:
    """Sphere of ``radius_px`` about the box centre, with a raised-cosine edge of
    ``soft_edge_px`` outside the radius."""
    r = _radius_grid(n)
    return cosine_falloff(r - radius_px, soft_edge_px)


def cosine_falloff(distance_px: np.ndarray, width_px: float) -> np.ndarray:
    """1 where ``distance <= 0``, 0 beyond ``width``, raised cosine in between."""
    d = np.asarray(distance_px, dtype=np.float64)
    if width_px <= 0:
        return (d <= 0).astype(np.float32)
    t = np.clip(d / width_px, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)


def threshold_mask(
    volume: np.ndarray,
    threshold: float,
    pixel_size_A: float,
    lowpass_A: float | None = 10.0,
    dilate_A: float = 2.0,
    soft_edge_A: float = 5.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Solvent mask from a map: low-pass, threshold, dilate, add a soft cosine edge.

    Returns ``(hard, soft)``: ``hard`` is the binary mask after dilation and ``soft`` falls
    from 1 on ``hard`` to 0 over ``soft_edge_A`` outside it (so ``soft > 0`` covers more
    than ``hard``). Raises ``ValueError`` if nothing exceeds the threshold.
    """
    vol = np.asarray(volume, dtype=np.float32)
    if lowpass_A:
        vol = lowpass_volume(torch.from_numpy(vol), lowpass_A, pixel_size_A).numpy()
    binary = vol > threshold
    if not binary.any():
        raise ValueError(
            f"no voxel of the map exceeds the mask threshold {threshold:g} "
            f"(map range {vol.min():.4g} … {vol.max():.4g})"
        )
    dist_out = ndimage.distance_transform_edt(~binary)
    hard = dist_out <= dilate_A / pixel_size_A
    dist_hard = ndimage.distance_transform_edt(~hard)
    soft = cosine_falloff(dist_hard, soft_edge_A / pixel_size_A)
    return hard.astype(np.float32), soft


def threshold_from_quantile(volume: np.ndarray, quantile: float) -> float:
    """Density level below which a fraction ``quantile`` of the voxels lies."""
    return float(np.quantile(np.asarray(volume), quantile))


def threshold_from_sigma(volume: np.ndarray, n_sigma: float) -> float:
    """Density level ``mean + n_sigma · std`` of the map."""
    v = np.asarray(volume, dtype=np.float64)
    return float(v.mean() + n_sigma * v.std())


def resize_mask(mask: np.ndarray, new_box: int, order: int = 1) -> np.ndarray:
    """Resample a ``[z, y, x]`` volume onto a box of ``new_box`` voxels, keeping the centre
    voxel ``N // 2`` fixed (voxel ``i`` of the new box samples old position
    ``(i - new_box//2) · N / new_box + N // 2``, clamped to the box).

    ``order=0`` is nearest-neighbour (half-way rounds up; keeps the dtype: hard masks,
    integer labels); ``order=1`` is trilinear (soft masks; float32). Done axis by axis.
    """
    out = np.asarray(mask)
    n = out.shape[0]
    pos = np.clip((np.arange(new_box) - new_box // 2) * (n / new_box) + n // 2, 0, n - 1)
    if order == 0:
        idx = np.floor(pos + 0.5).astype(np.int64)
        return out.take(idx, axis=2).take(idx, axis=1).take(idx, axis=0)
    if order != 1:
        raise ValueError(f"order must be 0 or 1, got {order}")
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = (pos - lo).astype(np.float32)
    out = out.astype(np.float32, copy=False)
    for axis in (2, 1, 0):  # grow the innermost axis while the array is smallest
        shape = [1, 1, 1]
        shape[axis] = new_box
        f = frac.reshape(shape)
        out = out.take(lo, axis=axis) * (1 - f) + out.take(hi, axis=axis) * f
    return out
