"""A synthetic "protein" map of Gaussian blobs, for mesh tests, benchmarks and demos."""

from __future__ import annotations

import numpy as np


def blob_map(box: int, centres_vox, radii_vox, heights=None) -> np.ndarray:
    """``(box, box, box)`` float32 ``[z, y, x]`` sum of isotropic Gaussians.

    Parameters
    ----------
    centres_vox : ``(K, 3)`` blob centres ``(x, y, z)`` in voxels relative to ``box // 2``.
    radii_vox : ``(K,)`` Gaussian sigmas in voxels.
    heights : ``(K,)`` peak values (default 1).
    """
    centres = np.asarray(centres_vox, dtype=np.float64).reshape(-1, 3)
    radii = np.broadcast_to(np.asarray(radii_vox, dtype=np.float64), (len(centres),))
    heights = np.broadcast_to(1.0 if heights is None else heights, (len(centres),))
    ax = np.arange(box, dtype=np.float64) - box // 2
    out = np.zeros((box,) * 3, dtype=np.float64)
    for (cx, cy, cz), r, h in zip(centres, radii, heights):
        gx = np.exp(-((ax - cx) ** 2) / (2 * r * r))
        gy = np.exp(-((ax - cy) ** 2) / (2 * r * r))
        gz = np.exp(-((ax - cz) ** 2) / (2 * r * r))
        out += h * gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
    return out.astype(np.float32)
