"""Centred FFTs, Fourier cropping/padding and sub-pixel shifts (torch, batched).

Real-space arrays keep their centre at index ``N // 2``. Frequencies are in cycles per
pixel; ``k = (kx, ky[, kz])`` follows the array's last axes (x fastest). Filters (CTF,
shifts, low-pass) are applied with plain ``rfftn``/``irfftn``: a shift-invariant filter does
not depend on where the phase origin sits, so no shifting is needed for filtering.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def as_tensor(x, dtype=torch.float32, device=None) -> torch.Tensor:
    """Tensor view of ``x`` (numpy array or tensor) with the given dtype and device."""
    if isinstance(x, torch.Tensor):
        return x.to(dtype=dtype, device=device if device is not None else x.device)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def fft_centered(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Full complex DFT over the last ``ndim`` axes with the origin at index ``N // 2``
    in both real and Fourier space."""
    dims = tuple(range(-ndim, 0))
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=dims), dim=dims), dim=dims)


def ifft_centered(f: torch.Tensor, ndim: int) -> torch.Tensor:
    """Inverse of :func:`fft_centered` (complex output)."""
    dims = tuple(range(-ndim, 0))
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(f, dim=dims), dim=dims), dim=dims)


def rfft_freqs_2d(size: int, device=None, dtype=torch.float32):
    """Frequencies ``(ky, kx)`` of an unshifted ``rfft2`` of a ``size × size`` image.

    Returns two ``(size, size // 2 + 1)`` tensors in cycles per pixel.
    """
    ky = torch.fft.fftfreq(size, device=device, dtype=dtype)
    kx = torch.fft.rfftfreq(size, device=device, dtype=dtype)
    return torch.meshgrid(ky, kx, indexing="ij")


def rfft_radius_3d(size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``|k|`` (cycles/voxel) of an unshifted ``rfftn`` of a ``size³`` volume."""
    kz = torch.fft.fftfreq(size, device=device, dtype=dtype)
    kx = torch.fft.rfftfreq(size, device=device, dtype=dtype)
    gz, gy, gx = torch.meshgrid(kz, kz, kx, indexing="ij")
    return torch.sqrt(gz**2 + gy**2 + gx**2)


def center_crop(x: torch.Tensor, size: int, ndim: int) -> torch.Tensor:
    """Real-space crop of the last ``ndim`` axes to ``size`` about the centre ``N // 2``."""
    n = x.shape[-1]
    if size == n:
        return x
    lo = n // 2 - size // 2
    sl = (Ellipsis,) + (slice(lo, lo + size),) * ndim
    return x[sl]


def fourier_crop(x: torch.Tensor, new_size: int, ndim: int) -> torch.Tensor:
    """Resample the last ``ndim`` axes from ``N`` to ``new_size`` by cropping (``new_size < N``)
    or zero-padding (``new_size > N``) the centred spectrum.

    The mean value is preserved (a map keeps its density level; an image its grey level),
    so the voxel size changes by ``N / new_size``. Cropping is an ideal low-pass at the new
    Nyquist frequency.
    """
    n = x.shape[-1]
    if any(s != n for s in x.shape[-ndim:]):
        raise ValueError(f"fourier_crop needs cubic/square arrays, got shape {tuple(x.shape)}")
    if new_size == n:
        return x.clone()
    f = fft_centered(x.to(torch.complex64 if x.dtype != torch.float64 else torch.complex128), ndim)
    c_old, c_new = n // 2, new_size // 2
    if new_size < n:
        lo = c_old - c_new
        sl = (Ellipsis,) + (slice(lo, lo + new_size),) * ndim
        g = f[sl]
    else:
        g = torch.zeros(x.shape[:-ndim] + (new_size,) * ndim, dtype=f.dtype, device=f.device)
        lo = c_new - c_old
        sl = (Ellipsis,) + (slice(lo, lo + n),) * ndim
        g[sl] = f
    out = ifft_centered(g, ndim).real * (new_size / n) ** ndim
    return out.to(x.dtype)


def shift_images(images: torch.Tensor, shifts_px: torch.Tensor) -> torch.Tensor:
    """Translate images by sub-pixel amounts: ``out(x) = images(x - shift)``.

    Parameters
    ----------
    images : ``(B, D, D)`` real tensor.
    shifts_px : ``(B, 2)`` shifts ``(dx, dy)`` in pixels; content moves by ``+shift``.
    """
    d = images.shape[-1]
    f = torch.fft.rfft2(images)
    f = f * shift_phase_2d(shifts_px, d, device=images.device)
    return torch.fft.irfft2(f, s=(d, d))


def shift_phase_2d(shifts_px: torch.Tensor, size: int, device=None) -> torch.Tensor:
    """Phase ramps ``exp(-2πi k·s)`` on the unshifted rfft2 grid, ``(B, D, D//2+1)``.

    Multiplying a spectrum by this moves the image content by ``+s`` pixels.
    """
    # separable: exp(-2πi (kx sx + ky sy)) = exp(-2πi kx sx) · exp(-2πi ky sy), so only
    # D + D//2 + 1 complex exponentials per image are evaluated
    kx = torch.fft.rfftfreq(size, device=device, dtype=torch.float32)
    ky = torch.fft.fftfreq(size, device=device, dtype=torch.float32)
    s = shifts_px.to(device=device, dtype=torch.float32)
    px = -2.0 * math.pi * s[:, 0, None] * kx  # (B, D//2+1)
    py = -2.0 * math.pi * s[:, 1, None] * ky  # (B, D)
    ex = torch.polar(torch.ones_like(px), px)
    ey = torch.polar(torch.ones_like(py), py)
    return ey[:, :, None] * ex[:, None, :]


def lowpass_volume(volume: torch.Tensor, resolution_A: float, pixel_size_A: float,
                   edge_shells: float = 2.0) -> torch.Tensor:
    """Low-pass a cubic volume to ``resolution_A`` with a raised-cosine edge
    ``edge_shells`` Fourier shells wide (no ringing from a hard cut)."""
    n = volume.shape[-1]
    k = rfft_radius_3d(n, device=volume.device) * n  # in shells
    k_cut = n * pixel_size_A / resolution_A
    w = cosine_edge(k, k_cut, edge_shells)
    f = torch.fft.rfftn(volume, dim=(-3, -2, -1))
    return torch.fft.irfftn(f * w, s=(n, n, n), dim=(-3, -2, -1))


def cosine_edge(k: torch.Tensor, k_cut: float, width: float) -> torch.Tensor:
    """1 below ``k_cut - width/2``, 0 above ``k_cut + width/2``, raised cosine between."""
    if width <= 0:
        return (k <= k_cut).to(k.dtype)
    t = ((k - (k_cut - width / 2)) / width).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * t))


