"""Trilinear insertion of central slices into a 3-D Fourier grid (direct Fourier gridding).

Grid convention (the one :mod:`flexcore.core.wiener` accumulates on): a cubic real-space box
of even size ``P`` has the fftshifted rfft ``(P, P, P//2 + 1)`` indexed ``[z, y, x]``; voxel
``[i, j, l]`` holds frequency ``(x, y, z) = (l, j − P/2, i − P/2) / P`` cycles per pixel.
Slices are fftshifted 2-D rffts ``(P, P//2 + 1)`` indexed ``[y, x]`` with frequency
``(x, y) = (l, j − P/2) / P``. A slice point of frequency ``f = (x, y, 0)`` lands at ``M f``
(``M`` a ``3 × 3`` matrix acting on xyz column vectors). Points that land at ``x < 0`` are
inserted at ``−M f`` with their complex conjugate (Friedel); the slice's own redundant half
line ``x = 0, y < 0`` is skipped. Each point is spread on its 8 trilinear neighbours; points
whose position lies outside the grid are dropped; a contribution to a voxel of the ``x = 0``
plane is also made, conjugated, to its Friedel mate (``[(P − i) % P, (P − j) % P, 0]``) unless
the voxel is the origin. These are the conventions of ``torch_fourier_slice``'s
``insert_central_slices_rfft_3d_multichannel`` (version 0.6), computed here with one flat
``index_add_`` per sum and batch instead of per-channel ``index_put_`` calls on 4-D index
tensors.

On the CPU the native kernel (``ops/csrc/gridding_cpu.cpp``, built with the CPU splat
kernels) does the same insertion in one pass over the slice points; the ``index_add_`` code
below is its reference and runs where the kernel is unavailable, on other devices, or with
``FLEXCORE_OPS_BACKEND=reference``.
"""

from __future__ import annotations

import os

import torch


