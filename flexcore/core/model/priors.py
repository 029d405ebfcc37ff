"""Priors: as-rigid-as-possible penalty on the mesh, latent centering, noise injection.

Rigidity (chosen form): per cell the deformation gradient
``F = [q1−q0, q2−q0, q3−q0] · E⁻¹`` (``E`` the rest edge matrix, ``q = p + Δ``) and the
penalty ``λ · Σ_c w_c · Σ_k (σ_k(F) − 1)²`` averaged over the batch, with ``σ`` the singular
values of ``F``. Rotations leave the singular values at 1, so any rigid motion costs zero;
stretch and shear cost quadratically. It is computed as ``tr(FᵀF) − 2 Σσ + 3`` with the
singular-value sum from a convex Newton solve (:func:`singular_value_sum`): batched
eigen/SVD solvers are slow or fail (cuSOLVER) on the millions of 3×3 matrices of a batch.
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


def singular_value_sum(f: torch.Tensor, iterations: int = 12) -> torch.Tensor:
    """Sum of the singular values (nuclear norm) of ``f (..., 3, 3)``, with stable gradients.

    With ``C = fᵀf``, ``t = tr C``, ``e = ½(t² − tr C²)`` and ``d = |det f|``, the sum ``s``
    of singular values is the root in ``[√t, √(3t)]`` of
    ``g(s) = ((s² − t)/2)² − e − 2 d s`` (from ``s² = t + 2 Σσᵢσⱼ`` and
    ``(Σσᵢσⱼ)² = e + 2 d s``). ``g`` is convex there, so Newton from ``√(3t)`` converges
    monotonically; a last Newton step taken with autograd gives the implicit-function
    gradient. Unlike an eigen/SVD solver this has a well-defined gradient for the repeated
    singular values of rigid cells and runs as plain batched arithmetic on any device.
    """
    c = f.transpose(-1, -2) @ f
    t = c.diagonal(dim1=-2, dim2=-1).sum(-1)
    e = 0.5 * (t * t - (c * c).sum((-2, -1)))
    d = torch.linalg.det(f).abs()
    return _nuclear_norm(t, e, d, iterations)


def rigidity_penalty(points, cells, edges_inv, weights, displacements) -> torch.Tensor:
    """``Σ_c w_c Σ_k (σ_k − 1)²`` per image, ``(B,)``; multiply by λ outside.

    Float32 CPU inputs (gradient wanted for the displacements only) run the native CPU
    kernel where it builds (``flexcore.core.ops.cpu``: each cell's 3 × 3 algebra in
    registers, value and gradient in one pass); everything else, and
    ``FLEXCORE_OPS_BACKEND=reference``, runs :func:`rigidity_penalty_reference`.
    """
    if _native_takes(points, edges_inv, weights, displacements):
        from ..ops.cpu import rigidity_penalty_cpu

        return rigidity_penalty_cpu(points, cells, edges_inv, weights, displacements)
    return rigidity_penalty_reference(points, cells, edges_inv, weights, displacements)


def _native_takes(points, edges_inv, weights, displacements) -> bool:
    tensors = (points, edges_inv, weights, displacements)
    if not all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors):
        return False
    if any(t.requires_grad for t in (points, edges_inv, weights)):
        return False
    from ..ops import backend_for

    return backend_for(displacements.device) == "cpu"


def rigidity_penalty_reference(points, cells, edges_inv, weights, displacements) -> torch.Tensor:
    """:func:`rigidity_penalty` in PyTorch (any device and dtype; autograd for every input).

    The same quantities as :func:`deformation_gradients` and :func:`singular_value_sum`,
    computed on ``(3, B, Nc)`` arrays (one per column of ``F``) so every operation is one
    vectorised pass over all cells: batched products of millions of 3×3 matrices (``bmm``,
    ``det``) cost many times more on the CPU.
    """
    q = (points.unsqueeze(0) + displacements).permute(2, 0, 1)  # (3, B, Nv)
    c = cells.long()
    q0 = q[:, :, c[:, 0]]
    e = [q[:, :, c[:, k]] - q0 for k in (1, 2, 3)]  # edge columns (3, B, Nc)
    inv = edges_inv.to(q.dtype)
    # column j of F = E E⁻¹: Σ_k e_k E⁻¹[k, j]
    f = [sum(e[k] * inv[:, k, j] for k in range(3)) for j in range(3)]

    def dot(a, b):
        return (a * b).sum(0)

    c00, c11, c22 = dot(f[0], f[0]), dot(f[1], f[1]), dot(f[2], f[2])
    c01, c02, c12 = dot(f[0], f[1]), dot(f[0], f[2]), dot(f[1], f[2])
    t = c00 + c11 + c22  # tr(FᵀF)
    tr_c2 = c00 * c00 + c11 * c11 + c22 * c22 + 2.0 * (c01 * c01 + c02 * c02 + c12 * c12)
    cross = torch.stack([f[1][1] * f[2][2] - f[1][2] * f[2][1],
                         f[1][2] * f[2][0] - f[1][0] * f[2][2],
                         f[1][0] * f[2][1] - f[1][1] * f[2][0]])
    d = dot(f[0], cross).abs()  # |det F|
    s = _nuclear_norm(t, 0.5 * (t * t - tr_c2), d)
    # Σ_k (σ_k − 1)² = tr(FᵀF) − 2 Σ_k σ_k + 3
    per_cell = t - 2.0 * s + 3.0
    return per_cell.clamp_min(0.0).mul(weights.unsqueeze(0)).sum(-1)


def _nuclear_norm(t, e, d, iterations: int = 12):
    """:func:`singular_value_sum` from the invariants ``t = tr C``, ``e = ½(t² − tr C²)`` and
    ``d = |det f|`` (same Newton solve and implicit-function last step)."""
    def g_and_slope(s):
        q = s * s - t
        return 0.25 * q * q - e - 2.0 * d * s, (s * q - 2.0 * d).clamp_min(1e-6)

    with torch.no_grad():
        floor = torch.sqrt(t.clamp_min(0.0))
        s = torch.sqrt(3.0 * t.clamp_min(0.0))
        for _ in range(iterations):
            g, slope = g_and_slope(s)
            s = torch.maximum(s - g / slope, floor)
    s = s.detach()
    g, slope = g_and_slope(s)
    return s - g / slope


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
