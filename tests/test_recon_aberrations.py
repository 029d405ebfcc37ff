"""Optics-group aberrations (beam tilt, odd/even Zernike) against RELION's definitions.

Golden values: the beam-tilt phase ``−2π Cs λ² |k|² (k·τ)`` (RELION ``TiltHelper::insertTilt``
folded into odd Zernike terms) evaluated by hand with RELION's wavelength formula
``λ = 12.2643247 / sqrt(V (1 + 0.978466e-6 V))`` for 300 kV, Cs 2.7 mm,
``τ = (1.0, −0.5)`` mrad.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flexcore.core.ctf import calculate_ctf_2d
from flexcore.core.io import OpticsGroup
from flexcore.core.masks import sphere_mask
from flexcore.core.mesh import regular_tet_mesh
from flexcore.core.rotations import random_rotations
from flexcore.stages.reconstruct.aberrations import (
    OpticsAberrations,
    even_index_to_mn,
    odd_coefficients_with_tilt,
    odd_index_to_mn,
    zernike_cartesian,
)
from flexcore.stages.reconstruct.flex import FlexOperator
from flexcore.stages.reconstruct.particles import ReconParticles


def optics(**kw) -> OpticsGroup:
    base = dict(name="g1", pixel_size_A=1.0, image_size=64, voltage_kv=300.0,
                spherical_aberration_mm=2.7, amplitude_contrast=0.1)
    return OpticsGroup(**{**base, **kw})


def test_index_orderings_follow_relion():
    assert [odd_index_to_mn(i) for i in range(6)] == [(-1, 1), (1, 1), (-3, 3), (-1, 3), (1, 3),
                                                      (3, 3)]
    assert [even_index_to_mn(i) for i in range(9)] == [(0, 0), (-2, 2), (0, 2), (2, 2), (-4, 4),
                                                       (-2, 4), (0, 4), (2, 4), (4, 4)]


def test_zernike_polynomials_are_relions_unnormalised_ones():
    x = torch.tensor([0.3, -0.2, 0.0, 0.1], dtype=torch.float64)
    y = torch.tensor([0.1, 0.4, 0.0, -0.25], dtype=torch.float64)
    r2 = x**2 + y**2
    cases = {(-1, 1): y, (1, 1): x, (-2, 2): 2 * x * y, (2, 2): x**2 - y**2, (0, 2): 2 * r2 - 1,
             (1, 3): (3 * r2 - 2) * x, (-1, 3): (3 * r2 - 2) * y, (0, 4): 6 * r2**2 - 6 * r2 + 1,
             (3, 3): x**3 - 3 * x * y**2}
    for (m, n), expected in cases.items():
        assert torch.allclose(zernike_cartesian(m, n, x, y), expected, atol=1e-12), (m, n)


@pytest.mark.parametrize("k, expected", [
    ((8, 0), -0.12842805374035524),
    ((0, 16), 0.5137122149614209),
    ((10, -3), -0.3144229792256549),
])
def test_pure_beam_tilt_gives_relions_odd_phase(k, expected):
    """Phase at ``(kx, ky) = k / (64 · 1 Å)`` on the rfft grid (row ``ky mod 64``, column kx)."""
    abr = OpticsAberrations([optics(beam_tilt_x_mrad=1.0, beam_tilt_y_mrad=-0.5)], 64, 1.0)
    assert abr.has_odd and not abr.has_even
    kx, ky = k
    phase = float(abr.odd[0, ky % 64, kx])
    assert phase == pytest.approx(expected, rel=2e-5)  # flexcore's λ differs in the 6th digit
    factor = abr.odd_factor(np.array([0]))[0, ky % 64, kx]
    assert complex(factor) == pytest.approx(complex(math.cos(expected), math.sin(expected)),
                                            abs=1e-4)


def test_tilt_only_changes_the_odd_coefficients_relion_changes():
    c = odd_coefficients_with_tilt([], 1.0, -0.5, 2.7, 300.0)
    assert len(c) == 6 and c[2] == 0.0 and c[5] == 0.0
    assert c[1] == pytest.approx(2 * c[4]) and c[0] == pytest.approx(2 * c[3])
    assert odd_coefficients_with_tilt([0.1, 0.2], 0.0, 0.0, 2.7, 300.0) == [0.1, 0.2]


def test_even_defocus_term_equals_a_defocus_change():
    """Even term ``(m, n) = (0, 2)`` is ``c (2|k|² − 1)``: added to χ it is a defocus change
    ``Δf = −2c / (πλ)`` plus a phase shift of ``c`` radians."""
    c = 3.0
    abr = OpticsAberrations([optics(even_zernike=(0.0, 0.0, c))], 64, 1.0)
    assert abr.has_even and not abr.has_odd
    one = torch.ones(1, dtype=torch.float64)
    lam = 12.2643247 / math.sqrt(300e3 * (1 + 300e3 * 0.978466e-6))
    df = -2 * c / (math.pi * lam)
    with_even = calculate_ctf_2d(one * 1.5e4, one * 1.4e4, one * 30.0, 300.0, 2.7, 0.1, 1.0, 64,
                                 extra_phase=abr.even_phase(np.array([0])).double())
    shifted = calculate_ctf_2d(one * (1.5e4 + df), one * (1.4e4 + df), one * 30.0, 300.0, 2.7,
                               0.1, 1.0, 64, phase_shift_deg=math.degrees(c))
    assert torch.allclose(with_even, shifted, atol=2e-3)


def _tiny_operator(aberrations):
    n = 16
    hard = (sphere_mask(n, 5.0) > 0.5).astype(np.float32)
    mesh, _ = regular_tet_mesh(hard, hard, 4.0, 4)
    return FlexOperator(mesh, 4.0, 1.0, "cpu", aberrations=aberrations)


def _tiny_particles(b: int) -> ReconParticles:
    rng = np.random.default_rng(0)
    f = lambda v: torch.full((b,), float(v))  # noqa: E731
    ctf = {"defocus_u_A": f(1.5e4), "defocus_v_A": f(1.4e4), "defocus_angle_deg": f(20.0),
           "voltage_kv": f(300.0), "spherical_aberration_mm": f(2.7),
           "amplitude_contrast": f(0.1), "phase_shift_deg": f(0.0), "bfactor_A2": f(0.0),
           "scale": f(1.0)}
    return ReconParticles(rotations=torch.tensor(random_rotations(b, rng), dtype=torch.float32),
                          shifts_A=torch.tensor(rng.normal(0, 2, (b, 2)), dtype=torch.float32),
                          ctf=ctf, optics_group=np.zeros(b, np.int64),
                          half_set=np.zeros(b, np.int8), source_rows=np.arange(b), source=None)


def test_zero_coefficients_change_nothing():
    zero = OpticsAberrations([optics(odd_zernike=(0.0, 0.0), even_zernike=(0.0,) * 9)], 16, 4.0)
    assert not zero.any and zero.odd_factor(np.array([0])) is None
    plain, with_zero = _tiny_operator(None), _tiny_operator(zero)
    p = _tiny_particles(5)
    idx = np.arange(5)
    x = torch.randn(plain.n_voxels)
    a = plain.spectra(x, None, p.rotations, plain.ctf(p, idx), p.shifts_A / 4.0, None)
    b = with_zero.spectra(x, None, p.rotations, with_zero.ctf(p, idx), p.shifts_A / 4.0,
                          zero.odd_factor(np.zeros(5, np.int64)))
    assert torch.equal(a, b)


def test_beam_tilt_multiplies_the_model_spectrum_by_its_phase():
    tilt = OpticsAberrations([optics(beam_tilt_x_mrad=2.0, beam_tilt_y_mrad=1.0)], 16, 4.0)
    op = _tiny_operator(tilt)
    p = _tiny_particles(3)
    x = torch.randn(op.n_voxels)
    ctf = op.ctf(p, np.arange(3))
    plain = op.spectra(x, None, p.rotations, ctf, p.shifts_A / 4.0, None)
    tilted = op.spectra(x, None, p.rotations, ctf, p.shifts_A / 4.0,
                        tilt.odd_factor(np.zeros(3, np.int64)))
    assert torch.allclose(tilted, plain * torch.polar(torch.ones_like(tilt.odd[0]), tilt.odd[0]))
    assert torch.allclose(tilted.abs(), plain.abs(), rtol=1e-5, atol=1e-5)
