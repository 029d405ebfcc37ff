"""The reconstruction objective's cache of per-batch inputs (rotations, shifts, CTFs, flow
displacements): passes give the same objective, gradient and curvature with and without it,
the flow is evaluated once per batch when the cache holds the half, and a budget too small for
a batch caches nothing."""

import numpy as np
import torch

from flexcore.core.masks import sphere_mask
from flexcore.core.mesh import regular_tet_mesh
from flexcore.core.rotations import random_rotations
from flexcore.stages.reconstruct.flex import FlexOperator, HalfObjective
from flexcore.stages.reconstruct.particles import ReconParticles


def tiny_operator():
    hard = (sphere_mask(16, 5.0) > 0.5).astype(np.float32)
    mesh, _ = regular_tet_mesh(hard, hard, 4.0, 4)
    return FlexOperator(mesh, 4.0, 1.0, "cpu"), mesh.n_vertices


def tiny_particles(b: int) -> ReconParticles:
    rng = np.random.default_rng(0)
    df = torch.tensor(rng.uniform(1e4, 2e4, b), dtype=torch.float32)
    f = lambda v: torch.full((b,), float(v))  # noqa: E731
    ctf = {"defocus_u_A": df, "defocus_v_A": df * 0.95, "defocus_angle_deg": f(20.0),
           "voltage_kv": f(300.0), "spherical_aberration_mm": f(2.7),
           "amplitude_contrast": f(0.1), "phase_shift_deg": f(0.0), "bfactor_A2": f(0.0),
           "scale": f(1.0)}
    return ReconParticles(rotations=torch.tensor(random_rotations(b, rng), dtype=torch.float32),
                          shifts_A=torch.tensor(rng.normal(0, 2, (b, 2)), dtype=torch.float32),
                          ctf=ctf, optics_group=np.zeros(b, np.int64),
                          half_set=np.zeros(b, np.int8), source_rows=np.arange(b), source=None)


class Stream:
    """Fixed random images of the half (``read`` by batch positions)."""

    def __init__(self, n, box, seed=0):
        self.images = torch.randn(n, box, box, generator=torch.Generator().manual_seed(seed))

    def read(self, local):
        return self.images[torch.as_tensor(local)]


def objective(cache_bytes, calls):
    op, n_vertices = tiny_operator()
    n = 10
    particles = tiny_particles(n)
    disp = torch.randn(n, n_vertices, 3, generator=torch.Generator().manual_seed(1)) * 0.3

    def displacement_fn(idx):
        calls.append(len(idx))
        return disp[torch.as_tensor(idx)]

    return op, HalfObjective(op, particles, np.arange(n), Stream(n, op.box), displacement_fn,
                             1e-3, 4, cache_bytes=cache_bytes)


def test_cached_passes_equal_uncached_ones():
    calls_off, calls_on = [], []
    op, off = objective(0, calls_off)
    _, on = objective(None, calls_on)
    x = torch.randn(op.n_voxels, generator=torch.Generator().manual_seed(2))
    d = torch.randn(op.n_voxels, generator=torch.Generator().manual_seed(3))
    for _ in range(2):
        e0, g0 = off.value_and_grad(x)
        e1, g1 = on.value_and_grad(x)
        assert e0 == e1 and torch.equal(g0, g1)
        assert off.curvature(d) == on.curvature(d)
    assert sum(calls_on) == 10 and sum(calls_off) == 40  # 4 passes over 10 particles
    assert on._cached_bytes > 0 and off._cached_bytes == 0


def test_a_budget_below_one_batch_caches_nothing():
    calls = []
    op, obj = objective(1000, calls)  # one batch of 4 CTFs at box 16 alone is 2 176 bytes
    x = torch.zeros(op.n_voxels)
    obj.value_and_grad(x)
    obj.value_and_grad(x)
    assert sum(calls) == 20 and obj._cached_bytes == 0
