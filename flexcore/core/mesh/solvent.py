"""Solvent masks for mesh preparation: built from the consensus map, or read from a file.

CryoSPARC's recipe (reference/method.md §5.1): low-pass the map (10 Å), threshold it
(absolute level 0.5), dilate (2 Å), add a soft cosine edge (5 Å). Because absolute levels
depend on how a map is scaled, the threshold can also be a quantile of the low-passed map or
a number of standard deviations above its mean; the level actually used is returned.
All masks are ``[z, y, x]`` float32 volumes with the box centre at ``N // 2``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..errors import ConfigError, InputFileError
from ..fourier import lowpass_volume
from ..io.mrc import read_mask
from ..masks import threshold_from_quantile, threshold_from_sigma, threshold_mask

THRESHOLD_MODES = ("absolute", "quantile", "sigma")


@dataclasses.dataclass
class SolventMask:
    """A hard (binary) and a soft mask, and how they were made.

    ``hard`` and ``soft`` are ``(N, N, N)`` float32; ``level`` is the absolute density
    threshold applied to the low-passed map (``None`` for a mask read from a file);
    ``source`` says where the mask came from.
    """

    hard: np.ndarray
    soft: np.ndarray
    level: float | None
    source: str


def padded_support(soft: np.ndarray) -> np.ndarray:
    """The hard mask: every voxel the soft mask touches (CryoSPARC's ``mask_soft`` lies
    "within" ``mask``), so density in the soft pad is part of the model and can move."""
    return (np.asarray(soft) > 1e-6).astype(np.float32)


def lowpassed(volume: np.ndarray, pixel_size_A: float, lowpass_A: float | None) -> np.ndarray:
    """``volume`` low-passed to ``lowpass_A`` Å (unchanged when ``None`` or 0), float32."""
    vol = np.asarray(volume, dtype=np.float32)
    if not lowpass_A:
        return vol
    return lowpass_volume(torch.from_numpy(vol), lowpass_A, pixel_size_A).numpy()


def threshold_level(smoothed: np.ndarray, threshold: float, threshold_mode: str) -> float:
    """Absolute density level for ``threshold`` read in ``threshold_mode``.

    ``absolute``: the level itself; ``quantile``: the level below which that fraction
    (0 < q < 1) of the (low-passed) map's voxels lie; ``sigma``: ``mean + threshold · std``.
    """
    if threshold_mode == "absolute":
        return float(threshold)
    if threshold_mode == "quantile":
        if not 0.0 < threshold < 1.0:
            raise ConfigError(f"threshold must lie in (0, 1) with threshold_mode='quantile', "
                              f"got {threshold}")
        return threshold_from_quantile(smoothed, threshold)
    if threshold_mode == "sigma":
        return threshold_from_sigma(smoothed, threshold)
    raise ConfigError(f"threshold_mode must be one of {', '.join(THRESHOLD_MODES)}, "
                      f"got {threshold_mode!r}")


def _check_lengths(pixel_size_A: float, **lengths_A: float | None) -> None:
    for name, value in lengths_A.items():
        if value is not None and value < 0:
            raise ConfigError(f"{name} must be >= 0 Å, got {value}")
    if not pixel_size_A > 0:
        raise ConfigError(f"the pixel size must be positive, got {pixel_size_A}")


def mask_from_map(volume: np.ndarray, pixel_size_A: float, *, lowpass_A: float = 10.0,
                  threshold: float = 0.5, threshold_mode: str = "absolute",
                  dilate_A: float = 2.0, pad_A: float = 5.0) -> SolventMask:
    """Solvent mask from a consensus map: low-pass, threshold, dilate, soft pad.

    Parameters
    ----------
    volume : ``(N, N, N)`` ``[z, y, x]`` consensus map.
    pixel_size_A : voxel size in Å.
    lowpass_A, dilate_A, pad_A : filter resolution, dilation and soft-edge width in Å.
    threshold, threshold_mode : see :func:`threshold_level`.

    Raises ``ConfigError`` naming ``threshold`` when no voxel exceeds the level.
    """
    _check_lengths(pixel_size_A, lowpass_A=lowpass_A, dilate_A=dilate_A, pad_A=pad_A)
    smooth = lowpassed(volume, pixel_size_A, lowpass_A)
    level = threshold_level(smooth, threshold, threshold_mode)
    if not (smooth > level).any():
        raise ConfigError(
            f"the solvent mask is empty: no voxel of the {lowpass_A:g} Å low-passed map exceeds "
            f"threshold {threshold:g} ({threshold_mode}, level {level:.4g}); map range "
            f"{smooth.min():.4g} … {smooth.max():.4g}. Lower the threshold or use "
            f"threshold_mode='quantile'/'sigma'.")
    hard, soft = threshold_mask(smooth, level, pixel_size_A, lowpass_A=None, dilate_A=dilate_A,
                                soft_edge_A=pad_A)
    return SolventMask(hard=padded_support(soft), soft=np.maximum(soft, hard), level=level,
                       source=f"map low-passed to {lowpass_A:g} Å, threshold {threshold:g} "
                              f"({threshold_mode}) = level {level:.6g}")


def mask_from_file(path, box: int, pixel_size_A: float, *, dilate_A: float = 2.0,
                   pad_A: float = 5.0) -> SolventMask:
    """Read a user's mask (resampled when it spans the map's extent at another box, e.g. the
    full-resolution box), check it against the map (box, pixel size, values in [0, 1]),
    binarise it at 0.5, dilate by ``dilate_A`` and soft-pad by ``pad_A`` (as for a mask made
    from the map; pass 0 to keep the mask as it is).

    Raises ``InputFileError`` naming ``path`` for a wrong box or pixel size, values outside
    [0, 1] or an empty mask.
    """
    _check_lengths(pixel_size_A, dilate_A=dilate_A, pad_A=pad_A)
    given = read_mask(path, box, pixel_size_A, resample=True)
    if not (given > 0.5).any():
        raise InputFileError(path, f"mask is empty (no voxel above 0.5; max {given.max():.3g})")
    hard, soft = threshold_mask(given, 0.5, pixel_size_A, lowpass_A=None, dilate_A=dilate_A,
                                soft_edge_A=pad_A)
    return SolventMask(hard=padded_support(soft), soft=np.maximum(soft, hard), level=None,
                       source=f"file {path} (binarised at 0.5, dilated {dilate_A:g} Å, "
                              f"padded {pad_A:g} Å)")
