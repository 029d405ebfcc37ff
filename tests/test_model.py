"""Flow generator, priors and image model: behaviour the training relies on."""

import numpy as np
import pytest
import torch

from flexcore.core.fourier import crop_rfft2, shift_images
from flexcore.core.model.flow import FlowGenerator
from flexcore.core.model.image_model import ImageFormation
from flexcore.core.model.priors import centering_penalty, inject_noise, rigidity_penalty, singular_value_sum
from flexcore.core.rotations import random_rotations, rotation_about_axis


def tet_grid():
    """Two conforming tetrahedra sharing a face, plus rest-edge inverses."""
    pts = torch.tensor([[0, 0, 0], [3, 0, 0], [0, 3, 0], [0, 0, 3], [3, 3, 3]], dtype=torch.float32)
    cells = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    e = torch.stack([pts[cells[:, k]] - pts[cells[:, 0]] for k in (1, 2, 3)], dim=-1)
    return pts, cells, torch.linalg.inv(e)


def test_rigid_motions_cost_nothing():
    pts, cells, einv = tet_grid()
    w = torch.tensor([1.0, 20.0])
    rots = torch.tensor(random_rotations(5, 0), dtype=torch.float32)
    t = torch.randn(5, 1, 3)
    moved = pts @ rots.transpose(1, 2) + t  # rotate about the origin and translate
    disp = moved - pts
    assert rigidity_penalty(pts, cells, einv, w, disp).abs().max() < 1e-4


def test_stretch_and_shear_cost_grows_quadratically():
    pts, cells, einv = tet_grid()
    w = torch.ones(2)
    costs = []
    for eps in (0.01, 0.02, 0.04):
        stretch = torch.diag(torch.tensor([1 + eps, 1.0, 1.0]))
        disp = (pts @ stretch.T - pts)[None]
        costs.append(float(rigidity_penalty(pts, cells, einv, w, disp)))
    # (σ-1)² per cell: eps² each, two cells
    np.testing.assert_allclose(costs, [2 * e**2 for e in (0.01, 0.02, 0.04)], rtol=3e-3)
    shear = torch.tensor([[1.0, 0.1, 0], [0, 1, 0], [0, 0, 1]])
    assert float(rigidity_penalty(pts, cells, einv, w, (pts @ shear.T - pts)[None])) > 1e-3
    # the weights scale each cell's share
    disp = (pts @ torch.diag(torch.tensor([1.05, 1, 1])).T - pts)[None]
    heavy = rigidity_penalty(pts, cells, einv, torch.tensor([1.0, 20.0]), disp)
    light = rigidity_penalty(pts, cells, einv, torch.tensor([1.0, 1.0]), disp)
    assert float(heavy) == pytest.approx(float(light) * 21 / 2, rel=1e-4)


def test_singular_value_sum_matches_svd_and_its_gradient():
    f = torch.randn(200, 3, 3, dtype=torch.float64, requires_grad=True)
    s = singular_value_sum(f)
    torch.testing.assert_close(s, torch.linalg.svdvals(f).sum(-1))
    (g,) = torch.autograd.grad(s.sum(), f)
    f2 = f.detach().clone().requires_grad_()
    (g2,) = torch.autograd.grad(torch.linalg.svdvals(f2).sum(-1).sum(), f2)
    torch.testing.assert_close(g, g2)
    r = torch.tensor(rotation_about_axis([1, 2, 3], 0.7)).unsqueeze(0).requires_grad_()
    (gr,) = torch.autograd.grad(singular_value_sum(r).sum(), r)
    torch.testing.assert_close(gr, r.detach())  # d Σσ / dF = U Vᵀ = R at a rotation


