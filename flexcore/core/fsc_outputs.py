"""Reconstruction outputs: FSC table and plot, L-BFGS log, B-factor sharpening.

FSC curves are per integer Fourier shell ``s`` of an ``N``-voxel box, frequency
``s / (N · pixel)`` in 1/Å. Sharpening follows the usual post-processing recipe: the map's
B-factor ``B`` (Å², positive = amplitudes decay as ``exp(−B s²/4)``) comes from a Guinier
fit of ``ln`` of the spherically averaged amplitude against ``s²`` between 10 Å and the
0.143 resolution (or is given), amplitudes are multiplied by ``exp(+B s²/4)`` (RELION's
``--adhoc_bfac −B``), weighted per shell by ``sqrt(2·FSC / (1 + FSC))`` (Rosenthal &
Henderson 2003, from the half-map FSC) and low-passed at the 0.143 resolution with a
raised-cosine edge.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .fourier import cosine_edge, rfft_radius_3d
from .fsc import format_resolution, shell_frequencies
from .utils.atomic import write_text_atomic
from .utils.figures import new_figure, save_png
from .utils.logging import get_logger

log = get_logger("flexcore.recon.outputs")


def write_fsc_table(path, curves: dict[str, np.ndarray], box: int, pixel_size_A: float) -> None:
    """TSV: ``shell``, ``frequency_1/A``, ``resolution_A`` and one FSC column per curve."""
    freqs = shell_frequencies(box, pixel_size_A)
    names = list(curves)
    lines = ["\t".join(["shell", "frequency_1/A", "resolution_A"] + [f"fsc_{n}" for n in names])]
    for s, f in enumerate(freqs):
        res = "inf" if f == 0 else f"{1.0 / f:.4f}"
        lines.append("\t".join([str(s), f"{f:.6f}", res] + [f"{curves[n][s]:.6f}" for n in names]))
    write_text_atomic(path, "\n".join(lines) + "\n")


def format_fsc_axes(ax, freqs: np.ndarray, ylabel: str = "FSC",
                    resolution_axis: bool = True) -> None:
    """Axes of an FSC plot: spatial frequency (1/Å) along x up to ``freqs[-1]`` (Nyquist),
    FSC from −0.1 to 1.05, a light grid and, with ``resolution_axis``, the resolution (Å)
    along the top."""
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.1, 1.05)
    ax.set_xlim(0, freqs[-1])
    if resolution_axis:
        sec = ax.secondary_xaxis("top", functions=(lambda f: f, lambda f: f))
        ticks = [t for t in ax.get_xticks() if 0 < t <= freqs[-1]]
        sec.set_xticks(ticks)
        sec.set_xticklabels([f"{1 / t:.1f}" for t in ticks])
        sec.set_xlabel("resolution (Å)")
    ax.grid(alpha=0.3)


def plot_fsc(path, curves: dict[str, np.ndarray], resolutions: dict[str, float], box: int,
             pixel_size_A: float, title: str) -> None:
    """FSC curves against frequency with the 0.143 line; the legend gives each resolution.
    Keys containing ``noflex`` are drawn in grey, ``masked`` curves solid, others dashed."""
    freqs = shell_frequencies(box, pixel_size_A)
    fig = new_figure((6.4, 4.2))
    ax = fig.subplots()
    for name, fsc in curves.items():
        colour = "0.45" if "noflex" in name else "tab:blue"
        style = "-" if "masked" in name else "--"
        ax.plot(freqs[1:], fsc[1:], style, color=colour,
                label=f"{name.replace('_', ' ')}: {format_resolution(resolutions[name])}")
    ax.axhline(0.143, color="tab:red", lw=0.8, ls=":")
    ax.text(freqs[1], 0.16, "0.143", color="tab:red", fontsize=8)
    format_fsc_axes(ax, freqs)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    save_png(fig, path, dpi=110, bbox_inches="tight")


def radial_amplitude(volume: np.ndarray) -> np.ndarray:
    """Spherically averaged Fourier amplitude per integer shell ``0 … N//2``."""
    v = torch.as_tensor(np.asarray(volume), dtype=torch.float64)
    n = v.shape[-1]
    f = torch.fft.rfftn(v).abs().flatten()
    shell = torch.round(rfft_radius_3d(n, dtype=torch.float64) * n).long().flatten()
    keep = shell <= n // 2
    sums = torch.zeros(n // 2 + 1, dtype=torch.float64).index_add_(0, shell[keep], f[keep])
    counts = torch.bincount(shell[keep], minlength=n // 2 + 1).clamp_min(1)
    return (sums / counts).numpy()


def guinier_bfactor(volume: np.ndarray, pixel_size_A: float, high_res_A: float,
                    low_res_A: float = 10.0) -> tuple[float, tuple[float, float], int]:
    """B-factor (Å²) from a straight-line fit of ``ln A(s)`` against ``s²`` for
    ``1/low_res_A ≤ s ≤ 1/high_res_A``: ``B = −4 · slope``.

    When fewer than 3 shells fall in the range, the low-resolution end is relaxed to 15 then
    20 Å. Returns ``(B, (low_res_A, high_res_A) used, n_shells)``; ``B = 0`` with
    ``n_shells < 3`` when no range has enough shells.
    """
    n = volume.shape[-1]
    amp = radial_amplitude(volume)
    s = shell_frequencies(n, pixel_size_A)
    for low in (low_res_A, 15.0, 20.0):
        sel = (s >= 1.0 / low) & (s <= 1.0 / high_res_A) & (amp > 0)
        if sel.sum() >= 3:
            slope = np.polyfit(s[sel] ** 2, np.log(amp[sel]), 1)[0]
            return float(-4.0 * slope), (low, high_res_A), int(sel.sum())
    return 0.0, (low_res_A, high_res_A), int(sel.sum())


def sharpen_map(volume: np.ndarray, pixel_size_A: float, fsc: np.ndarray, resolution_A: float,
                bfactor: float) -> np.ndarray:
    """``volume`` sharpened by ``exp(+B s²/4)``, FSC-weighted and low-passed at
    ``resolution_A`` (2-shell raised-cosine edge); ``fsc`` per shell of the same box."""
    v = torch.as_tensor(np.asarray(volume), dtype=torch.float64)
    n = v.shape[-1]
    k = rfft_radius_3d(n, dtype=torch.float64) * n  # shells
    s2 = (k / (n * pixel_size_A)) ** 2
    f = np.clip(np.asarray(fsc, dtype=np.float64), 0.0, 1.0)
    weight = np.sqrt(2.0 * f / (1.0 + f))
    weight[0] = 1.0
    w = torch.as_tensor(np.interp(k.numpy(), np.arange(len(weight)), weight, right=0.0))
    filt = torch.exp(bfactor * s2 / 4.0) * w * cosine_edge(k, n * pixel_size_A / resolution_A, 2.0)
    out = torch.fft.irfftn(torch.fft.rfftn(v) * filt, s=(n, n, n))
    return out.to(torch.float32).numpy()


def sharpen(volume: np.ndarray, pixel_size_A: float, fsc: np.ndarray, resolution_A: float,
            bfactor: float | None) -> tuple[np.ndarray, dict]:
    """Sharpened map and a record of how (``bfactor``, ``bfactor_source``, fit range)."""
    if bfactor is None:
        b, rng, n_sh = guinier_bfactor(volume, pixel_size_A, resolution_A)
        record = {"bfactor_A2": b, "bfactor_source": "guinier fit", "fit_range_A": list(rng),
                  "fit_shells": n_sh}
        if n_sh < 3:
            log.warning("sharpening: fewer than 3 Fourier shells between 20 Å and %.2f Å; no "
                        "B-factor applied", resolution_A)
            record["bfactor_source"] = "none (too few shells for a Guinier fit)"
        elif b < 0:
            log.warning("sharpening: the Guinier fit gives B = %.1f Å² (amplitudes rise with "
                        "frequency); no B-factor applied", b)
            record.update(bfactor_A2=0.0, bfactor_source=f"none (fit gave {b:.1f} Å²)")
        b = record["bfactor_A2"]
    else:
        b = float(bfactor)
        record = {"bfactor_A2": b, "bfactor_source": "given"}
    if not math.isfinite(resolution_A) or resolution_A <= 0:
        resolution_A = 2.0 * pixel_size_A
    record["lowpass_A"] = resolution_A
    log.info("sharpening: B = %.1f Å² (%s), FSC weighting, low-pass at %.2f Å", b,
             record["bfactor_source"], resolution_A)
    return sharpen_map(volume, pixel_size_A, fsc, resolution_A, b), record