def bilinear_kernel_response_2d(size: int, device=None) -> torch.Tensor:
    """Fourier response of a bilinear splat, ``sinc²(kx)·sinc²(ky)``, on the rfft2 grid.

    Splatting point masses with bilinear weights convolves the image with a triangle
    kernel; dividing by this response undoes that blur (gridding correction).
    """
    ky, kx = rfft_freqs_2d(size, device=device)
    return (torch.sinc(kx) * torch.sinc(ky)) ** 2


def crop_rfft2(f: torch.Tensor, new_size: int) -> torch.Tensor:
    """Crop an unshifted ``rfft2`` spectrum of ``D × D`` images to ``new_size`` (even,
    ``≤ D``), scaled so the inverse keeps the mean grey level (as :func:`fourier_crop`)."""
    d = f.shape[-2]
    if new_size == d:
        return f
    h = new_size // 2
    rows = torch.cat([f[..., :h, : h + 1], f[..., d - h:, : h + 1]], dim=-2)
    return rows * (new_size / d) ** 2


def crop_rfft3(f: torch.Tensor, new_size: int) -> torch.Tensor:
    """Crop an unshifted ``rfftn`` spectrum of a ``D³`` volume to ``new_size`` (even, ``≤ D``),
    scaled so the inverse keeps the mean density level."""
    d = f.shape[-3]
    if new_size == d:
        return f
    h = new_size // 2
    g = f[..., : h + 1]
    g = torch.cat([g[..., :h, :, :], g[..., d - h:, :, :]], dim=-3)
    g = torch.cat([g[..., :, :h, :], g[..., :, d - h:, :]], dim=-2)
    return g * (new_size / d) ** 3


def band_limit_resample_3d(volume: torch.Tensor, new_size: int, k_cut: float,
                           edge: float = 2.0) -> torch.Tensor:
    """Fourier-crop a ``D³`` volume to ``new_size`` and low-pass it at ``k_cut`` (cycles per
    voxel of the *output* grid) with a raised-cosine edge ``edge`` shells wide, in one
    FFT pair. Differentiable."""
    f = crop_rfft3(torch.fft.rfftn(volume, dim=(-3, -2, -1)), new_size)
    k = rfft_radius_3d(new_size, device=volume.device) * new_size
    f = f * cosine_edge(k, k_cut * new_size, edge)
    return torch.fft.irfftn(f, s=(new_size,) * 3, dim=(-3, -2, -1))
