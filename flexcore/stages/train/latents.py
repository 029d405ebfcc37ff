"""Auto-decoder latent inference: candidate search, then gradient refinement (θ, V frozen).

For each particle the MAP objective is ``E(z) = NLL(image | V, f_θ(z)) + λ_c Σ|z_k|^p``.
When a particle is visited: evaluate the current latent, ``n_candidates`` random
perturbations (and, when asked, a coarse grid over the latent box for K ≤ 2), keep the
best, then take ``steps`` Adam steps on ``z``; latents stay inside ``±limit``.
"""

from __future__ import annotations

import itertools

import torch

from ...core.model.priors import centering_penalty


def latent_grid(k: int, points: int, extent: float) -> torch.Tensor:
    """Coarse grid of ``points^k`` latents spanning ``±extent`` (only for k ≤ 2)."""
    axis = torch.linspace(-extent, extent, points)
    return torch.tensor(list(itertools.product(axis.tolist(), repeat=k)), dtype=torch.float32)


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
    def search(self, z0, candidates_extra, n_random, sigma, canonical, observed, rotations, ctf,
               shifts, band, noise_var, generator=None, chunk=256):
        """Best of {current, random perturbations, shared extra candidates} per particle.

        ``candidates_extra`` is ``(C, K)`` shared by every particle (e.g. a grid) or None.
        """
        b, k = z0.shape
        cands = [z0.unsqueeze(1)]
        if n_random > 0:
            noise = torch.randn((b, n_random, k), generator=generator, device="cpu").to(z0.device)
            cands.append((z0.unsqueeze(1) + sigma * noise).clamp(-self.limit, self.limit))
        if candidates_extra is not None:
            cands.append(candidates_extra.to(z0.device).unsqueeze(0).expand(b, -1, -1))
        cand = torch.cat(cands, dim=1)  # (B, C, K)
        c = cand.shape[1]
        flat = cand.reshape(b * c, k)
        energies = []
        for s in range(0, b * c, chunk):
            sl = slice(s, s + chunk)
            img_idx = torch.arange(s, min(s + chunk, b * c), device=z0.device) // c
            energies.append(self.energy(flat[sl], canonical, observed[img_idx], rotations[img_idx],
                                        ctf[img_idx], shifts[img_idx], band, noise_var))
        e = torch.cat(energies).view(b, c)
        best = e.argmin(dim=1)
        return cand[torch.arange(b), best], e[torch.arange(b), best]

    def refine(self, z, steps, lr, canonical, observed, rotations, ctf, shifts, band, noise_var,
               start_energy=None):
        """Up to ``steps`` Adam steps on ``z`` (θ and V frozen), keeping for each particle
        the best latent evaluated (so refinement never raises a particle's energy)."""
        if steps <= 0:
            return z
        best = z.detach().clone()
        best_e = start_energy
        z = z.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
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
