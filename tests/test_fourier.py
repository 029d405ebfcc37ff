"""Fourier helpers: cropping/padding, shifts, band limits, splat response."""

import numpy as np
import torch

from flexcore.core.fourier import (
    band_limit_resample_3d,
    crop_rfft2,
    fft_centered,
    fourier_crop,
    ifft_centered,
    shift_images,
)


def smooth_image(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.fft.rfft2(torch.randn(2, n, n, generator=g))
    ky = torch.fft.fftfreq(n)[:, None]
    kx = torch.fft.rfftfreq(n)[None]
    return torch.fft.irfft2(f * ((kx**2 + ky**2).sqrt() < 0.15), s=(n, n))


def test_centered_fft_round_trip_and_origin():
    x = torch.zeros(33, 33)
    x[16, 16] = 1.0  # a delta at the centre has a flat, real spectrum
    f = fft_centered(x, 2)
    np.testing.assert_allclose(f.real.numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(f.imag.numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(ifft_centered(f, 2).real.numpy(), x.numpy(), atol=1e-6)


def test_fourier_crop_preserves_mean_and_band_limited_content():
    x = smooth_image()
    small = fourier_crop(x, 32, 2)
    assert torch.allclose(small.mean(dim=(1, 2)), x.mean(dim=(1, 2)), atol=1e-5)
    # band-limited content survives down- then up-sampling exactly
    back = fourier_crop(small, 64, 2)
    assert torch.allclose(back, x, atol=1e-4)
    # the rfft2 crop used in training is the same operation
    via_rfft = torch.fft.irfft2(crop_rfft2(torch.fft.rfft2(x), 32), s=(32, 32))
    assert torch.allclose(via_rfft, small, atol=1e-5)


def test_volume_resample_matches_crop():
    v = torch.randn(32, 32, 32)
    f = torch.fft.rfftn(v)
    k = torch.sqrt(torch.fft.fftfreq(32)[:, None, None] ** 2 + torch.fft.fftfreq(32)[None, :, None] ** 2
                   + torch.fft.rfftfreq(32)[None, None, :] ** 2)
    v = torch.fft.irfftn(f * (k < 0.2), s=(32, 32, 32))
    a = band_limit_resample_3d(v, 16, 0.49, edge=0.01)
    b = fourier_crop(v, 16, 3)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a.mean(), v.mean(), atol=1e-6)


def test_shift_moves_content_by_plus_shift():
    x = torch.zeros(1, 32, 32)
    x[0, 16, 16] = 1.0
    y = shift_images(x, torch.tensor([[3.0, -2.0]]))  # dx=+3, dy=-2
    assert torch.argmax(y[0]).item() == (16 - 2) * 32 + (16 + 3)
    # sub-pixel: the centroid moves by the shift
    s = smooth_image(32)[:1]
    z = shift_images(s - s.mean(), torch.tensor([[0.5, 0.25]]))
    back = shift_images(z, torch.tensor([[-0.5, -0.25]]))
    assert torch.allclose(back, s - s.mean(), atol=1e-5)
