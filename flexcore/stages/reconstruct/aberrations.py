"""Higher-order CTF aberrations of an optics group: beam tilt and odd/even Zernike terms.

Follows RELION 3.1+ (``src/jaz/math/Zernike.cpp``, ``src/jaz/single_particle/obs_model.cpp``
``ObservationModel::getPhaseCorrection``/``getGammaOffset``, and
``src/jaz/single_particle/ctf/tilt_helper.cpp`` ``TiltHelper::insertTilt``):

* Zernike polynomials are **not normalised**: ``Z_n^m(ρ, φ) = R_n^|m|(ρ) cos(mφ)`` for
  ``m ≥ 0`` and ``R_n^|m|(ρ) sin(|m|φ)`` for ``m < 0``, with
  ``R_n^m(ρ) = Σ_k (−1)^k (n−k)! / (k! ((n+m)/2−k)! ((n−m)/2−k)!) ρ^(n−2k)``, evaluated at the
  Cartesian spatial frequency ``(kx, ky)`` in 1/Å (``ρ = |k|``, ``φ = atan2(ky, kx)``; the
  magnification matrix is taken as identity).
* ``rlnOddZernike`` index ``i`` → ``(m, n)``: ``k = ⌊(√(1+4i) − 1)/2⌋``, ``n = 2k+1``,
  ``m = 2(i − k² − k) − n`` — order ``(−1,1), (1,1), (−3,3), (−1,3), (1,3), (3,3), …``.
* ``rlnEvenZernike`` index ``i`` → ``(m, n)``: ``k = ⌊√i⌋``, ``n = 2k``, ``m = 2(i − k² − k)``
  — order ``(0,0), (−2,2), (0,2), (2,2), (−4,4), …``.
* Beam tilt ``(tx, ty)`` in mrad is folded into the odd coefficients
  (``insertTilt``): with ``s = π · 20000 · Cs[mm] · λ[Å]²``, ``Z3x = −s·tx/3``,
  ``Z3y = −s·ty/3``; ``c[1] += 2·Z3x``, ``c[0] += 2·Z3y``, ``c[4] += Z3x``, ``c[3] += Z3y``.
  The resulting odd phase is ``−2π Cs λ² |k|² (k·τ)`` (Cs in Å, τ in rad).
* The odd phase ``φ_odd = Σ c_i Z_i`` multiplies the *predicted* spectrum by
  ``exp(+i φ_odd)`` (RELION modulates predictions, demodulates observations with the
  conjugate); the even phase ``φ_even`` is added to the CTF's phase ``χ`` (RELION's
  ``gamma``), i.e. ``CTF = −sin(χ + φ_even)``.

All grids are the unshifted ``rfft2`` grid ``(D, D//2+1)`` of ``[y, x]`` images.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...core.ctf import electron_wavelength_A
from ...core.fourier import rfft_freqs_2d


def odd_index_to_mn(i: int) -> tuple[int, int]:
    """``(m, n)`` of RELION's ``i``-th odd Zernike coefficient (``Zernike::oddIndexToMN``)."""
    k = int((math.sqrt(1 + 4 * i) - 1.0) / 2.0)
    n = 2 * k + 1
    return 2 * (i - k * k - k) - n, n


def even_index_to_mn(i: int) -> tuple[int, int]:
    """``(m, n)`` of RELION's ``i``-th even Zernike coefficient (``Zernike::evenIndexToMN``)."""
    k = int(math.sqrt(i))
    return 2 * (i - k * k - k), 2 * k


