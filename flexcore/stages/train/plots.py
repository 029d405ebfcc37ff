"""Training plots: loss curves, latent distributions, example images vs model."""

from __future__ import annotations

import numpy as np

from ...core.utils.figures import new_figure, save_png


def _save(fig, path) -> None:
    save_png(fig, path, dpi=110, bbox_inches="tight")


def per_coefficient(history: list[dict], key: str) -> np.ndarray:
    """``history[i][key]`` (an NLL per particle) divided by the number of Fourier coefficients
    in that epoch's band, ``NaN`` where a record does not say how many."""
    return np.array([h[key] / h["band_coefficients"] if h.get("band_coefficients") else np.nan
                     for h in history], dtype=np.float64)


def plot_losses(history: list[dict], path) -> None:
    """Left: NLL per Fourier coefficient in the band (training, and validation with the
    learned flow and rigid) — the band grows with the epoch, so the NLL per particle grows
    with it; per coefficient it falls towards ½, the value of pure noise. Right: validation
    rigid − flow NLL per particle (what the motion explains)."""
    ep = [h["epoch"] for h in history]
    fig = new_figure((10, 3.6))
    axes = fig.subplots(1, 2)
    axes[0].plot(ep, per_coefficient(history, "train_nll"), "o-", label="train (full model)")
    if "val_nll_flow" in history[0]:
        axes[0].plot(ep, per_coefficient(history, "val_nll_flow"), "^-", label="validation, flow")
        axes[0].plot(ep, per_coefficient(history, "val_nll_rigid"), "s--",
                     label="validation, rigid")
    axes[0].axhline(0.5, color="0.5", lw=0.8, ls=":", label="noise only (½)")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("NLL per Fourier coefficient in band")
    axes[0].set_title("loss per in-band coefficient (the band grows with epoch)", fontsize=9)
    axes[0].legend(fontsize=8)
    if "val_nll_flow" in history[0]:
        gain = [h["val_nll_rigid"] - h["val_nll_flow"] for h in history]
        axes[1].bar(ep, gain, alpha=0.5, color="green")
        axes[1].axhline(0.0, color="0.3", lw=0.8)
        axes[1].set_title("held-out particles: rigid − flow NLL (does the model use "
                          "flexibility?)", fontsize=9)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("NLL per particle, rigid − flow")
    _save(fig, path)


def plot_latents(z: np.ndarray, path, title: str, limit: float = 1.5,
                 color: np.ndarray | None = None) -> None:
    """Latent distribution: histogram per dimension, and scatter of pairs for K ≥ 2."""
    k = z.shape[1]
    pairs = min(k - 1, 3)
    fig = new_figure((3.2 * (k + pairs), 3.0))
    axes = fig.subplots(1, k + pairs, squeeze=False)[0]
    for d in range(k):
        axes[d].hist(z[:, d], bins=60, range=(-limit, limit), color="C0")
        axes[d].set_xlabel(f"z{d + 1}")
    for p in range(pairs):
        ax = axes[k + p]
        sc = ax.scatter(z[:, p], z[:, p + 1], s=2, alpha=0.4,
                        c=color if color is not None else "C0", cmap="viridis")
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_xlabel(f"z{p + 1}")
        ax.set_ylabel(f"z{p + 2}")
        if color is not None and p == 0:
            fig.colorbar(sc, ax=ax, label="colour")
    fig.suptitle(title)
    _save(fig, path)


def plot_examples(observed: np.ndarray, model_flex: np.ndarray, model_rigid: np.ndarray, path,
                  title: str) -> None:
    """Rows of (observed low-passed, model with flow, rigid model) for a few particles."""
    n = observed.shape[0]
    fig = new_figure((6.6, 2.2 * n))
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        for j, (img, name) in enumerate(((observed[i], "particle (band-limited)"),
                                         (model_flex[i], "model with flow"),
                                         (model_rigid[i], "rigid model"))):
            axes[i, j].imshow(img, cmap="gray", origin="lower")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(name, fontsize=9)
    fig.suptitle(title)
    _save(fig, path)
