"""Image formation and the data term: FFT of the projection, splat correction, CTF,
shift phase, and a Gaussian likelihood band-limited to ``k_max``.

Spectra live on the unshifted ``rfft2`` grid. The bilinear splat blurs the projection by a
triangle kernel; dividing by its response ``sinc²(kx)·sinc²(ky)`` (gridding correction)
makes the model match a continuous projection.
"""

from __future__ import annotations

import torch

from ..fourier import bilinear_kernel_response_2d, rfft_freqs_2d, shift_phase_2d


class ImageFormation:
    """Precomputed grids for one image size and pixel size.

    Parameters
    ----------
    box : image size ``D`` (pixels).
    pixel_size_A : pixel size (Å) of these images.
    noise_power : optional per-shell noise power ``(D//2 + 1,)`` in units of the white
        real-space variance (``1`` everywhere = white); whitens the data term per shell.
    """

    def __init__(self, box: int, pixel_size_A: float, device=None, noise_power=None,
                 splat_correction: bool = True):
        self.box = box
        self.pixel_size_A = pixel_size_A
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        ky, kx = rfft_freqs_2d(box, device=self.device)
        self.radius = torch.sqrt(kx**2 + ky**2)  # cycles / pixel
        self.shell = torch.round(self.radius * box).long()
        # Hermitian half-plane: columns kx > 0 (except Nyquist) stand for two coefficients.
        hw = torch.full_like(self.radius, 2.0)
        hw[:, 0] = 1.0
        if box % 2 == 0:
            hw[:, -1] = 1.0
        self.half_weight = hw
        if splat_correction:
            self.correction = 1.0 / bilinear_kernel_response_2d(box, device=self.device).clamp_min(0.2)
        else:
            self.correction = torch.ones_like(self.radius)
        self.inv_noise = torch.ones_like(self.radius)
        if noise_power is not None:
            p = torch.as_tensor(noise_power, dtype=torch.float32, device=self.device)
            self.inv_noise = 1.0 / p[self.shell.clamp(max=len(p) - 1)].clamp_min(1e-6)

    def band(self, k_max: float) -> torch.Tensor:
        """Weights of the coefficients with ``|k| <= k_max`` (cycles/pixel): half-plane
        multiplicity × noise whitening, zero elsewhere. ``(D, D//2+1)``."""
        return (self.radius <= k_max).to(torch.float32) * self.half_weight * self.inv_noise

    def spectra(self, projections: torch.Tensor, ctf: torch.Tensor,
                shifts_px: torch.Tensor) -> torch.Tensor:
        """Model spectra ``(B, D, D//2+1)``: ``FFT(proj) · correction · CTF`` translated by
        ``-shift`` (RELION origins in pixels; the observation is the projection moved by
        ``-origin``)."""
        return torch.fft.rfft2(projections) * self.filters(ctf, shifts_px)

    def filters(self, ctf: torch.Tensor, shifts_px: torch.Tensor) -> torch.Tensor:
        """Per-image factors ``correction · CTF · shift phase`` ``(B, D, D//2+1)``: what
        :meth:`spectra` multiplies the projection's FFT by, for reuse across the latent
        candidates of one particle."""
        return (self.correction * ctf) * shift_phase_2d(-shifts_px, self.box, self.device)

    def observed(self, images: torch.Tensor) -> torch.Tensor:
        """Spectra of observed images ``(B, D, D//2+1)``."""
        return torch.fft.rfft2(images.to(torch.float32))

    def nll(self, model: torch.Tensor, observed: torch.Tensor, band: torch.Tensor,
            noise_var: float) -> torch.Tensor:
        """Gaussian negative log-likelihood per image ``(B,)`` up to a constant:
        ``½ Σ_k w_k |F_obs − F_model|² / (D² σ²)`` with ``σ²`` the real-space pixel noise
        variance (so each whitened coefficient contributes ~1 at the truth)."""
        r = observed - model
        e = (r.real**2 + r.imag**2) * band
        return 0.5 * e.sum(dim=(-2, -1)) / (self.box**2 * noise_var)
