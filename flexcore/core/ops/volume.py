"""Convect a density into a 3-D volume (for generated maps), by trilinear push-splat.

Each mask voxel moves by its interpolated displacement and its mass is spread over the
8 surrounding voxels; ``supersample`` splits each voxel into ``s³`` sub-points first so that
expansion leaves no holes.
"""

from __future__ import annotations

import torch

from .geometry import VoxelGeometry
from .reference import interpolate_displacements


def splat_volume(
    density: torch.Tensor,
    geometry: VoxelGeometry,
    displacement: torch.Tensor | None,
    size: int,
    supersample: int = 1,
    chunk: int = 1_000_000,
) -> torch.Tensor:
    """Deformed map ``(size, size, size)`` ``[z, y, x]`` from mask-voxel densities.

    Parameters
    ----------
    density, geometry : as for the projection operator.
    displacement : ``(Nv, 3)`` vertex displacements in voxels, or ``None`` (identity).
    supersample : sub-points per voxel along each axis; the displacement of a sub-point is
        that of its parent voxel (the field is smooth at this scale).
    """
    n = size
    c = n // 2
    out = density.new_zeros(n * n * n)
    coords = geometry.coords
    if displacement is None:
        u = torch.zeros_like(coords)
    else:
        u = interpolate_displacements(geometry, displacement[None])[0]
    s = int(supersample)
    offs = (torch.arange(s, device=density.device, dtype=coords.dtype) + 0.5) / s - 0.5
    oz, oy, ox = torch.meshgrid(offs, offs, offs, indexing="ij")
    sub = torch.stack([ox, oy, oz], dim=-1).reshape(-1, 3)  # (s³, 3) as (x, y, z)
    for start in range(0, coords.shape[0], max(1, chunk // sub.shape[0])):
        stop = start + max(1, chunk // sub.shape[0])
        p = (coords[start:stop] + u[start:stop]).unsqueeze(1) + sub.unsqueeze(0)
        m = (density[start:stop] / sub.shape[0]).unsqueeze(1).expand(-1, sub.shape[0])
        p = p.reshape(-1, 3) + c
        m = m.reshape(-1)
        f = torch.floor(p)
        t = p - f
        i = f.long()
        for dz in (0, 1):
            wz = t[:, 2] if dz else 1 - t[:, 2]
            for dy in (0, 1):
                wy = t[:, 1] if dy else 1 - t[:, 1]
                for dx in (0, 1):
                    wx = t[:, 0] if dx else 1 - t[:, 0]
                    xi, yi, zi = i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz
                    ok = (xi >= 0) & (xi < n) & (yi >= 0) & (yi < n) & (zi >= 0) & (zi < n)
                    idx = torch.where(ok, (zi * n + yi) * n + xi, torch.zeros_like(xi))
                    out = out.index_add(0, idx, torch.where(ok, wx * wy * wz * m, torch.zeros_like(m)))
    return out.view(n, n, n)
