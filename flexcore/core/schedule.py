"""Per-epoch schedules: resolution (``k_max``) and learning rates."""

from __future__ import annotations

from .train_config import TrainConfig


def k_max_for_epoch(cfg: TrainConfig, epoch: int, pixel_size_A: float) -> float:
    """Band limit (cycles per training-box pixel) at ``epoch``.

    Geometric ramp from ``max(res_start_frac · Nyquist, pixel/res_start_A)`` to
    ``res_end_frac · Nyquist`` over the first ``res_ramp_frac`` of the epochs, then held
    (also through extra epochs).
    """
    k_end = 0.5 * cfg.res_end_frac
    k_start = min(k_end, max(0.5 * cfg.res_start_frac, pixel_size_A / cfg.res_start_A))
    ramp = max(1, round(cfg.res_ramp_frac * cfg.epochs) - 1)
    t = min(1.0, epoch / ramp)
    return k_start * (k_end / k_start) ** t


def lr_for_epoch(start: float, end: float, epoch: int, n_epochs: int) -> float:
    """Geometric interpolation from ``start`` (epoch 0) to ``end`` (last regular epoch)."""
    if n_epochs <= 1:
        return end
    t = min(1.0, epoch / (n_epochs - 1))
    return start * (end / start) ** t


def working_box(train_box: int, k_max: float, enabled: bool = True, step: int = 8,
                minimum: int = 24) -> int:
    """Smallest box (multiple of ``step``) whose Nyquist covers ``k_max`` with 15 % margin;
    ``k_max`` in cycles per training-box pixel."""
    if not enabled:
        return train_box
    need = 2.0 * k_max * train_box * 1.15
    box = max(minimum, step * int(-(-need // step)))
    return min(train_box, box + (box % 2))
