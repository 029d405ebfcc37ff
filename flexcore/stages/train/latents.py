"""Auto-decoder latent inference: candidate search, then gradient refinement (θ, V frozen).

For each particle the MAP objective is ``E(z) = NLL(image | V, f_θ(z)) + λ_c Σ|z_k|^p``.
When a particle is visited: evaluate the current latent, ``n_candidates`` random
perturbations (and, when asked, a grid over the latent box for K ≤ 2, searched coarse to
fine, and optionally at a lower band limit on a smaller box), keep the best, then take
``steps`` Adam steps on ``z``; latents stay inside ``±limit``.
"""

from __future__ import annotations

import itertools

import torch

from ...core.model.priors import centering_penalty
from .adam import Adam


def latent_grid(k: int, points: int, extent: float) -> torch.Tensor:
    """Coarse grid of ``points^k`` latents spanning ``±extent`` (only for k ≤ 2)."""
    axis = torch.linspace(-extent, extent, points)
    return torch.tensor(list(itertools.product(axis.tolist(), repeat=k)), dtype=torch.float32)


def coarse_grid_points(points: int) -> int:
    """Points per dimension of the coarse stage of a coarse-to-fine search of a
    ``points``-point grid: every other point of it (``(points + 1) // 2`` for odd ``points``
    ≥ 5); ``points`` itself (one stage: the full grid) otherwise."""
    return (points + 1) // 2 if points >= 5 and points % 2 == 1 else points


def local_grid(center: torch.Tensor, spacing: float, limit: float) -> torch.Tensor:
    """The ``3^k − 1`` neighbours of each latent on a grid of ``spacing`` around it,
    ``(B, 3^k − 1, k)`` (clamped to ``±limit``); ``center`` is ``(B, k)``."""
    k = center.shape[1]
    steps = latent_grid(k, 3, spacing).to(center.device)  # (3^k, k), the centre in the middle
    steps = steps[steps.abs().sum(dim=1) > 0]
    return (center.unsqueeze(1) + steps.unsqueeze(0)).clamp(-limit, limit)


