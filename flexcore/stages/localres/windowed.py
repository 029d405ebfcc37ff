"""Local resolution by windowed FSC: the half maps' FSC in a small soft window around each
point, read at a threshold, on a coarse grid and spread to the voxels (vectorised, batched).

Around each grid point ``c`` (every ``stride`` voxels, inside the mask dilated by ``stride``)
both half maps are cut to a ``w³`` patch centred on ``c`` (zero beyond the box), multiplied by
a soft spherical window (1 inside radius ``w/4``, raised-cosine to 0 at ``w/2``), Fourier
transformed, and the FSC per shell ``s = 0 … w/2`` (frequency ``s / (w · pixel)``) is formed.
The local resolution is ``w · pixel / s*`` where ``s*`` is the first (linearly interpolated)
shell where the FSC drops below ``threshold`` (0.5 by default: with a window this small the
FSC is noisy, and 0.5 is the usual local threshold, e.g. blocres and cryoSPARC's local
resolution job), clamped to ``[2 · pixel, w · pixel]``. Each voxel takes the value of the
nearest grid point; voxels outside the mask are 0.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...core.fourier import rfft_radius_3d
from .parameters import check_parameters


def soft_sphere_window(w: int, device=None) -> torch.Tensor:
    """``(w, w, w)`` window: 1 within ``w/4`` of the centre ``w//2``, raised cosine to 0 at ``w/2``."""
    ax = torch.arange(w, dtype=torch.float32, device=device) - w // 2
    r = torch.sqrt(ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2)
    t = ((r - w / 4) / (w / 4)).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(torch.pi * t))


def shell_matrix(w: int, device=None) -> torch.Tensor:
    """``(w·w·(w//2+1), w//2+1)`` matrix summing ``rfftn`` coefficients of a ``w³`` box into
    integer shells, each coefficient weighted by its Hermitian multiplicity (2, or 1 on the
    ``kx = 0`` and Nyquist planes); coefficients beyond shell ``w//2`` are dropped."""
    shell = torch.round(rfft_radius_3d(w, device=device) * w).long().flatten()
    weight = torch.full((w, w, w // 2 + 1), 2.0, device=device)
    weight[..., 0] = 1.0
    if w % 2 == 0:
        weight[..., -1] = 1.0
    n_shell = w // 2 + 1
    m = torch.zeros(shell.numel(), n_shell, device=device)
    keep = shell < n_shell
    rows = torch.arange(shell.numel(), device=device)[keep]
    m[rows, shell[keep]] = weight.flatten()[keep]
    return m


def crossing_resolution(fsc: torch.Tensor, threshold: float, window_px: int,
                        pixel_size_A: float) -> torch.Tensor:
    """Resolution (Å) where each row of ``fsc (C, S)`` first falls below ``threshold``
    (shell 0 counts as 1), linearly interpolated; ``2 · pixel`` when it never does."""
    c, s = fsc.shape
    f = fsc.clone()
    f[:, 0] = 1.0
    below = f[:, 1:] < threshold
    any_below = below.any(dim=1)
    first = torch.where(any_below, below.float().argmax(dim=1) + 1, torch.full_like(any_below, s - 1,
                                                                                  dtype=torch.long))
    f0 = f.gather(1, (first - 1)[:, None])[:, 0]
    f1 = f.gather(1, first[:, None])[:, 0]
    frac = ((f0 - threshold) / (f0 - f1).clamp_min(1e-12)).clamp(0.0, 1.0)
    shell = (first - 1).float() + frac
    res = window_px * pixel_size_A / shell.clamp_min(1.0)
    res = torch.where(any_below, res, torch.full_like(res, 2.0 * pixel_size_A))
    return res.clamp(2.0 * pixel_size_A, window_px * pixel_size_A)


@torch.no_grad()
def local_resolution(half_a, half_b, mask, pixel_size_A: float, window_px: int = 16,
                     stride: int = 2, threshold: float = 0.5, chunk: int = 1024,
                     device="cpu") -> np.ndarray:
    """Local-resolution map (Å) from two half maps (see the module docstring).

    Parameters
    ----------
    half_a, half_b : ``(N, N, N)`` ``[z, y, x]`` half maps.
    mask : ``(N, N, N)`` mask; voxels with ``mask > 0.5`` get a value.
    pixel_size_A : voxel size (Å).
    window_px : patch edge ``w`` in voxels (even, ≥ 8).
    stride : grid spacing in voxels (≥ 1).
    threshold : FSC threshold.
    chunk : patches per batch (memory ∝ ``chunk · w³``).

    Returns ``(N, N, N)`` float32, Å inside the mask, 0 outside.
    """
    check_parameters(window_px, stride, threshold)
    dev = torch.device(device)
    a = torch.as_tensor(np.asarray(half_a), dtype=torch.float32, device=dev)
    b = torch.as_tensor(np.asarray(half_b), dtype=torch.float32, device=dev)
    hard = torch.as_tensor(np.asarray(mask) > 0.5, device=dev)
    n, w = a.shape[-1], int(window_px)
    grid = torch.arange(0, n, stride, device=dev)
    dilated = F.max_pool3d(hard[None, None].float(), 2 * stride + 1, stride=1,
                           padding=stride)[0, 0] > 0
    sel = dilated[grid][:, grid][:, :, grid]
    centres = torch.stack(torch.meshgrid(grid, grid, grid, indexing="ij"), -1)[sel]  # (C, 3) zyx
    pad = w // 2
    p = n + 2 * pad
    ap = F.pad(a, (pad,) * 6).flatten()
    bp = F.pad(b, (pad,) * 6).flatten()
    off = torch.arange(w, device=dev)
    offsets = (off[:, None, None] * p * p + off[None, :, None] * p + off[None, None, :]).flatten()
    window = soft_sphere_window(w, dev)
    shells = shell_matrix(w, dev)
    values = torch.empty(len(centres), device=dev)
    for s in range(0, len(centres), chunk):
        c = centres[s:s + chunk]
        idx = (c[:, 0] * p * p + c[:, 1] * p + c[:, 2])[:, None] + offsets[None]  # patch starts
        fa = torch.fft.rfftn(ap[idx].view(-1, w, w, w) * window, dim=(1, 2, 3)).flatten(1)
        fb = torch.fft.rfftn(bp[idx].view(-1, w, w, w) * window, dim=(1, 2, 3)).flatten(1)
        num = (fa * fb.conj()).real @ shells
        den = torch.sqrt(((fa.abs() ** 2) @ shells) * ((fb.abs() ** 2) @ shells)).clamp_min(1e-30)
        values[s:s + chunk] = crossing_resolution(num / den, threshold, w, pixel_size_A)
    coarse = torch.zeros((len(grid),) * 3, device=dev)
    coarse[sel] = values
    near = torch.clamp(torch.round(torch.arange(n, device=dev) / stride).long(), max=len(grid) - 1)
    full = coarse[near][:, near][:, :, near]
    return torch.where(hard, full, torch.zeros_like(full)).cpu().numpy().astype(np.float32)
