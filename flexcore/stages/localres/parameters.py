"""The ``localres`` parameters the step refuses, checked without torch so the workflow runs
the same checks on its configuration before any job."""

from __future__ import annotations

import numpy as np

from ...core.errors import ConfigError


def check_parameters(window_px, stride, threshold, box: int | None = None, *,
                     region_quantile: float = 0.25, n_samples: int = 256) -> None:
    """Raise :class:`ConfigError` naming the first bad ``localres.*`` parameter
    (``stride`` may be None: chosen from the box later; ``box``, the half maps' box once
    known, bounds the window)."""
    if not 0.0 < region_quantile < 0.5:
        raise ConfigError(f"localres.region_quantile = {region_quantile!r}: must be in (0, 0.5)")
    if not (isinstance(n_samples, (int, np.integer)) and n_samples >= 1):
        raise ConfigError(f"localres.n_samples = {n_samples!r}: must be an integer ≥ 1")
    if not (isinstance(window_px, (int, np.integer)) and window_px >= 8 and window_px % 2 == 0):
        raise ConfigError(f"localres.window_px = {window_px!r}: must be an even integer ≥ 8")
    if box is not None and window_px > box // 2:
        raise ConfigError(f"localres.window_px = {window_px}: the window must fit in half the "
                          f"reconstruction's {box} px box (at most {box // 2 // 2 * 2} px)")
    if stride is not None and not (isinstance(stride, (int, np.integer)) and stride >= 1):
        raise ConfigError(f"localres.stride = {stride!r}: must be an integer ≥ 1")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"localres.threshold = {threshold!r}: must be in (0, 1)")