def unique_latents(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of ``z (N, K)`` and, per row, the index of its distinct row
    (``unique[inverse] == z``). Rows are compared bit for bit; for K ≤ 2 through one
    64-bit key per row (``torch.unique(dim=0)`` is slow on the CPU), otherwise every row is
    taken as distinct (only a K ≤ 2 grid repeats latents)."""
    n, k = z.shape
    every = (z, torch.arange(n, device=z.device))
    if k > 2 or n == 0:
        return every
    bits = z.contiguous().view(torch.int32).to(torch.int64)
    key = bits[:, 0] if k == 1 else (bits[:, 0] << 32) | (bits[:, 1] & 0xFFFFFFFF)
    keys, inverse = torch.unique(key, return_inverse=True)
    if len(keys) == n:  # nothing repeats: keep the order
        return every
    first = torch.empty(len(keys), dtype=torch.long, device=z.device)
    first.scatter_(0, inverse, torch.arange(n, device=z.device))
    return z[first], inverse


class LatentInference:
    """Evaluates and refines latents for batches of particles against a frozen model."""

    def __init__(self, flow, renderer, centering_lambda: float, centering_power: float,
                 limit: float, amp: bool = False):
        self.flow = flow
        self.renderer = renderer
        self.lam = centering_lambda
        self.power = centering_power
        self.limit = limit
        self.amp = amp

    def _displacements(self, z):
        with torch.autocast(device_type=z.device.type, dtype=torch.bfloat16,
                            enabled=self.amp and z.device.type == "cuda"):
            return self.flow(z).float()

    def energy(self, z, canonical, observed, rotations, ctf, shifts, band, noise_var):
        """``E(z)`` per particle ``(B,)`` (differentiable w.r.t. ``z``)."""
        spec = self.renderer.spectra(canonical, self._displacements(z), rotations, ctf, shifts)
        nll = self.renderer.model.nll(spec, observed, band, noise_var)
        return nll + self.lam * centering_penalty(z, self.power)

    @torch.no_grad()
    def energies(self, z, particle, canonical, observed, rotations, ctf, shifts, band, noise_var,
                 chunk=256):
        """``E`` of many latents ``z (N, K)``, latent ``i`` for particle ``particle[i]`` of the
        batch, ``(N,)``, ``chunk`` projections at a time. A latent shared by several
        particles (a grid point) gets one flow evaluation, and each particle's CTF, splat
        correction and shift phase are formed once for all its candidates: only the
        projections are made per latent, reading a shared latent's displacements from one
        table (:func:`flexcore.core.ops.splat_project`'s ``displacement_rows``)."""
        unique, inverse = unique_latents(z)
        repeats = len(unique) < len(z)
        if repeats:  # one table of the distinct latents' displacements, at the working box
            table = self.renderer.working_displacements(torch.cat(
                [self._displacements(unique[s:s + chunk]) for s in range(0, len(unique), chunk)]))
        filters = self.renderer.model.filters(ctf, shifts)
        nll = []
        for s in range(0, len(z), chunk):
            p = particle[s:s + chunk]
            if repeats:  # every image reads its row of the shared table
                spec = self.renderer.filtered_spectra(canonical, table, rotations[p], filters[p],
                                                      rows=inverse[s:s + chunk], working=True)
            else:
                spec = self.renderer.filtered_spectra(canonical, self._displacements(z[s:s + chunk]),
                                                      rotations[p], filters[p])
            nll.append(self.renderer.model.nll(spec, observed[p], band, noise_var))
        return torch.cat(nll) + self.lam * centering_penalty(z, self.power)

    @torch.no_grad()
    def search(self, z0, candidates_extra, n_random, sigma, canonical, observed, rotations, ctf,
               shifts, band, noise_var, generator=None, chunk=256):
        """Best of {current, random perturbations, extra candidates} per particle: the
        latents ``(B, K)`` and their energies ``(B,)``.

        ``candidates_extra`` is ``(C, K)`` shared by every particle (e.g. a grid), ``(B, C, K)``
        per particle, or None.
        """
        b, k = z0.shape
        cands = [z0.unsqueeze(1)]
        if n_random > 0:
            noise = torch.randn((b, n_random, k), generator=generator, device="cpu").to(z0.device)
            cands.append((z0.unsqueeze(1) + sigma * noise).clamp(-self.limit, self.limit))
        if candidates_extra is not None:
            extra = candidates_extra.to(z0.device)
            cands.append(extra if extra.dim() == 3 else extra.unsqueeze(0).expand(b, -1, -1))
        cand = torch.cat(cands, dim=1)  # (B, C, K)
        c = cand.shape[1]
        flat = cand.reshape(b * c, k)
        particle = torch.arange(b * c, device=z0.device) // c
        e = self.energies(flat, particle, canonical, observed, rotations, ctf, shifts, band,
                          noise_var, chunk).view(b, c)
        best = e.argmin(dim=1)
        return cand[torch.arange(b), best], e[torch.arange(b), best]

    @torch.no_grad()
    def grid_search(self, z0, points, extent, n_random, sigma, canonical, observed, rotations,
                    ctf, shifts, band, noise_var, generator=None):
        """Search of a ``points^K`` grid over ``±extent`` (with the current latents and
        ``n_random`` perturbations), coarse to fine: every other grid point first
        (:func:`coarse_grid_points`), then the ``3^K − 1`` grid neighbours of each particle's
        best at the full grid's spacing. The best grid point is found whenever it lies next to
        the best coarse point; a 9² grid costs 25 + 8 instead of 81 evaluations per particle.
        Returns the latents ``(B, K)`` and their energies ``(B,)``."""
        k = z0.shape[1]
        coarse = coarse_grid_points(points)
        data = (canonical, observed, rotations, ctf, shifts, band, noise_var)
        z, e = self.search(z0, latent_grid(k, coarse, extent), n_random, sigma, *data,
                           generator=generator)
        if coarse == points:
            return z, e
        fine = local_grid(z, 2.0 * extent / (points - 1), self.limit)
        z2, e2 = self.search(z, fine, 0, sigma, *data)
        better = e2 < e  # the search keeps z itself, so this only guards float ties
        return torch.where(better.unsqueeze(1), z2, z), torch.minimum(e, e2)

    @torch.no_grad()
    def grid_search_low_res(self, z0, points, extent, n_random, sigma, data, coarse, coarse_data,
                            generator=None):
        """The grid searched at a lower band limit, then decided at this one.

        ``coarse`` is a :class:`LatentInference` on a smaller renderer and ``coarse_data`` its
        ``(canonical, observed, rotations, ctf, shifts, band, noise_var)``: it searches the
        ``points^K`` grid coarse to fine (:meth:`grid_search`, with the current latents). Here
        the grid's best then competes with the current latents and ``n_random`` perturbations
        at this band limit (``data``), so a particle costs ``n_random + 2`` evaluations at this
        box, as a visit without the grid costs ``n_random + 1``, plus the grid's at the small
        box. As in pose search, the global search runs where the energy is cheap and smooth and
        the final choice where it is sharp. Returns the latents ``(B, K)`` and energies ``(B,)``
        at this band limit."""
        z_grid, _ = coarse.grid_search(z0, points, extent, 0, sigma, *coarse_data)
        return self.search(z0, z_grid.unsqueeze(1), n_random, sigma, *data, generator=generator)

    def refine(self, z, steps, lr, canonical, observed, rotations, ctf, shifts, band, noise_var,
               start_energy=None):
        """Up to ``steps`` Adam steps on ``z`` (θ and V frozen), keeping for each particle
        the best latent evaluated (so refinement never raises a particle's energy)."""
        if steps <= 0:
            return z
        best = z.detach().clone()
        best_e = start_energy
        z = z.detach().clone().requires_grad_(True)
        opt = Adam([z], lr=lr)
        for step in range(steps + 1):
            opt.zero_grad(set_to_none=True)
            e = self.energy(z, canonical, observed, rotations, ctf, shifts, band, noise_var)
            with torch.no_grad():
                if best_e is None:
                    best_e = e.detach().clone()
                better = e.detach() < best_e
                best[better] = z.detach()[better]
                best_e = torch.where(better, e.detach(), best_e)
            if step == steps:
                break
            e.sum().backward()
            opt.step()
            with torch.no_grad():
                z.clamp_(-self.limit, self.limit)
        return best