def zernike_radial(m: int, n: int, rho: torch.Tensor) -> torch.Tensor:
    """Radial polynomial ``R_n^m(ρ)`` (``m ≥ 0``; zero when ``n − m`` is odd)."""
    if m > n or m < 0:
        raise ValueError(f"Zernike R needs 0 ≤ m ≤ n, got m={m}, n={n}")
    out = torch.zeros_like(rho)
    if (n - m) % 2:
        return out
    fac = math.factorial
    for k in range((n - m) // 2 + 1):
        c = (-1) ** k * fac(n - k) / (fac(k) * fac((n + m) // 2 - k) * fac((n - m) // 2 - k))
        out = out + c * rho ** (n - 2 * k)
    return out


def zernike_cartesian(m: int, n: int, kx: torch.Tensor, ky: torch.Tensor) -> torch.Tensor:
    """RELION's un-normalised ``Zernike::Z_cart(m, n, x, y)`` at ``(kx, ky)``."""
    rho = torch.sqrt(kx**2 + ky**2)
    phi = torch.atan2(ky, kx)  # atan2(0, 0) = 0, as RELION's special case
    if m >= 0:
        return zernike_radial(m, n, rho) * torch.cos(m * phi)
    return zernike_radial(-m, n, rho) * torch.sin(-m * phi)


def odd_coefficients_with_tilt(odd, tilt_x_mrad: float, tilt_y_mrad: float,
                               spherical_aberration_mm: float, voltage_kv: float) -> list[float]:
    """Odd Zernike coefficients with the beam tilt folded in (``TiltHelper::insertTilt``)."""
    c = [float(v) for v in odd]
    if not (tilt_x_mrad or tilt_y_mrad):
        return c
    if len(c) < 6:
        c += [0.0] * (6 - len(c))
    lam = float(electron_wavelength_A(voltage_kv))
    scale = spherical_aberration_mm * 20000.0 * lam * lam * math.pi
    z3x = -scale * tilt_x_mrad / 3.0
    z3y = -scale * tilt_y_mrad / 3.0
    c[1] += 2.0 * z3x
    c[0] += 2.0 * z3y
    c[4] += z3x
    c[3] += z3y
    return c


def zernike_phase_2d(coefficients, index_to_mn, image_size: int, pixel_size_A: float,
                     device=None) -> torch.Tensor:
    """``Σ_i c_i Z_i(kx, ky)`` (radians) on the rfft2 grid, ``(D, D//2+1)`` float32."""
    ky, kx = rfft_freqs_2d(image_size, device=device, dtype=torch.float64)
    kx, ky = kx / pixel_size_A, ky / pixel_size_A
    phase = torch.zeros_like(kx)
    for i, c in enumerate(coefficients):
        if c:
            m, n = index_to_mn(i)
            phase = phase + float(c) * zernike_cartesian(m, n, kx, ky)
    return phase.to(torch.float32)


class OpticsAberrations:
    """Per-optics-group aberration phases at one image size, looked up per particle.

    Parameters
    ----------
    optics : list of :class:`~flexcore.core.io.OpticsGroup` (beam tilt in mrad, RELION Zernike
        coefficients, Cs in mm, voltage in kV).
    image_size, pixel_size_A : the grid the phases are evaluated on (frequencies in 1/Å, so
        a cropped box only changes the sampling).
    """

    def __init__(self, optics, image_size: int, pixel_size_A: float, device=None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        odd, even = [], []
        for g in optics:
            c_odd = odd_coefficients_with_tilt(g.odd_zernike, g.beam_tilt_x_mrad,
                                               g.beam_tilt_y_mrad, g.spherical_aberration_mm,
                                               g.voltage_kv)
            odd.append(zernike_phase_2d(c_odd, odd_index_to_mn, image_size, pixel_size_A,
                                        self.device))
            even.append(zernike_phase_2d(g.even_zernike, even_index_to_mn, image_size,
                                         pixel_size_A, self.device))
        self.odd = torch.stack(odd)  # (G, D, D//2+1)
        self.even = torch.stack(even)
        self.has_odd = bool(torch.any(self.odd != 0))
        self.has_even = bool(torch.any(self.even != 0))

    @property
    def any(self) -> bool:
        return self.has_odd or self.has_even

    def summary(self, optics) -> list[dict]:
        """What each optics group carries (for the log and ``recon.json``)."""
        return [{"group": g.name, "beam_tilt_mrad": [g.beam_tilt_x_mrad, g.beam_tilt_y_mrad],
                 "odd_zernike": list(g.odd_zernike), "even_zernike": list(g.even_zernike)}
                for g in optics]

    def even_phase(self, groups: np.ndarray) -> torch.Tensor | None:
        """``(B, D, D//2+1)`` even phases (radians, added to χ) or ``None`` when all zero."""
        if not self.has_even:
            return None
        return self.even[torch.as_tensor(np.asarray(groups), device=self.device, dtype=torch.long)]

    def odd_factor(self, groups: np.ndarray) -> torch.Tensor | None:
        """``(B, D, D//2+1)`` complex factors ``exp(i φ_odd)`` or ``None`` when all zero."""
        if not self.has_odd:
            return None
        ph = self.odd[torch.as_tensor(np.asarray(groups), device=self.device, dtype=torch.long)]
        return torch.polar(torch.ones_like(ph), ph)
