"""The CTF against published wavelengths, hand-derived values and torch-ctf."""

import math

import numpy as np
import pytest
import torch

from flexcore.core.ctf import calculate_ctf_2d, electron_wavelength_A


def test_wavelengths_match_published_values():
    # Relativistic electron wavelengths (e.g. Williams & Carter, Transmission Electron
    # Microscopy, Table 1.1): 100 kV 0.03701 Å, 200 kV 0.02508 Å, 300 kV 0.01969 Å.
    assert electron_wavelength_A(300.0) == pytest.approx(0.01969, abs=5e-6)
    assert electron_wavelength_A(200.0) == pytest.approx(0.02508, abs=5e-6)
    assert electron_wavelength_A(100.0) == pytest.approx(0.03701, abs=5e-6)


def ctf(df_u, df_v=None, ang=0.0, kv=300.0, cs=0.0, w=0.0, psize=1.0, size=128, phase=0.0, b=0.0):
    t = lambda v: torch.tensor([float(v)])  # noqa: E731
    return calculate_ctf_2d(t(df_u), t(df_u if df_v is None else df_v), t(ang), kv, cs, w, psize,
                            size, phase_shift_deg=phase, bfactor_A2=b)[0]


def test_zero_frequency_equals_amplitude_contrast():
    assert float(ctf(15000.0, w=0.1, cs=2.7)[0, 0]) == pytest.approx(0.1, abs=1e-6)


def test_first_zero_and_peak_without_cs():
    # With Cs = 0 and w = 0: CTF = sin(π λ Δf k²): first zero at k² = 1/(λ Δf), peak at half.
    lam, df, size, psize = electron_wavelength_A(300.0), 10000.0, 256, 1.0
    c = ctf(df, size=size, psize=psize)
    k_zero = 1.0 / math.sqrt(lam * df)  # 1/Å
    k_peak = 1.0 / math.sqrt(2 * lam * df)
    col = lambda k: int(round(k * size * psize))  # noqa: E731
    assert abs(float(c[0, col(k_peak)])) == pytest.approx(1.0, abs=2e-3)
    # sign change around the first zero along kx (row ky = 0)
    i = col(k_zero)
    assert float(c[0, i - 1]) * float(c[0, i + 1]) < 0
    # CTF along kx equals the analytic formula
    kx = torch.fft.rfftfreq(size)[:40] / psize
    np.testing.assert_allclose(c[0, :40].numpy(), np.sin(np.pi * lam * df * kx.numpy() ** 2),
                               atol=1e-5)


def test_astigmatism_angle_is_measured_from_x():
    # defocus U = 20000 along the angle; at k along that direction the defocus is U.
    lam, size = electron_wavelength_A(300.0), 128
    c = ctf(20000.0, 10000.0, ang=90.0, size=size)  # U along y
    k = 0.05  # 1/Å, pixel 1 Å
    idx = int(round(k * size))
    along_y = float(c[idx, 0])
    along_x = float(c[0, idx])
    kk = idx / size
    assert along_y == pytest.approx(math.sin(math.pi * lam * 20000 * kk**2), abs=1e-5)
    assert along_x == pytest.approx(math.sin(math.pi * lam * 10000 * kk**2), abs=1e-5)


def test_phase_shift_and_bfactor():
    c = ctf(0.0, phase=90.0)
    assert float(c[0, 0]) == pytest.approx(1.0, abs=1e-6)
    cb = ctf(0.0, phase=90.0, b=100.0, size=64)
    k = torch.fft.rfftfreq(64)[10]
    assert float(cb[0, 10]) == pytest.approx(math.exp(-100.0 * float(k) ** 2 / 4), rel=1e-5)


def test_agrees_with_torch_ctf_including_astigmatism():
    torch_ctf = pytest.importorskip("torch_ctf")
    size, psize = 96, 1.3
    df_u, df_v, ang = 18000.0, 16500.0, 33.0
    ours = ctf(df_u, df_v, ang=ang, cs=2.7, w=0.07, psize=psize, size=size, phase=20.0)
    theirs = torch_ctf.calculate_ctf_2d(
        defocus=(df_u + df_v) / 2e4, astigmatism=(df_u - df_v) / 2e4, astigmatism_angle=ang,
        voltage=300.0, spherical_aberration=2.7, amplitude_contrast=0.07, phase_shift=20.0,
        pixel_size=psize, image_shape=(size, size), rfft=True, fftshift=False)
    theirs = theirs.reshape(ours.shape)
    # torch-ctf's docstring says its angle is measured from y, but its implementation (like
    # RELION) measures it from x: the same angle must agree.
    assert float((ours - theirs).abs().max()) < 2e-4
