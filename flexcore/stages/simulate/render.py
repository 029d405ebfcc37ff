"""Exact rendering of Gaussian-atom phantoms: volumes and projections, separably.

A 3-D Gaussian atom of mass ``w`` and width ``σ`` projects to a 2-D Gaussian of the same
mass and width, so images are computed analytically (no interpolation, no projector of ours
in the loop — the simulated data do not share the model's discretisation). Units: positions
in voxels from the box centre; a voxel value is density per voxel (sums to the total mass).
"""

from __future__ import annotations

import math

import torch


def _gauss_1d(centres: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """``(..., A, size)`` normalised 1-D Gaussians sampled at pixel centres ``0 … size-1``
    for centres given in pixels from the box centre."""
    grid = torch.arange(size, dtype=centres.dtype, device=centres.device) - size // 2
    d = grid - centres.unsqueeze(-1)
    return torch.exp(-0.5 * (d / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)


def render_volume(positions_px: torch.Tensor, weights: torch.Tensor, size: int,
                  sigma_px: float) -> torch.Tensor:
    """Volume ``[z, y, x]`` of Gaussian atoms at ``positions_px (A, 3)`` (x, y, z)."""
    gx = _gauss_1d(positions_px[:, 0], size, sigma_px) * weights[:, None]
    gy = _gauss_1d(positions_px[:, 1], size, sigma_px)
    gz = _gauss_1d(positions_px[:, 2], size, sigma_px)
    return torch.einsum("az,ay,ax->zyx", gz, gy, gx)


def render_projections(positions_px: torch.Tensor, weights: torch.Tensor,
                       rotations: torch.Tensor, size: int, sigma_px: float) -> torch.Tensor:
    """Projections ``(B, size, size)`` of atoms under RELION matrices ``rotations (B, 3, 3)``.

    ``positions_px`` is ``(A, 3)`` shared by all images or ``(B, A, 3)`` per image.
    """
    if positions_px.ndim == 2:
        positions_px = positions_px.unsqueeze(0).expand(rotations.shape[0], -1, -1)
    p = torch.einsum("bij,baj->bai", rotations[:, :2, :], positions_px)  # (B, A, 2)
    gx = _gauss_1d(p[..., 0], size, sigma_px) * weights[:, None]  # (B, A, size)
    gy = _gauss_1d(p[..., 1], size, sigma_px)
    return torch.bmm(gy.transpose(1, 2), gx)  # (B, y, x)