def test_flow_generator_starts_near_rigid_and_has_the_right_shape():
    flow = FlowGenerator(2, 100, hidden_units=64, n_layers=6)
    z = torch.rand(8, 2) * 3 - 1.5
    out = flow(z)
    assert out.shape == (8, 100, 3)
    assert out.abs().max() < 0.05
    assert sum(isinstance(m, torch.nn.Linear) for m in flow.modules()) == 6
    with pytest.raises(ValueError):
        FlowGenerator(0, 10)


def test_centering_and_noise_injection():
    z = torch.tensor([[0.5, -1.0]])
    assert float(centering_penalty(z, 4.0)) == pytest.approx(0.5**4 + 1.0)
    g = torch.Generator().manual_seed(0)
    noisy = inject_noise(torch.zeros(10000, 2), 0.15, 1.5, generator=g)
    assert float(noisy.std()) == pytest.approx(0.15, rel=0.05)
    assert float(inject_noise(torch.full((100, 1), 1.49), 1.0, 1.5).max()) <= 1.5


def test_nll_is_chi_square_at_the_truth_and_shifts_are_relion_origins():
    d = 48
    model = ImageFormation(d, 2.0, splat_correction=False)
    g = torch.Generator().manual_seed(1)
    clean = torch.randn(64, d, d, generator=g)
    sigma2 = 0.7
    noisy = clean + sigma2**0.5 * torch.randn(64, d, d, generator=g)
    band = model.band(0.5)
    ones = torch.ones(64, d, d // 2 + 1)
    nll = model.nll(model.spectra(clean, ones, torch.zeros(64, 2)), model.observed(noisy), band,
                    sigma2)
    # every Fourier coefficient in the band (counted with its Hermitian twin) adds ½ on average
    assert float(nll.mean()) == pytest.approx(0.5 * float(band.sum()), rel=0.02)
    # a RELION origin s: the observation is the projection moved by -s
    s = torch.tensor([[2.0, -3.0]]).repeat(64, 1)
    moved = shift_images(clean, -s)
    spec = model.spectra(clean, ones, s)
    torch.testing.assert_close(torch.fft.irfft2(spec, s=(d, d)), moved, atol=1e-4, rtol=1e-4)


def test_cropped_spectra_keep_the_noise_level():
    d, small = 64, 32
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(256, d, d, generator=g)
    full = ImageFormation(d, 1.0, splat_correction=False)
    crop = ImageFormation(small, 2.0, splat_correction=False)
    zero = torch.zeros(256, small, small // 2 + 1, dtype=torch.complex64)
    obs = crop_rfft2(torch.fft.rfft2(noise), small)
    # Fourier cropping scales the pixel noise variance by (small/d)²: the NLL stays chi-square
    nll = crop.nll(zero, obs, crop.band(0.4), noise_var=(small / d) ** 2)
    nll_full = full.nll(torch.zeros(256, d, d // 2 + 1, dtype=torch.complex64),
                        torch.fft.rfft2(noise), full.band(0.2), noise_var=1.0)
    assert float(nll.mean()) == pytest.approx(float(nll_full.mean()), rel=0.03)


def test_rigidity_penalty_equals_the_matrix_form_and_its_gradient():
    """The vectorised penalty is Σ_c w_c (tr FᵀF − 2 Σσ(F) + 3) of the 3×3 deformation
    gradients, value and gradient, on random cells and large random displacements."""
    from flexcore.core.model.priors import deformation_gradients

    g = torch.Generator().manual_seed(0)
    pts = torch.rand(40, 3, generator=g, dtype=torch.float64) * 10
    cells = torch.stack([torch.randperm(40, generator=g)[:4] for _ in range(60)])
    e = torch.stack([pts[cells[:, k]] - pts[cells[:, 0]] for k in (1, 2, 3)], dim=-1)
    einv = torch.linalg.inv(e)
    w = torch.rand(60, generator=g, dtype=torch.float64) + 0.5
    disp = (torch.randn(3, 40, 3, generator=g, dtype=torch.float64) * 2).requires_grad_(True)

    def matrix_form(d):
        f = deformation_gradients(pts, cells, einv, d)
        per_cell = (f * f).sum((-2, -1)) - 2.0 * singular_value_sum(f) + 3.0
        return per_cell.clamp_min(0.0).mul(w).sum(-1)

    fast, ref = rigidity_penalty(pts, cells, einv, w, disp), matrix_form(disp)
    assert float(ref.detach().min()) > 1.0  # far from rigid: a real comparison
    assert torch.allclose(fast, ref, rtol=1e-9, atol=0)
    (g_fast,) = torch.autograd.grad(fast.sum(), disp)
    (g_ref,) = torch.autograd.grad(matrix_form(disp).sum(), disp)
    assert torch.allclose(g_fast, g_ref, rtol=1e-8, atol=1e-10)


def test_native_rigidity_matches_the_float64_reference():
    """The CPU kernel (float32 in, double inside) against the PyTorch form in float64: value
    and gradient on random cells far from rigid, near rigid (a rotation plus a little noise)
    and degenerate (flattened cells); threads split the images."""
    from flexcore.core.model.priors import rigidity_penalty_reference
    from flexcore.core.ops.cpu import load_extension, rigidity_penalty_cpu
    from flexcore.core.rotations import random_rotations

    if load_extension() is None:
        pytest.skip("the native CPU kernels did not build here")
    g = torch.Generator().manual_seed(4)
    pts = torch.rand(60, 3, generator=g) * 10
    cells = torch.stack([torch.randperm(60, generator=g)[:4] for _ in range(150)])
    e = torch.stack([pts[cells[:, k]] - pts[cells[:, 0]] for k in (1, 2, 3)], dim=-1)
    keep = torch.linalg.det(e.double()).abs() > 1.0  # well-shaped rest cells
    cells, einv = cells[keep], torch.linalg.inv(e[keep].double()).float()
    w = torch.rand(len(cells), generator=g) + 0.5
    rot = torch.as_tensor(random_rotations(1, 5), dtype=torch.float32)[0]
    flat = pts.clone()
    flat[:, 2] = 0.0
    disp = torch.stack([torch.randn(60, 3, generator=g) * 2,  # far from rigid
                        pts @ rot.T - pts + 1e-3 * torch.randn(60, 3, generator=g),  # near rigid
                        flat - pts,  # every cell flattened: det F = 0
                        torch.zeros(60, 3)])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        live = disp.clone().requires_grad_()
        ours = rigidity_penalty_cpu(pts, cells, einv, w, live)
        (ours * torch.tensor([1.0, 2.0, -0.5, 3.0])).sum().backward()
    finally:
        torch.set_num_threads(before)
    ref_d = disp.double().requires_grad_()
    ref = rigidity_penalty_reference(pts.double(), cells, einv.double(), w.double(), ref_d)
    (ref * torch.tensor([1.0, 2.0, -0.5, 3.0], dtype=torch.float64)).sum().backward()
    assert float(ref[0]) > 10.0 and float(ref[1]) < 0.1 and float(ref[2]) > 1.0
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)
    scale = float(ref_d.grad.abs().max())
    assert float((live.grad.double() - ref_d.grad).abs().max()) < 1e-4 * scale
    assert float(ours[3]) < 1e-6  # at rest: no cost
    # near rigid, where training starts, double precision inside keeps the value the float32
    # form loses to cancellation (t − 2Σσ + 3 of numbers near 3)
    f32 = rigidity_penalty_reference(pts, cells, einv, w, disp)
    assert abs(float(ours[1]) - float(ref[1])) < 0.1 * abs(float(f32[1]) - float(ref[1])) + 1e-9
    # the dispatcher sends float32 CPU inputs to the kernel and float64 ones to the reference
    torch.testing.assert_close(rigidity_penalty(pts, cells, einv, w, disp), ours.detach())
    assert rigidity_penalty(pts.double(), cells, einv.double(), w.double(), disp.double()).dtype \
        == torch.float64
