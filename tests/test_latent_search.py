"""Coarse-to-fine latent grid search (flexcore.stages.train.latents): it finds the best
point of the full grid wherever the energy's basin is wider than the coarse spacing, with
fewer evaluations than the full grid; searched at a lower band, its best is decided at the
full one; latents shared by several particles are found as such."""

import pytest
import torch

from flexcore.stages.train.latents import (
    LatentInference,
    coarse_grid_points,
    latent_grid,
    local_grid,
    unique_latents,
)


class CountingBowl(LatentInference):
    """A quadratic energy per particle around ``targets``; counts evaluated latents."""

    def __init__(self, targets):
        super().__init__(flow=None, renderer=None, centering_lambda=0.0, centering_power=4.0,
                         limit=1.5)
        self.targets = targets
        self.evaluated = 0

    def energies(self, z, particle, canonical, observed, rotations, ctf, shifts, band, noise_var,
                 chunk=256):
        self.evaluated += len(z)
        return ((z - self.targets[observed[particle]]) ** 2).sum(dim=1)  # ``observed``: index


def run(inference, z0, points, extent):
    b = len(z0)
    idx = torch.arange(b)
    return inference.grid_search(z0, points, extent, 0, 0.3, None, idx, idx, idx, idx, None, 1.0)


@pytest.mark.parametrize("k", [1, 2])
def test_finds_the_full_grids_best_point(k):
    g = torch.Generator().manual_seed(k)
    extent, points = 1.2, 9
    targets = (torch.rand(64, k, generator=g) * 2 - 1) * extent
    full = latent_grid(k, points, extent)
    nearest = full[((targets[:, None] - full[None]) ** 2).sum(-1).argmin(dim=1)]
    inference = CountingBowl(targets)
    z0 = torch.zeros(64, k) + 1.4  # a poor start outside the grid
    z, e = run(inference, z0, points, extent)
    assert torch.allclose(z, nearest, atol=1e-6)
    assert torch.allclose(e, ((z - targets) ** 2).sum(dim=1))
    per_particle = inference.evaluated / 64
    assert per_particle == 1 + 5**k + 1 + (3**k - 1)  # current + coarse, then best + neighbours
    assert per_particle < 1 + points**k


def test_even_or_small_grids_are_searched_whole():
    assert coarse_grid_points(9) == 5 and coarse_grid_points(5) == 3
    assert coarse_grid_points(3) == 3 and coarse_grid_points(8) == 8
    targets = torch.tensor([[0.3, -0.3]])
    inference = CountingBowl(targets)
    run(inference, torch.zeros(1, 2), 3, 1.2)
    assert inference.evaluated == 1 + 9


def test_local_grid_is_the_neighbours_clamped():
    pts = local_grid(torch.tensor([[1.4, 0.0]]), 0.3, 1.5)
    assert pts.shape == (1, 8, 2)
    assert float(pts.max()) == pytest.approx(1.5)
    assert not (pts == torch.tensor([1.4, 0.0])).all(dim=-1).any()


@pytest.mark.parametrize("k", [1, 2, 3])
def test_unique_latents_rebuild_every_row(k):
    g = torch.Generator().manual_seed(k)
    grid = latent_grid(min(k, 2), 5, 1.2) if k <= 2 else torch.randn(6, k, generator=g)
    own = torch.randn(40, k, generator=g)
    z = torch.cat([own, grid.repeat(7, 1), own[:5]])  # shared grid points and repeated rows
    unique, inverse = unique_latents(z)
    assert torch.equal(unique[inverse], z)
    if k <= 2:
        assert len(unique) == 40 + len(grid)  # one row per distinct latent
    else:
        assert len(unique) == len(z)
    distinct = torch.randn(30, k, generator=g)
    unique, inverse = unique_latents(distinct)  # no repeats: the rows in their order
    assert torch.equal(unique, distinct) and torch.equal(inverse, torch.arange(30))


def test_grid_at_low_resolution_is_decided_at_the_epochs_resolution():
    """The low-band search returns its grid's best; the result is the best at this band of
    the current latent, the perturbations and that point, with n_random + 2 evaluations."""
    g = torch.Generator().manual_seed(3)
    extent, points = 1.2, 9
    sharp = (torch.rand(32, 2, generator=g) * 2 - 1) * extent
    blurred = sharp + 0.05 * torch.randn(32, 2, generator=g)  # the low band sees nearly the same
    fine, coarse = CountingBowl(sharp), CountingBowl(blurred)
    idx = torch.arange(32)
    data = (None, idx, idx, idx, idx, None, 1.0)
    z0 = torch.full((32, 2), 1.4)
    z, e = fine.grid_search_low_res(z0, points, extent, 4, 0.3, data, coarse, data,
                                    generator=torch.Generator().manual_seed(0))
    assert coarse.evaluated == 32 * (1 + 5**2 + 1 + 8)
    assert fine.evaluated == 32 * (1 + 4 + 1)
    z_grid, _ = CountingBowl(blurred).grid_search(z0, points, extent, 0, 0.3, *data)
    assert torch.all(e <= ((z_grid - sharp) ** 2).sum(1) + 1e-6)
    assert torch.all(e <= ((z0 - sharp) ** 2).sum(1) + 1e-6)
    assert torch.allclose(e, ((z - sharp) ** 2).sum(1))
    grid_spacing = 2 * extent / (points - 1)
    assert float((z - sharp).norm(dim=1).max()) < grid_spacing  # the grid's nearest point, or better
