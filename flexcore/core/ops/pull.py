"""The "pull" convection variant, kept behind an option for comparison.

``W(x) = V(x - u(x))`` is sampled trilinearly at every mask voxel (not mass-conserving),
then projected rigidly with the same splat as the default push model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .geometry import VoxelGeometry
from .reference import interpolate_displacements, splat_project_reference


def sample_volume_trilinear(volume: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Trilinear samples of ``volume[z, y, x]`` at ``points (..., 3)`` given as ``(x, y, z)``
    voxel offsets from the box centre; zero outside the box."""
    n = volume.shape[-1]
    c = n // 2
    # grid_sample's normalised coordinates: -1 and 1 are the centres of the end voxels.
    grid = (points + c) * (2.0 / (n - 1)) - 1.0
    shape = points.shape[:-1]
    g = grid.reshape(1, 1, 1, -1, 3)
    out = F.grid_sample(volume[None, None], g, mode="bilinear", padding_mode="zeros",
                        align_corners=True)
    return out.reshape(shape)


def pull_project_reference(
    volume: torch.Tensor,
    geometry: VoxelGeometry,
    displacements: torch.Tensor | None,
    rotations: torch.Tensor,
    image_size: int,
) -> torch.Tensor:
    """Pull-convect ``volume`` (``(N, N, N)``) on the mask voxels, then splat-project rigidly.

    Same arguments as :func:`~flexcore.core.ops.reference.splat_project_reference` except that
    the full canonical ``volume`` replaces the per-voxel ``density``.
    """
    b = rotations.shape[0]
    coords = geometry.coords
    if displacements is None:
        dens = sample_volume_trilinear(volume, coords).unsqueeze(0).expand(b, -1)
    else:
        u = interpolate_displacements(geometry, displacements)
        dens = sample_volume_trilinear(volume, coords.unsqueeze(0) - u)
    images = [
        splat_project_reference(dens[i], geometry, None, rotations[i:i + 1], image_size)
        for i in range(b)
    ]
    return torch.cat(images, dim=0)
