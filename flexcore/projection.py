"""The rigid projector: real-space push + splat of a whole map (zero flow).

It is the convection + projection operator with no displacements, so the flexible model
with zero flow equals it by construction (same code path).
"""

from __future__ import annotations

import numpy as np
import torch

from .ops import splat_project


def voxel_coordinates(box: int, voxel_index: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(x, y, z)`` positions (voxels from the centre) of linear ``[z, y, x]`` indices."""
    idx = torch.as_tensor(np.asarray(voxel_index), dtype=torch.int64)
    c = box // 2
    z = idx // (box * box)
    y = (idx // box) % box
    x = idx % box
    return torch.stack([x - c, y - c, z - c], dim=1).to(torch.float32)


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
    idx = torch.nonzero(keep).squeeze(1)
    coords = voxel_coordinates(n, idx.cpu()).to(vol.device)
    m = idx.numel()
    vertex_index = torch.zeros((m, 4), dtype=torch.int32, device=vol.device)
    bary = torch.zeros((m, 4), dtype=torch.float32, device=vol.device)
    rot = torch.as_tensor(np.asarray(rotations) if not torch.is_tensor(rotations) else rotations,
                          dtype=torch.float32, device=vol.device)
    return splat_project(vol.flatten()[idx], coords, vertex_index, bary, None, rot,
                         image_size or n)
