"""Training plots: loss curves, latent distributions, example images vs model."""

from __future__ import annotations

import numpy as np

from ..utils.figures import new_figure, save_png


def _save(fig, path) -> None:
    save_png(fig, path, dpi=110, bbox_inches="tight")


def plot_losses(history: list[dict], path) -> None:
    """Training NLL per epoch, and validation NLL with the learned flow vs rigid."""
    ep = [h["epoch"] for h in history]
    fig = new_figure((10, 3.6))
    axes = fig.subplots(1, 2)
    axes[0].plot(ep, [h["train_nll"] for h in history], "o-", label="train (full model)")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("NLL per particle")
    axes[0].set_title("training loss (band grows with epoch)")
    axes[0].legend()
    if "val_nll_flow" in history[0]:
        gain = [h["val_nll_rigid"] - h["val_nll_flow"] for h in history]
        axes[1].plot(ep, [h["val_nll_flow"] for h in history], "o-", label="validation, flow")
        axes[1].plot(ep, [h["val_nll_rigid"] for h in history], "s--", label="validation, rigid")
        ax2 = axes[1].twinx()
        ax2.bar(ep, gain, alpha=0.2, color="green")
        ax2.set_ylabel("rigid − flow (green bars)")
        axes[1].set_title("held-out particles: does the model use flexibility?")
        axes[1].legend(loc="upper left")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("NLL per particle")
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
