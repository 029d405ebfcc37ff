"""Strain of the learned motion: how much each mesh cell is stretched, over the particles' latents.

A rigid motion (rotation + translation) moves every cell without changing its shape; real
macromolecular motions are close to that inside domains. Per cell the deformation gradient
``F = [q1−q0, q2−q0, q3−q0] · E⁻¹`` (the rigidity prior's,
:func:`flexcore.core.model.priors.deformation_gradients`) has singular values ``σ1 ≥ σ2 ≥ σ3``
(principal stretches: 1 for a rigid motion). The **stretch** of a cell at one latent is

``s = max(σ1, 1 / σ3)``

— the largest factor by which any direction in the cell is lengthened or shortened (``s = 1``
rigid; a simple shear ``γ`` gives ``s = γ/2 + sqrt(1 + γ²/4)``; a 2× extension or a 2×
compression both give 2). Over a set of latents (the particles', :func:`strain_samples`)
each cell keeps its largest stretch. A cell is **flagged** when that exceeds a threshold
(default 1.5, i.e. some direction stretched or squeezed by 50 %: more than side chains and
loops do at a hinge, so a sign of unphysical motion or tearing) or when it turns inside out
(``det F ≤ 0``) at any latent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError
from .io import write_map
from .mesh.plots import central_slices
from .model.priors import deformation_gradients
from .utils.figures import new_figure, save_png
from .utils.logging import get_logger

log = get_logger("flexcore.strain")

DEFAULT_THRESHOLD = 1.5


def principal_stretches(f: torch.Tensor) -> torch.Tensor:
    """Singular values ``(..., 3)`` of ``f (..., 3, 3)``, descending, as ``sqrt(eig(fᵀf))``
    (float64 symmetric eigen solve: faster than an SVD for millions of 3×3 matrices)."""
    c = f.double().transpose(-1, -2) @ f.double()
    return torch.linalg.eigvalsh(c).clamp_min(0.0).sqrt().flip(-1)


def cell_stretch(points, cells, edges_inv, displacements) -> tuple[torch.Tensor, torch.Tensor]:
    """Stretch ``max(σ1, 1/σ3)`` ``(B, Nc)`` and ``det F`` ``(B, Nc)`` of every cell.

    Parameters
    ----------
    points : ``(Nv, 3)`` rest vertex positions (voxels); cells : ``(Nc, 4)``;
    edges_inv : ``(Nc, 3, 3)`` inverse rest edge matrices (``TetMesh.rest_edges_inverse``);
    displacements : ``(B, Nv, 3)`` vertex displacements (same units as ``points``).
    """
    pts = torch.as_tensor(points, dtype=torch.float64)
    f = deformation_gradients(pts, torch.as_tensor(cells), torch.as_tensor(edges_inv,
                                                                            dtype=torch.float64),
                              torch.as_tensor(displacements, dtype=torch.float64))
    sv = principal_stretches(f)
    stretch = torch.maximum(sv[..., 0], 1.0 / sv[..., 2].clamp_min(1e-9))
    return stretch, torch.linalg.det(f)


def strain_samples(latents: np.ndarray, n_samples: int = 128, seed: int = 0) -> np.ndarray:
    """Latents ``(S, K)`` at which to measure strain: all particles' latents when there are
    at most ``n_samples``, else a seeded random subset plus, for each dimension, the particles
    with the smallest and largest value (so the whole latent range is covered)."""
    z = np.asarray(latents, dtype=np.float32).reshape(len(latents), -1)
    if n_samples < 1:
        raise ConfigError(f"strain n_samples must be ≥ 1, got {n_samples}")
    if len(z) <= n_samples:
        return z
    extremes = np.concatenate([[np.argmin(z[:, k]), np.argmax(z[:, k])] for k in range(z.shape[1])])
    pick = np.random.default_rng(seed).choice(len(z), size=n_samples, replace=False)
    return z[np.unique(np.concatenate([pick, extremes]))]


@torch.no_grad()
def measure_strain(displacement_fn, mesh, latents: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                   n_samples: int = 128, seed: int = 0, batch: int = 16) -> dict:
    """Largest stretch of every cell over the particles' latents, and the cells it flags.

    Parameters
    ----------
    displacement_fn : ``z (B, K) ↦ (B, Nv, 3)`` vertex displacements in voxels of ``mesh``
        (e.g. ``TrainedModel.displacements``).
    mesh : the :class:`~flexcore.core.mesh.TetMesh` the flow lives on.
    latents : ``(N, K)`` the particles' latents (sampled by :func:`strain_samples`).
    threshold : stretch above which a cell is flagged (> 1).

    Returns a dict: ``stretch`` ``(Nc,)`` float64 (largest over the samples),
    ``inverted`` ``(Nc,)`` bool (``det F ≤ 0`` at some sample), ``flagged`` ``(Nc,)`` bool, and
    the summary numbers of :func:`strain_summary` under ``summary``.
    """
    if not threshold > 1.0:
        raise ConfigError(f"strain threshold must be > 1 (1 = rigid), got {threshold}")
    z = strain_samples(latents, n_samples, seed)
    edges_inv = mesh.rest_edges_inverse()
    stretch = np.ones(mesh.n_cells)
    inverted = np.zeros(mesh.n_cells, bool)
    for s in range(0, len(z), batch):
        disp = displacement_fn(z[s:s + batch]).detach().cpu()
        st, det = cell_stretch(mesh.points, mesh.cells, edges_inv, disp)
        stretch = np.maximum(stretch, st.max(0).values.numpy())
        inverted |= (det <= 0).any(0).numpy()
    flagged = (stretch > threshold) | inverted
    result = {"stretch": stretch, "inverted": inverted, "flagged": flagged}
    result["summary"] = strain_summary(stretch, inverted, flagged, threshold, len(z))
    return result


def strain_summary(stretch: np.ndarray, inverted: np.ndarray, flagged: np.ndarray,
                   threshold: float, n_samples: int) -> dict:
    """JSON-ready numbers: threshold, cells, flagged cells (count, fraction, first 50 ids),
    inverted cells, largest and 95th-percentile stretch, latents sampled."""
    ids = np.flatnonzero(flagged)
    return {
        "threshold": float(threshold), "n_cells": int(len(stretch)),
        "n_flagged": int(len(ids)), "flagged_fraction": float(len(ids) / max(len(stretch), 1)),
        "flagged_cells": ids[:50].tolist(), "n_inverted": int(inverted.sum()),
        "max_stretch": float(stretch.max(initial=1.0)),
        "p95_stretch": float(np.percentile(stretch, 95)) if len(stretch) else 1.0,
        "n_latent_samples": int(n_samples),
        "measure": "per cell, largest max(σ1, 1/σ3) of the deformation gradient over the latents",
    }


def log_strain(summary: dict, where: str) -> None:
    """One log line; a warning when cells are flagged."""
    line = (f"{where}: strain over {summary['n_latent_samples']} latents: largest cell stretch "
            f"{summary['max_stretch']:.3f} (95th percentile {summary['p95_stretch']:.3f})")
    if summary["n_flagged"]:
        log.warning("%s; %d of %d cells exceed %.3g or turn inside out (%d inverted): the flow may "
                    "tear or stretch the map unphysically (see strain.mrc / strain.png)", line,
                    summary["n_flagged"], summary["n_cells"], summary["threshold"],
                    summary["n_inverted"])
    else:
        log.info("%s; no cell exceeds %.3g", line, summary["threshold"])


def stretch_map(mesh, stretch: np.ndarray) -> np.ndarray:
    """``(N, N, N)`` float32 ``[z, y, x]`` map of each mask voxel's cell stretch (0 in solvent)."""
    tet = mesh.tet_map
    return np.where(tet >= 0, np.asarray(stretch)[np.maximum(tet, 0)], 0.0).astype(np.float32)


