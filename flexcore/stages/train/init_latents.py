"""Latent initialisation from deformation gradients (principal motions of the data).

An auto-decoder that starts from random latents must break the symmetry between latents
and conformations by chance; with few particles or weak signal the flow can collapse to
zero instead. We start from the data: for every particle, the gradient of its negative
log-likelihood with respect to the mesh-vertex displacements at zero flow,
``g_i = ∂NLL_i/∂Δ |_{Δ=0}`` (a ``3·Nv`` vector in the canonical frame, so particles seen
from different directions are comparable), is the deformation the particle asks for. Its
principal components across particles are the dominant motions (a linearised,
deformation-space analogue of 3D variability analysis), and each particle's coordinates
along the first ``K`` of them are its initial latents (centred, scaled to SD 0.5).
"""

from __future__ import annotations

import numpy as np
import torch

from ...core.utils import distributed
from ...core.utils.logging import get_logger

log = get_logger("flexcore.train.init")


def deformation_gradients(renderer, data, volume, k_max, noise_var, idx, device, n_vertices,
                          batch: int = 128) -> torch.Tensor:
    """``(len(idx), 3·Nv)`` gradients of each particle's NLL w.r.t. vertex displacements
    at zero flow (training-box voxel units)."""
    canon = renderer.canonical(volume.detach(), k_max)
    band = renderer.model.band(k_max / renderer.scale)
    out = []
    for s in range(0, len(idx), batch):
        sel = idx[s:s + batch]
        images, rot, shifts, ctf = data.batch(sel, device, renderer.box)
        obs = renderer.observed(images)
        disp = torch.zeros((len(sel), n_vertices, 3), device=device, requires_grad=True)
        nll = renderer.model.nll(renderer.spectra(canon, disp, rot, ctf, shifts), obs, band,
                                 noise_var).sum()
        (g,) = torch.autograd.grad(nll, disp)
        out.append(g.reshape(len(sel), -1).cpu())
    return torch.cat(out)


def gradient_pca_latents(renderer, data, volume, k_max, noise_var, k: int, device,
                         n_vertices: int, max_fit: int = 8000, seed: int = 0) -> np.ndarray:
    """Initial latents ``(N, k)`` of all ``N`` prepared particles, in their order, from the
    principal components of deformation gradients.

    The components are fitted on at most ``max_fit`` particles (a seeded random subset),
    then every particle is projected onto them. Under torchrun each rank computes the
    gradients of the particles it holds (``data`` is its shard); rank 0 fits the
    components on all ranks' fit gradients and sends them to every rank, and the
    projections are put back in particle order, so every rank returns the same ``(N, k)``.
    """
    n = data.n_total or len(data)
    rng = np.random.default_rng(seed)
    fit_idx = np.sort(rng.permutation(n)[:max_fit]) if n > max_fit else np.arange(n)
    local_fit = data.positions_of(fit_idx)  # positions in the held rows
    g_local = deformation_gradients(renderer, data, volume, k_max, noise_var, local_fit, device,
                                    n_vertices).double()
    g = distributed.assemble_rows(g_local, np.searchsorted(fit_idx, data.rows[local_fit]), len(fit_idx))
    mean = torch.zeros((1, g.shape[1]), dtype=torch.float64)
    comps = torch.zeros((g.shape[1], k), dtype=torch.float64)
    if distributed.is_main():
        mean = g.mean(0, keepdim=True)
        _, s, v = torch.svd_lowrank(g - mean, q=min(k + 10, min(g.shape)), niter=4)
        comps = v[:, :k]  # (3Nv, k)
        log.info("latents initialised from deformation-gradient PCA (%d particles): singular "
                 "values %s", len(fit_idx), np.array2string(s.numpy()[: k + 3], precision=1))
    del g
    mean, comps = distributed.broadcast_(mean), distributed.broadcast_(comps)
    if n > max_fit:
        parts = []
        for start in range(0, len(data), max_fit):
            idx = np.arange(start, min(len(data), start + max_fit))
            gi = deformation_gradients(renderer, data, volume, k_max, noise_var, idx, device,
                                       n_vertices).double()
            parts.append((gi - mean) @ comps)
        z_local = torch.cat(parts)
    else:
        z_local = (g_local - mean) @ comps
    z = distributed.assemble_rows(z_local, data.rows, n).numpy()
    z = (z - z.mean(0)) / np.maximum(z.std(0), 1e-12) * 0.5
    return np.clip(z, -1.4, 1.4).astype(np.float32)
