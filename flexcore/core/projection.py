"""The rigid projector: real-space push + splat of a whole map (zero flow).

It is the convection + projection operator with no displacements, so the flexible model
with zero flow equals it by construction (same code path).
"""

from __future__ import annotations

import numpy as np
import torch

from .ops import VoxelGeometry, splat_project


def project_volume(volume, rotations, image_size: int | None = None, support=None,
                   device=None) -> torch.Tensor:
    """Project a map ``[z, y, x]`` at RELION matrices ``rotations (B, 3, 3)``.

    ``support`` (a boolean or 0/1 array like the map) restricts the voxels that are
    splatted (default: every voxel with a non-zero value). Returns ``(B, D, D)``.
    """
    vol = torch.as_tensor(np.asarray(volume) if not torch.is_tensor(volume) else volume,
                          dtype=torch.float32, device=device)
    n = vol.shape[-1]
    if support is None:
        keep = (vol != 0).flatten()
    else:
        keep = torch.as_tensor(np.asarray(support), device=vol.device).flatten() > 0
    geometry = VoxelGeometry.rigid(torch.nonzero(keep).squeeze(1), n)
    rot = torch.as_tensor(np.asarray(rotations) if not torch.is_tensor(rotations) else rotations,
                          dtype=torch.float32, device=vol.device)
    return splat_project(geometry.gather(vol), geometry, None, rot, image_size or n)
