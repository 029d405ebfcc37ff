"""Fourier shell correlation between two maps (optionally masked) and resolution read-outs."""

from __future__ import annotations

import numpy as np
import torch

from .fourier import as_tensor, rfft_radius_3d


def fsc_curve(map_a, map_b, mask=None) -> np.ndarray:
    """FSC per integer Fourier shell ``0 … N//2`` between two cubic maps.

    Parameters
    ----------
    map_a, map_b : ``(N, N, N)`` arrays or tensors.
    mask : optional ``(N, N, N)`` real-space mask multiplied into both maps first.

    Returns
    -------
    ``(N//2 + 1,)`` float64 array; shell ``s`` is frequency ``s / (N · pixel_size)``.
    """
    a = as_tensor(map_a, torch.float64).cpu()
    b = as_tensor(map_b, torch.float64).cpu()
    if a.shape != b.shape or a.ndim != 3 or len(set(a.shape)) != 1:
        raise ValueError(f"fsc_curve needs two cubic maps of one shape, got {a.shape}, {b.shape}")
    if mask is not None:
        m = as_tensor(mask, torch.float64).cpu()
        a, b = a * m, b * m
    n = a.shape[-1]
    fa = torch.fft.rfftn(a)
    fb = torch.fft.rfftn(b)
    shell = torch.round(rfft_radius_3d(n, dtype=torch.float64) * n).long().flatten()
    # rfft stores kx >= 0 only: count the kx > 0 half twice so shells match the full FFT.
    weight = torch.full((n, n, n // 2 + 1), 2.0, dtype=torch.float64)
    weight[..., 0] = 1.0
    if n % 2 == 0:
        weight[..., -1] = 1.0
    weight = weight.flatten()
    nshell = n // 2 + 1
    keep = shell < nshell
    shell, weight = shell[keep], weight[keep]
    fa, fb = fa.flatten()[keep], fb.flatten()[keep]
    num = torch.zeros(nshell, dtype=torch.float64).index_add_(0, shell, weight * (fa * fb.conj()).real)
    da = torch.zeros(nshell, dtype=torch.float64).index_add_(0, shell, weight * fa.abs() ** 2)
    db = torch.zeros(nshell, dtype=torch.float64).index_add_(0, shell, weight * fb.abs() ** 2)
    fsc = num / torch.sqrt(da * db).clamp_min(1e-30)
    return fsc.numpy()


def shell_frequencies(n: int, pixel_size_A: float) -> np.ndarray:
    """Spatial frequency (1/Å) of each shell returned by :func:`fsc_curve`."""
    return np.arange(n // 2 + 1) / (n * pixel_size_A)


def resolution_at(fsc: np.ndarray, threshold: float, pixel_size_A: float) -> float:
    """Resolution (Å) where the FSC first falls below ``threshold``, interpolated linearly.

    Returns the Nyquist resolution ``2 · pixel_size`` when it never falls below, and NaN
    (undetermined) when any shell's FSC is NaN or infinite: maps with NaN voxels have no
    resolution, and a number read off such a curve would look valid. Shell 0 (the mean) is
    ignored. :func:`format_resolution` writes the result for logs.
    """
    fsc = np.asarray(fsc, dtype=np.float64)
    if not np.isfinite(fsc[1:]).all():
        return float("nan")
    n = 2 * (len(fsc) - 1)
    freqs = shell_frequencies(n, pixel_size_A)
    for s in range(1, len(fsc)):
        if fsc[s] < threshold:
            f0, f1 = freqs[s - 1], freqs[s]
            c0, c1 = fsc[s - 1], fsc[s]
            f = f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0) if c0 != c1 else f1
            return float(1.0 / f) if f > 0 else float("inf")
    return 2.0 * pixel_size_A


def format_resolution(resolution_A: float) -> str:
    """``"8.00 Å"``, or ``"undetermined (FSC not finite)"`` for a NaN resolution."""
    if resolution_A is None or not np.isfinite(resolution_A):
        return "undetermined (FSC not finite)"
    return f"{resolution_A:.2f} Å"


def resolution_or_none(resolution_A: float) -> float | None:
    """The resolution for a JSON record: ``None`` (``null``) when undetermined."""
    return float(resolution_A) if resolution_A is not None and np.isfinite(resolution_A) else None


def mean_fsc(fsc: np.ndarray, up_to_shell: int) -> float:
    """Average FSC over shells ``1 … up_to_shell`` (a single number to compare maps)."""
    return float(np.mean(fsc[1:up_to_shell + 1]))


def fsc_auc(fsc: np.ndarray) -> float:
    """Area under an FSC curve against frequency in 1/pixel, as CryoBench scores maps.

    The curve of :func:`fsc_curve` (shells ``0 … N//2``) is integrated by the trapezoid rule
    over shells ``0 … N//2 − 1`` at frequencies ``s / N`` (CryoBench's ``pixres`` axis), with
    shell 0 counted as 1 as CryoBench does; a perfect map scores ``(N//2 − 1) / N`` (just
    under 0.5), one unrelated to the reference about 0. NaN when a shell is not finite.
    """
    fsc = np.asarray(fsc, dtype=np.float64)
    n = 2 * (len(fsc) - 1)
    values = fsc[: n // 2].copy()
    values[0] = 1.0
    if not np.isfinite(values).all():
        return float("nan")
    return float(((values[1:] + values[:-1]) / 2).sum() / n)  # trapezoid rule, step 1/N