class CentralSliceInserter:
    """Precomputed slice frequencies and corner offsets for a padded box ``P`` (even).

    Parameters
    ----------
    size : ``P``, the real-space edge of the 3-D grid and of the 2-D slices.
    device : device of the sums it will add into.
    native : use the native CPU kernel (``None``: when the device is the CPU, the kernel is
        built and ``FLEXCORE_OPS_BACKEND`` is not ``reference``).
    """

    def __init__(self, size: int, device="cpu", native: bool | None = None):
        if size % 2:
            raise ValueError(f"central-slice gridding needs an even box, got {size}")
        p = int(size)
        self.size = p
        self.nx = p // 2 + 1
        self.n_voxels = p * p * self.nx
        self.device = torch.device(device)
        fy = (torch.arange(p, device=self.device, dtype=torch.float32) - p // 2) / p
        fx = torch.arange(self.nx, device=self.device, dtype=torch.float32) / p
        yy, xx = torch.meshgrid(fy, fx, indexing="ij")
        keep = ~((xx == 0) & (yy < 0)).flatten()  # redundant half of the slice's x = 0 line
        self.keep = torch.nonzero(keep).squeeze(1)  # (S,) flat slice indices
        self.freq = torch.stack([xx.flatten(), yy.flatten()], dim=0)[:, self.keep]  # (2, S) xy
        sz, sy = p * self.nx, self.nx
        self.offsets = torch.tensor([dz * sz + dy * sy + dx for dz in (0, 1) for dy in (0, 1)
                                     for dx in (0, 1)], device=self.device, dtype=torch.int32)  # z-major
        self._dz = torch.tensor([0, 0, 1, 1], device=self.device, dtype=torch.int32)  # dx = 0
        self._dy = torch.tensor([0, 1, 0, 1], device=self.device, dtype=torch.int32)  # corners
        self._native = None
        if native is None:
            native = (self.device.type == "cpu"
                      and os.environ.get("FLEXCORE_OPS_BACKEND", "").lower() != "reference")
        if native:
            from .ops.cpu import load_extension

            self._native = load_extension()

    def insert(self, sums: torch.Tensor, values: torch.Tensor, weights: torch.Tensor,
               matrices: torch.Tensor, chunk: int = 32) -> None:
        """Add a batch of slices to three real sums, in place.

        Parameters
        ----------
        sums : float32 ``(3, P, P, P//2+1)`` contiguous: real and imaginary parts of the sum
            that receives ``values``, then the sum that receives ``weights`` (real slices,
            their own Friedel conjugates).
        values : complex ``(B, P, P//2+1)`` fftshifted rfft slices.
        weights : real ``(B, P, P//2+1)`` slices.
        matrices : ``(B, 3, 3)`` xyz matrices ``M``: a slice point ``f`` lands at ``M f``.
        chunk : slices per ``index_add_`` (bounds the ``(8, chunk·S)`` corner arrays).
        """
        if sums.dtype != torch.float32 or not sums.is_contiguous() or sums.numel() != 3 * self.n_voxels:
            raise ValueError(f"sums must be contiguous float32 (3, {self.size}, {self.size}, "
                             f"{self.nx}), got {tuple(sums.shape)} {sums.dtype}")
        m = matrices.to(self.device, torch.float32)
        if self._native is not None:
            b = values.shape[0]
            shape = (b, self.size, self.nx)
            self._native.insert_slices(
                sums, torch.view_as_real(values.to(torch.complex64).reshape(shape)).contiguous(),
                weights.to(torch.float32).reshape(shape).contiguous(), m.contiguous())
            return
        flat = sums.view(3, -1)
        for s in range(0, values.shape[0], chunk):
            self._insert(flat, values[s:s + chunk], weights[s:s + chunk], m[s:s + chunk])

    def _insert(self, flat, values, weights, m) -> None:
        p, nx = self.size, self.nx
        b = values.shape[0]
        vals = values.reshape(b, -1)[:, self.keep]  # (B, S)
        vr, vi = vals.real.contiguous(), vals.imag.contiguous()
        wts = weights.reshape(b, -1)[:, self.keep].to(torch.float32)
        pos = torch.matmul(m[:, :, :2], self.freq)  # (B, 3, S) landing frequencies, xyz
        flip = pos[:, 0] < 0
        pos = torch.where(flip.unsqueeze(1), -pos, pos)
        vi = torch.where(flip, -vi, vi)  # conjugate where flipped
        x, y, z = pos[:, 0] * p, (pos[:, 1] * p).add_(p // 2), (pos[:, 2] * p).add_(p // 2)
        inside = (x <= p // 2) & (y >= 0) & (y <= p - 1) & (z >= 0) & (z <= p - 1)
        x0, y0, z0 = x.floor(), y.floor(), z.floor()
        tx, ty, tz = (x - x0).flatten(), (y - y0).flatten(), (z - z0).flatten()
        n = tx.numel()
        ins = inside.flatten().to(torch.float32)
        # corner weights (8, n), z-major: products of (1 − t, t) per axis, 0 outside the grid
        wz = torch.stack([(1 - tz) * ins, tz * ins])
        wy = torch.stack([1 - ty, ty])
        wx = torch.stack([1 - tx, tx])
        w8 = ((wz[:, None] * wy[None]).view(4, 1, n) * wx[None]).view(8, n)
        base = ((z0.to(torch.int32) * p + y0.to(torch.int32)) * nx + x0.to(torch.int32)).flatten()
        idx = (base[None] + self.offsets[:, None]).clamp_(0, self.n_voxels - 1).flatten()
        for k, v in enumerate((vr.flatten(), vi.flatten(), wts.flatten())):
            flat[k].index_add_(0, idx, (w8 * v).flatten())
        # Friedel mates of the contributions to the x = 0 plane (corners dx = 0 of points x0 = 0)
        sel = torch.nonzero(((x0 == 0) & inside).flatten()).squeeze(1)
        if sel.numel():
            zc = z0.flatten()[sel].to(torch.int32)[:, None] + self._dz
            yc = y0.flatten()[sel].to(torch.int32)[:, None] + self._dy
            w4 = w8[0::2, sel].t() * ~((zc == p // 2) & (yc == p // 2))  # the origin: once only
            mate = (((p - zc) % p * p + (p - yc) % p) * nx).flatten()
            sign = (1.0, -1.0, 1.0)  # conjugate
            for k, v in enumerate((vr.flatten(), vi.flatten(), wts.flatten())):
                flat[k].index_add_(0, mate, (w4 * (sign[k] * v[sel])[:, None]).flatten())

