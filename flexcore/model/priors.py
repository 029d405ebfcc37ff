"""Priors: as-rigid-as-possible penalty on the mesh, latent centering, noise injection.

Rigidity (chosen form): per cell the deformation gradient
``F = [q1−q0, q2−q0, q3−q0] · E⁻¹`` (``E`` the rest edge matrix, ``q = p + Δ``) and the
penalty ``λ · Σ_c w_c · Σ_k (σ_k(F) − 1)²`` averaged over the batch, with ``σ`` the singular
values of ``F``. Rotations leave the singular values at 1, so any rigid motion costs zero;
stretch and shear cost quadratically. The singular values are those of the symmetric
``FᵀF``'s eigen-decomposition (``σ = sqrt(eig(FᵀF))``), which has stable gradients even
for the repeated singular values of a rigid cell, where ``svdvals``' gradient is not
defined.
"""

from __future__ import annotations

import torch


def deformation_gradients(points: torch.Tensor, cells: torch.Tensor, edges_inv: torch.Tensor,
                          displacements: torch.Tensor) -> torch.Tensor:
    """Per-cell deformation gradients ``(B, Nc, 3, 3)``.

    Parameters
    ----------
    points : ``(Nv, 3)`` rest vertex positions.
    cells : ``(Nc, 4)`` vertex indices.
    edges_inv : ``(Nc, 3, 3)`` inverses of the rest edge matrices ``[p1−p0, p2−p0, p3−p0]``
        (edges as columns).
    displacements : ``(B, Nv, 3)`` vertex displacements.
    """
    q = points.unsqueeze(0) + displacements  # (B, Nv, 3)
    c = cells.long()
    q0 = q[:, c[:, 0]]
    edges = torch.stack([q[:, c[:, 1]] - q0, q[:, c[:, 2]] - q0, q[:, c[:, 3]] - q0], dim=-1)
    return edges @ edges_inv.unsqueeze(0)


def singular_values(f: torch.Tensor) -> torch.Tensor:
    """Singular values ``(..., 3)`` of ``f (..., 3, 3)`` via ``eigvalsh(fᵀf)`` (stable grads)."""
    c = f.transpose(-1, -2) @ f
    # A tiny symmetric jitter keeps eigenvalue gradients finite for exactly equal eigenvalues.
    ev = torch.linalg.eigvalsh(c)
    return torch.sqrt(ev.clamp_min(1e-12))


def rigidity_penalty(points, cells, edges_inv, weights, displacements) -> torch.Tensor:
    """``Σ_c w_c Σ_k (σ_k − 1)²`` per image, ``(B,)``; multiply by λ outside."""
    f = deformation_gradients(points, cells, edges_inv, displacements)
    s = singular_values(f)
    return ((s - 1.0) ** 2).sum(-1).mul(weights.unsqueeze(0)).sum(-1)


def centering_penalty(z: torch.Tensor, power: float = 4.0) -> torch.Tensor:
    """``Σ_k |z_k|^p`` per particle, ``(B,)``; multiply by λ_c outside."""
    return z.abs().pow(power).sum(-1)


def inject_noise(z: torch.Tensor, sigma: float, limit: float = 1.5,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``clamp(z + N(0, σ²), ±limit)``: the latents the decoder is trained on."""
    if sigma <= 0:
        return z
    eps = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    return (z + sigma * eps).clamp(-limit, limit)
