"""Rigid reconstruction by Wiener-filtered Fourier insertion (consensus maps).

Each image is zero-padded, Fourier transformed, shifted into register (``+origin``, a phase
ramp on the padded transform), multiplied by its CTF and inserted as a central slice (trilinear gridding,
:class:`~flexcore.core.gridding.CentralSliceInserter`) next to its squared CTF. The map is
``V̂ = Σ CTF·Î / (Σ CTF² + 1/τ(k))`` where ``τ(k)`` is the spectral signal-to-noise ratio
estimated from the half-map FSC (``SSNR = 2·FSC / (1 − FSC)`` for the full set), as RELION
does; halves are reconstructed independently so their FSC is gold-standard.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .ctf import calculate_ctf_2d
from .errors import ConfigError
from .fourier import rfft_radius_3d, shift_phase_2d
from .fsc import fsc_curve
from .gridding import CentralSliceInserter
from .half_sets import assign_half_sets, image_groups
from .utils.logging import get_logger

log = get_logger("flexcore.recon.rigid")


def sinc2_correction(size: int, device=None) -> torch.Tensor:
    """``(P, P, P)`` real-space division factor of trilinear gridding on a box ``P``: the
    product over axes of ``sinc²(r / P)``, ``r`` the centred pixel offset."""
    s = torch.sinc(torch.fft.fftshift(torch.fft.fftfreq(size, device=device))) ** 2
    return s[:, None, None] * s[None, :, None] * s[None, None, :]


class FourierAccumulator:
    """Running sums ``Σ CTF·Î`` and ``Σ CTF²`` on a padded fftshifted-rfft 3-D grid.

    ``sums`` is float32 ``(3, P, P, P//2+1)``: real and imaginary parts of ``Σ CTF·Î`` and
    ``Σ CTF²`` (:mod:`flexcore.core.gridding` conventions), the array that ranks add up;
    ``numerator`` (complex) and ``denominator`` read it.
    """

    def __init__(self, box: int, pixel_size_A: float, pad: float = 2.0, device="cpu"):
        self.box = box
        self.pixel_size_A = pixel_size_A
        self.padded = int(round(box * pad))
        self.padded += (self.padded - box) % 2  # symmetric padding
        self.device = torch.device(device)
        p = self.padded
        self.sums = torch.zeros((3, p, p, p // 2 + 1), dtype=torch.float32, device=self.device)
        self.inserter = CentralSliceInserter(p, self.device)
        self.count = 0

    @property
    def numerator(self) -> torch.Tensor:
        """``Σ CTF·Î``, complex ``(P, P, P//2+1)`` (a copy)."""
        return torch.complex(self.sums[0], self.sums[1])

    @property
    def denominator(self) -> torch.Tensor:
        """``Σ CTF²``, ``(P, P, P//2+1)`` (a view of ``sums``)."""
        return self.sums[2]

    def add(self, images: torch.Tensor, rotations: torch.Tensor, shifts_A: torch.Tensor,
            ctf_params: dict) -> None:
        """Insert a batch.

        Parameters
        ----------
        images : ``(B, D, D)`` particle images.
        rotations : ``(B, 3, 3)`` RELION matrices ``A``.
        shifts_A : ``(B, 2)`` RELION origins in Å.
        ctf_params : keyword arguments of :func:`~flexcore.core.ctf.calculate_ctf_2d` except the
            pixel size and image size, as ``(B,)`` tensors.
        """
        dev = self.device
        images = images.to(dev, torch.float32)
        p = (self.padded - self.box) // 2
        padded = F.pad(images, [p, p, p, p])
        # the shift into register is a phase ramp on the padded transform: content moves
        # into the padding instead of wrapping round the particle box
        ft = torch.fft.rfft2(torch.fft.ifftshift(padded, dim=(-2, -1)))
        ft = ft * shift_phase_2d(shifts_A.to(dev) / self.pixel_size_A, self.padded, device=dev)
        ctf = calculate_ctf_2d(pixel_size_A=self.pixel_size_A, image_size=self.padded,
                               **{k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in ctf_params.items()})
        ft = torch.fft.fftshift(ft, dim=-2)
        ctf = torch.fft.fftshift(ctf, dim=-2)
        # a slice point f lands at M f in the volume, and a RELION projection samples the
        # volume along A^T (ref = A^T p), so M = A^T.
        self.inserter.insert(self.sums, ft * ctf, ctf * ctf,
                             rotations.to(dev, torch.float32).transpose(-1, -2))
        self.count += images.shape[0]

    def merge(self, other: FourierAccumulator) -> FourierAccumulator:
        out = FourierAccumulator(self.box, self.pixel_size_A, self.padded / self.box, self.device)
        out.sums = self.sums + other.sums
        out.count = self.count + other.count
        return out

    def solve(self, ssnr: np.ndarray | None = None, eps: float = 1e-3) -> torch.Tensor:
        """The map ``(D, D, D)`` from the sums.

        ``ssnr`` (per shell of the unpadded box, length ``D//2 + 1``) sets the Wiener term
        ``mean_shell(Σ CTF²) / SSNR``; without it a small constant ``eps · mean(Σ CTF²)``
        regularises empty voxels only.
        """
        p = self.padded
        den = self.denominator
        if ssnr is None:
            reg = eps * den.mean()
        else:
            # padded shell index of every voxel of the fftshifted rfft grid
            k = torch.fft.fftshift(rfft_radius_3d(p, device=den.device), dim=(0, 1))
            shell = torch.round(k * p).long().flatten()
            n_shell = int(shell.max()) + 1
            sums = torch.zeros(n_shell, device=den.device).index_add_(0, shell, den.flatten())
            counts = torch.bincount(shell, minlength=n_shell).to(sums.dtype)
            mean_den = sums / counts.clamp_min(1)
            # SSNR is given per shell of the unpadded box: padded shell s sits at s·D/P there
            at = np.arange(n_shell) * self.box / p
            ss = np.interp(at, np.arange(len(ssnr)), np.asarray(ssnr, dtype=np.float64), right=0.0)
            tau_inv = mean_den / torch.as_tensor(ss, dtype=torch.float32, device=den.device).clamp_min(1e-3)
            reg = (tau_inv[shell] + 1e-6 * den.mean()).view(den.shape)
        vol_ft = self.numerator / (den + reg)
        vol_ft = torch.fft.ifftshift(vol_ft, dim=(0, 1))
        vol = torch.fft.irfftn(vol_ft, s=(p, p, p))
        vol = torch.fft.fftshift(vol, dim=(0, 1, 2))
        vol = vol / sinc2_correction(p, device=vol.device)
        lo = (p - self.box) // 2
        return vol[lo:lo + self.box, lo:lo + self.box, lo:lo + self.box].contiguous()


def ssnr_from_fsc(fsc: np.ndarray) -> np.ndarray:
    """Full-set spectral SNR from a half-map FSC: ``2 FSC / (1 - FSC)`` (clamped)."""
    f = np.clip(np.asarray(fsc, dtype=np.float64), 1e-4, 0.999)
    return 2.0 * f / (1.0 - f)


def reconstruct_halves(accumulators: tuple[FourierAccumulator, FourierAccumulator],
                       mask=None) -> dict:
    """Gold-standard reconstruction from two independent accumulators.

    Returns ``{"half_a", "half_b", "full"}`` maps (numpy, ``[z, y, x]``) and ``"fsc"`` (the
    half-map FSC per shell, computed with ``mask`` when given). Half maps use the half-set
    SSNR ``FSC / (1 − FSC)``; the full map the full-set SSNR.
    """
    acc_a, acc_b = accumulators
    for acc, name in ((acc_a, "A"), (acc_b, "B")):
        if acc.count == 0:
            raise ConfigError(f"half set {name} has no particles: a gold-standard "
                              "reconstruction needs both halves")
    raw_a = acc_a.solve()
    raw_b = acc_b.solve()
    fsc = fsc_curve(raw_a, raw_b, mask=mask)
    f = np.clip(fsc, 1e-4, 0.999)
    half_ssnr = f / (1.0 - f)
    half_a = acc_a.solve(ssnr=half_ssnr)
    half_b = acc_b.solve(ssnr=half_ssnr)
    full = acc_a.merge(acc_b).solve(ssnr=ssnr_from_fsc(fsc))
    return {"half_a": half_a.cpu().numpy(), "half_b": half_b.cpu().numpy(),
            "full": full.cpu().numpy(), "fsc": fsc}


def reconstruct_particles(table, source=None, *, half=None, batch: int = 256, device="cpu",
                          mask=None, pad: float = 2.0, log_every: int = 20) -> dict:
    """Gold-standard rigid reconstruction of a :class:`~flexcore.core.io.ParticleTable`.

    Images are read lazily (``source``: an :class:`~flexcore.core.io.ImageSource`, by default
    one over the table). ``half`` ``(N,)`` 0/1 is each particle's half set; by default the
    table's, checked by :func:`~flexcore.core.half_sets.assign_half_sets` (a random split
    when incomplete or one-sided, copies of one image kept in one half set).
    Returns the dict of :func:`reconstruct_halves`.
    """
    from .io import ImageSource

    table.require_poses()
    source = source or ImageSource(table)
    box, psize = table.box, table.pixel_size_A
    if half is None:
        half, _ = assign_half_sets(table.half_set, image_groups(table, source), resplit=False,
                                   seed=0, where=table.source_path or "the particles")
    accs = (FourierAccumulator(box, psize, pad, device), FourierAccumulator(box, psize, pad, device))
    order = np.arange(len(table))
    for b, s in enumerate(range(0, len(order), batch)):
        idx = order[s:s + batch]
        images = torch.from_numpy(source.read(idx))
        og = table.optics_group[idx]
        params = {
            "defocus_u_A": torch.tensor(table.defocus_u_A[idx], dtype=torch.float32),
            "defocus_v_A": torch.tensor(table.defocus_v_A[idx], dtype=torch.float32),
            "defocus_angle_deg": torch.tensor(table.defocus_angle_deg[idx], dtype=torch.float32),
            "voltage_kv": torch.tensor([table.optics[g].voltage_kv for g in og]),
            "spherical_aberration_mm": torch.tensor([table.optics[g].spherical_aberration_mm
                                                     for g in og]),
            "amplitude_contrast": torch.tensor([table.optics[g].amplitude_contrast for g in og]),
            "phase_shift_deg": torch.tensor(table.phase_shift_deg[idx], dtype=torch.float32),
            "bfactor_A2": torch.tensor(table.bfactor_A2[idx], dtype=torch.float32),
            "scale": torch.tensor(table.ctf_scale[idx], dtype=torch.float32),
        }
        rot = torch.tensor(table.rotations[idx], dtype=torch.float32)
        shifts = torch.tensor(table.shifts_A[idx], dtype=torch.float32)
        for h in (0, 1):
            sel = torch.from_numpy(half[idx] == h)
            if sel.any():
                accs[h].add(images[sel], rot[sel], shifts[sel], {k: v[sel] for k, v in params.items()})
        if (b + 1) % log_every == 0:
            log.info("back-projected %d/%d particles", idx[-1] + 1, len(order))
    return reconstruct_halves(accs, mask=mask)