def write_strain_outputs(mesh, result: dict, out_dir) -> dict:
    """Write ``strain.mrc`` (:func:`stretch_map` at the mesh's box and pixel size) and
    ``strain.png`` (histogram of the cells' stretch with the threshold, and central slices of
    the map with flagged cells outlined). Returns the paths."""
    out = Path(out_dir)
    vol = stretch_map(mesh, result["stretch"])
    write_map(out / "strain.mrc", vol, mesh.pixel_size_A)
    s = result["summary"]
    fig = new_figure((13, 3.4), dpi=100)
    ax = fig.add_subplot(1, 4, 1)
    top = max(float(s["max_stretch"]), s["threshold"])
    ax.hist(result["stretch"], bins=50, range=(1.0, 1.0 + 1.05 * (top - 1.0)), color="C0", log=True)
    ax.axvline(s["threshold"], color="tab:red", ls="--", label=f"threshold {s['threshold']:.3g}")
    ax.set_xlabel("largest stretch max(σ1, 1/σ3) over the latents")
    ax.set_ylabel("cells")
    ax.set_title(f"{s['n_flagged']} of {s['n_cells']} cells flagged", fontsize=9)
    ax.legend(fontsize=8)
    flagged = stretch_map(mesh, result["flagged"].astype(np.float64))
    n = mesh.box
    extent = (-0.5 - n // 2, n - 0.5 - n // 2) * 2
    for i, (name, img, outline) in enumerate(zip(("z", "y", "x"), central_slices(vol),
                                                 central_slices(flagged))):
        ax = fig.add_subplot(1, 4, i + 2)
        im = ax.imshow(np.ma.masked_equal(img, 0.0), cmap="magma", vmin=1.0, vmax=top,
                       origin="lower", interpolation="nearest", extent=extent)
        if outline.any():
            ax.contour(outline, levels=[0.5], colors="cyan", linewidths=0.8, extent=extent,
                       origin="lower")
        ax.set_title(f"stretch, central {name} slice (flagged: cyan)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    save_png(fig, out / "strain.png")
    return {"map": out / "strain.mrc", "plot": out / "strain.png"}
