"""The 2-D contrast transfer function (RELION / CTFFIND4 definition), batched in torch.

``CTF(k) = -s · sin(χ(k))`` with

``χ = -π λ Δf(θ) |k|² + (π/2) Cs λ³ |k|⁴ - φ - atan(w / sqrt(1 - w²))``,

``Δf(θ) = (dfU + dfV)/2 + (dfU - dfV)/2 · cos(2 (θ - α))`` (positive = underfocus, ``α`` the
angle of the U axis from x), ``w`` the amplitude contrast, ``φ`` the phase shift and ``s`` the
scale factor; a B-factor multiplies by ``exp(-B |k|² / 4)``. This is RELION's ``CTF::getCTF``:
at ``k = 0`` the CTF equals ``+w``, so particles and maps share the same contrast.
"""

from __future__ import annotations

import math

import torch

from .fourier import rfft_freqs_2d


def electron_wavelength_A(voltage_kv: float | torch.Tensor) -> float | torch.Tensor:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV.

    ``λ = h / sqrt(2 m e V (1 + e V / (2 m c²)))``; 300 kV gives 0.019687 Å.
    """
    v = voltage_kv * 1e3
    if isinstance(v, torch.Tensor):
        return 12.264259661581491 / torch.sqrt(v * (1.0 + 0.9784755917869367e-6 * v))
    return 12.264259661581491 / math.sqrt(v * (1.0 + 0.9784755917869367e-6 * v))


def calculate_ctf_2d(
    defocus_u_A: torch.Tensor,
    defocus_v_A: torch.Tensor,
    defocus_angle_deg: torch.Tensor,
    voltage_kv: torch.Tensor | float,
    spherical_aberration_mm: torch.Tensor | float,
    amplitude_contrast: torch.Tensor | float,
    pixel_size_A: float,
    image_size: int,
    phase_shift_deg: torch.Tensor | float = 0.0,
    bfactor_A2: torch.Tensor | float = 0.0,
    scale: torch.Tensor | float = 1.0,
    extra_phase: torch.Tensor | None = None,
) -> torch.Tensor:
    """CTFs on the unshifted ``rfft2`` grid of ``image_size`` images, ``(B, D, D//2+1)``.

    Parameters
    ----------
    defocus_u_A, defocus_v_A, defocus_angle_deg : ``(B,)`` tensors (Å, Å, degrees from x).
    voltage_kv, spherical_aberration_mm, amplitude_contrast : scalars or ``(B,)`` tensors.
    pixel_size_A : pixel size of the images in Å.
    phase_shift_deg, bfactor_A2, scale : scalars or ``(B,)`` tensors.
    extra_phase : optional ``(B, D, D//2+1)`` phase (radians) added to ``χ`` — even
        aberrations (symmetric Zernike terms) go here.

    Returns
    -------
    ``(B, D, D//2+1)`` float tensor on ``defocus_u_A``'s device.
    """
    dev = defocus_u_A.device
    dtype = defocus_u_A.dtype if defocus_u_A.dtype.is_floating_point else torch.float32

    def col(v):
        t = torch.as_tensor(v, dtype=dtype, device=dev)
        return t.reshape(-1, 1, 1) if t.ndim else t

    ky, kx = rfft_freqs_2d(image_size, device=dev, dtype=dtype)
    kx = kx / pixel_size_A
    ky = ky / pixel_size_A
    k2 = kx**2 + ky**2
    theta = torch.atan2(ky, kx)
    dfu, dfv, ang = col(defocus_u_A), col(defocus_v_A), col(defocus_angle_deg)
    lam = electron_wavelength_A(col(voltage_kv))
    cs_A = col(spherical_aberration_mm) * 1e7
    w = col(amplitude_contrast)
    defocus = 0.5 * (dfu + dfv) + 0.5 * (dfu - dfv) * torch.cos(2.0 * (theta - torch.deg2rad(ang)))
    chi = (
        -math.pi * lam * defocus * k2
        + 0.5 * math.pi * cs_A * lam**3 * k2**2
        - torch.deg2rad(col(phase_shift_deg))
        - torch.atan(w / torch.sqrt(1.0 - w**2))
    )
    if extra_phase is not None:
        chi = chi + extra_phase
    ctf = -torch.sin(chi) * col(scale)
    b = col(bfactor_A2)
    if torch.any(b != 0):
        ctf = ctf * torch.exp(-b * k2 / 4.0)
    return ctf


def ctf_for_particles(table, indices, image_size: int, pixel_size_A: float,
                      device=None) -> torch.Tensor:
    """CTFs of particles ``indices`` of a :class:`~flexcore.core.io.particles.ParticleTable`.

    ``pixel_size_A`` and ``image_size`` describe the images the CTF is applied to (which
    may be Fourier-cropped from the originals; the CTF is a function of physical
    frequency, so it is simply evaluated on the coarser grid).
    """
    import numpy as np

    idx = np.asarray(indices)
    og = table.optics_group[idx]
    optics = table.optics

    def per_group(attr):
        return torch.as_tensor(np.array([getattr(optics[g], attr) for g in og]),
                               dtype=torch.float32, device=device)

    def per_particle(arr):
        return torch.as_tensor(np.asarray(arr)[idx], dtype=torch.float32, device=device)

    return calculate_ctf_2d(
        per_particle(table.defocus_u_A),
        per_particle(table.defocus_v_A),
        per_particle(table.defocus_angle_deg),
        per_group("voltage_kv"),
        per_group("spherical_aberration_mm"),
        per_group("amplitude_contrast"),
        pixel_size_A,
        image_size,
        phase_shift_deg=per_particle(table.phase_shift_deg),
        bfactor_A2=per_particle(table.bfactor_A2),
        scale=per_particle(table.ctf_scale),
    )
