"""Pure-PyTorch reference of the convection + projection operator ("push + splat").

This is the twin of the CUDA kernel in ``csrc/``: same signature, same numbers (to float
rounding), autograd for the backward pass. It is what runs on machines without CUDA.
"""

from __future__ import annotations

import warnings

import torch

from .geometry import VoxelGeometry

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


def interpolation_matrix(vertex_index: torch.Tensor, barycentric: torch.Tensor,
                         n_vertices: int) -> torch.Tensor:
    """Sparse ``(M, Nv)`` CSR matrix ``W`` with ``W[j, idx_jk] = b_jk``: ``u = W @ Δ``."""
    m = vertex_index.shape[0]
    cols, order = torch.sort(vertex_index.long(), dim=1)
    vals = torch.gather(barycentric, 1, order)
    crow = torch.arange(0, 4 * m + 1, 4, device=vertex_index.device, dtype=torch.int64)
    return torch.sparse_csr_tensor(crow, cols.reshape(-1), vals.reshape(-1), (m, n_vertices),
                                   check_invariants=False)


def interpolate_displacements(geometry: VoxelGeometry, displacements: torch.Tensor) -> torch.Tensor:
    """Per-voxel displacements ``u = Σ_k b_k Δ[idx_k]``.

    Parameters
    ----------
    geometry : the voxels' tetrahedra (``vertex_index``) and ``barycentric`` weights.
    displacements : ``(B, Nv, 3)`` vertex displacements ``(x, y, z)`` in voxels.

    Returns
    -------
    ``(B, M, 3)`` voxel displacements in voxels (differentiable w.r.t. ``displacements``).
    """
    b, nv, _ = displacements.shape
    w = interpolation_matrix(geometry.vertex_index, geometry.barycentric.to(displacements.dtype), nv)
    flat = displacements.permute(1, 0, 2).reshape(nv, b * 3)
    return (w @ flat).reshape(-1, b, 3).permute(1, 0, 2)


def splat_project_reference(
    density: torch.Tensor,
    geometry: VoxelGeometry,
    displacements: torch.Tensor | None,
    rotations: torch.Tensor,
    image_size: int,
    chunk: int = 64,
    displacement_rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Move each voxel by its interpolated displacement, rotate it into the particle frame
    and add its density to the image with bilinear weights.

    Parameters
    ----------
    density : ``(M,)`` densities of the mask voxels.
    geometry : the voxels' rest positions ``coords (M, 3)`` (``(x, y, z)`` voxels from the
        box centre), tetrahedra ``vertex_index (M, 4)`` and ``barycentric (M, 4)`` weights.
    displacements : ``(B, Nv, 3)`` vertex displacements (voxels) or ``None`` for rigid.
    rotations : ``(B, 3, 3)`` RELION matrices ``A``; ``p = A @ (x + u)``.
    image_size : ``D``; a point at particle-frame ``(px, py)`` lands at pixel
        ``(px + D//2, py + D//2)`` of the ``[y, x]`` image.
    chunk : images processed together (bounds memory; does not change the result).
    displacement_rows : optional integer ``(B,)``: image ``b`` moves by
        ``displacements[displacement_rows[b]]`` (``displacements`` is then a table of any
        number of rows).

    Returns
    -------
    ``(B, D, D)`` projected images. Mass is conserved for points landing inside the image;
    points outside contribute nothing (and get zero gradient).
    """
    if displacement_rows is not None:
        displacements = displacements[displacement_rows.long()]
    outs = []
    for s in range(0, rotations.shape[0], chunk):
        rot = rotations[s:s + chunk]
        disp = None if displacements is None else displacements[s:s + chunk]
        outs.append(_splat_chunk(density, geometry, disp, rot, image_size))
    return torch.cat(outs, dim=0) if outs else density.new_zeros((0, image_size, image_size))


def _splat_chunk(density, geometry, displacements, rotations, d):
    b = rotations.shape[0]
    coords = geometry.coords
    if displacements is None:
        pos = coords.unsqueeze(0).expand(b, -1, -1)
    else:
        pos = coords.unsqueeze(0) + interpolate_displacements(geometry, displacements)
    # Work in an image padded by one pixel on each side: clamping positions into the padded
    # range sends every out-of-box contribution to the border, which is then cut away.
    dp = d + 2
    offset = torch.full((b, 1, 2), float(d // 2 + 1), dtype=pos.dtype, device=pos.device)
    pxy = torch.baddbmm(offset, pos, rotations[:, :2, :].transpose(1, 2).to(pos.dtype))
    pxy = pxy.clamp(0.0, float(d + 1))
    cell = pxy.detach().to(torch.int32)  # floor, since pxy >= 0
    frac = pxy - cell
    base = (torch.arange(b, device=pos.device, dtype=torch.int32) * (dp * dp)).unsqueeze(1)
    i00 = (cell[..., 1] * dp + cell[..., 0] + base).reshape(-1)
    tx, ty = frac[..., 0], frac[..., 1]
    row0 = (1.0 - ty) * density.unsqueeze(0)
    row1 = ty * density.unsqueeze(0)
    right0 = row0 * tx
    right1 = row1 * tx
    out = density.new_zeros(b * dp * dp + dp + 2)  # slack for zero-weight overflow at the end
    out = (out.index_add(0, i00, (row0 - right0).reshape(-1))
              .index_add(0, i00 + 1, right0.reshape(-1))
              .index_add(0, i00 + dp, (row1 - right1).reshape(-1))
              .index_add(0, i00 + dp + 1, right1.reshape(-1)))
    return out[: b * dp * dp].view(b, dp, dp)[:, 1:-1, 1:-1]
