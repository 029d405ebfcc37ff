"""Physics of the reference push + splat projector (CPU; the CUDA kernel is pinned to it in
``test_ops_cuda.py``): rigid limits, translations, rotations, mass, edges, gradients, and an
independent Fourier-slice projector that pins the rotation convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flexcore.core.mesh.synthetic import lattice_geometry
from flexcore.core.ops import VoxelGeometry, splat_project
from flexcore.core.ops.reference import splat_project_reference
from flexcore.core.rotations import random_rotations


def ball_mask(size: int, radius: float, centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    g = np.arange(size) - size // 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    cx, cy, cz = centre
    return (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= radius ** 2


def as_torch(*arrays, dtype=torch.float64):
    return [torch.as_tensor(np.asarray(a), dtype=torch.int64 if np.asarray(a).dtype.kind == "i"
                            else dtype) for a in arrays]


def blob_problem(size=32, n_cells=8, radius=9.0, sigma=4.0, seed=0):
    """Lattice geometry in a ball with a smooth, asymmetric density (float64 tensors)."""
    coords, vidx, bary, verts = lattice_geometry(size, n_cells, ball_mask(size, radius))
    rng = np.random.default_rng(seed)
    centre = rng.normal(0.0, 1.5, 3)
    density = np.exp(-((coords - centre) ** 2).sum(1) / (2 * sigma ** 2))
    density *= 1 + 0.3 * coords[:, 0] / radius  # asymmetric
    return (*as_torch(density, coords, vidx, bary, verts),)


def rotations(n, seed):
    return torch.as_tensor(random_rotations(n, seed), dtype=torch.float64)


def test_lattice_barycentrics_reproduce_voxel_positions():
    coords, vidx, bary, verts = lattice_geometry(20, 5, ball_mask(20, 8.0))
    np.testing.assert_allclose((bary[:, :, None] * verts[vidx]).sum(1), coords, atol=1e-12)
    assert (bary >= -1e-12).all() and np.allclose(bary.sum(1), 1.0)
    runs = 1 + np.count_nonzero((vidx[1:] != vidx[:-1]).any(1))
    assert runs < len(coords) / 2  # sorted by tetrahedron: long runs


@pytest.mark.parametrize("d", [8, 9])
def test_single_voxel_at_centre_lands_on_centre_pixel(d):
    rot = rotations(4, 1)
    density = torch.tensor([2.5], dtype=torch.float64)
    coords = torch.zeros(1, 3, dtype=torch.float64)
    vidx = torch.zeros(1, 4, dtype=torch.int64)
    bary = torch.tensor([[0.25] * 4], dtype=torch.float64)
    for disp in (None, torch.zeros(4, 1, 3, dtype=torch.float64)):
        img = splat_project_reference(density, VoxelGeometry(coords, vidx, bary), disp, rot, d)
        expected = torch.zeros(4, d, d, dtype=torch.float64)
        expected[:, d // 2, d // 2] = 2.5
        torch.testing.assert_close(img, expected, rtol=0, atol=1e-12)


def test_zero_displacement_equals_rigid_projection():
    density, coords, vidx, bary, verts = blob_problem()
    rot = rotations(3, 2)
    zero = torch.zeros(3, verts.shape[0], 3, dtype=torch.float64)
    rigid = splat_project_reference(density, VoxelGeometry(coords, vidx, bary), None, rot, 32)
    moved = splat_project_reference(density, VoxelGeometry(coords, vidx, bary), zero, rot, 32)
    torch.testing.assert_close(moved, rigid, rtol=0, atol=1e-12)


def test_uniform_translation_shifts_by_whole_pixels():
    density, coords, vidx, bary, verts = blob_problem()
    rot = rotations(3, 3)
    shift = torch.tensor([3.0, -2.0, 0.7], dtype=torch.float64)  # particle frame (x, y, z)
    t = torch.einsum("bji,j->bi", rot, shift)  # A^T s: vertex translation giving (A t)_xy = s_xy
    disp = t[:, None, :].expand(-1, verts.shape[0], -1).contiguous()
    rigid = splat_project_reference(density, VoxelGeometry(coords, vidx, bary), None, rot, 32)
    moved = splat_project_reference(density, VoxelGeometry(coords, vidx, bary), disp, rot, 32)
    expected = torch.roll(rigid, shifts=(-2, 3), dims=(1, 2))  # image[y - 2, x + 3] = rigid[y, x]
    assert rigid[:, :3].abs().max() == 0 and rigid[:, :, -4:].abs().max() == 0  # no wrap-around
    torch.testing.assert_close(moved, expected, rtol=0, atol=1e-10 * rigid.abs().max().item())


def fourier_shift(images: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Translate ``images (..., D, D)`` by ``(sx, sy)`` pixels (band-limited, periodic)."""
    d = images.shape[-1]
    ky = torch.fft.fftfreq(d, dtype=torch.float64)[:, None]
    kx = torch.fft.rfftfreq(d, dtype=torch.float64)[None, :]
    phase = torch.exp(-2j * torch.pi * (kx * sx + ky * sy))
    return torch.fft.irfft2(torch.fft.rfft2(images) * phase, s=(d, d))


def test_uniform_translation_subpixel_matches_fourier_shift():
    density, coords, vidx, bary, verts = blob_problem(size=48, n_cells=8, radius=14.0, sigma=3.5)
    rot = rotations(4, 4)
    shift = torch.tensor([0.37, -0.61, 0.0], dtype=torch.float64)
    t = torch.einsum("bji,j->bi", rot, shift)
    disp = t[:, None, :].expand(-1, verts.shape[0], -1).contiguous()
    rigid = splat_project_reference(density, VoxelGeometry(coords, vidx, bary), None, rot, 48)
    moved = splat_project_reference(density, VoxelGeometry(coords, vidx, bary), disp, rot, 48)
    # Bilinear splatting blurs by a position-dependent amount near Nyquist: compare the band
    # below 0.25 cycles/pixel, away from the edges.
    expected = lowpass(fourier_shift(rigid, 0.37, -0.61), 0.25)
    inner = (slice(None), slice(6, -6), slice(6, -6))
    err = (lowpass(moved, 0.25)[inner] - expected[inner]).norm() / expected[inner].norm()
    assert err < 0.01, f"relative error {err:.3g}"
    # and the sub-pixel shift is really there: the unshifted image is much further away
    assert (lowpass(rigid, 0.25)[inner] - expected[inner]).norm() / expected[inner].norm() > 0.1


def test_rigid_rotation_of_vertices_equals_composed_pose():
    density, coords, vidx, bary, verts = blob_problem()
    a = rotations(3, 5)
    r = rotations(3, 6)
    eye = torch.eye(3, dtype=torch.float64)
    disp = torch.einsum("bij,vj->bvi", r - eye, verts)  # (R - I) p about the box centre
    moved = splat_project_reference(density, VoxelGeometry(coords, vidx, bary), disp, a, 32)
    composed = splat_project_reference(density, VoxelGeometry(coords, vidx, bary), None, a @ r, 32)
    torch.testing.assert_close(moved, composed, rtol=0, atol=1e-10 * composed.abs().max().item())


def in_box_share(p: np.ndarray, d: int) -> np.ndarray:
    """Fraction of a point's bilinear weight (along one axis) that lands inside ``[0, d)``."""
    x0 = np.floor(p)
    t = p - x0
    left = np.where((x0 >= 0) & (x0 < d), 1 - t, 0.0)
    return left + np.where((x0 + 1 >= 0) & (x0 + 1 < d), t, 0.0)


def test_mass_is_conserved_inside_and_cut_at_the_edges():
    d = 16
    rng = np.random.default_rng(7)
    m, b = 400, 5
    coords = rng.uniform(-d, d, size=(m, 3))  # many points outside, some straddling the edges
    density = rng.uniform(0.5, 1.5, size=m)
    rot = random_rotations(b, 8)
    dens_t, coords_t = as_torch(density, coords)
    geometry = VoxelGeometry(coords_t, torch.zeros(m, 4, dtype=torch.int64),
                             torch.full((m, 4), 0.25, dtype=torch.float64))
    img = splat_project_reference(dens_t, geometry, None, torch.as_tensor(rot), d)
    p = np.einsum("bij,mj->bmi", rot[:, :2], coords) + d // 2
    expected = (density * in_box_share(p[..., 0], d) * in_box_share(p[..., 1], d)).sum(1)
    np.testing.assert_allclose(img.sum((1, 2)).numpy(), expected, rtol=1e-12)
    # a blob well inside the box keeps all of its mass
    density, coords, vidx, bary, verts = blob_problem()
    inside = splat_project_reference(density, VoxelGeometry(coords, vidx, bary), None, rotations(3, 9), 32)
    torch.testing.assert_close(inside.sum((1, 2)), density.sum().expand(3), rtol=1e-12, atol=0)


def test_gradient_of_the_in_box_share_at_the_edge():
    d = 10
    density = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    coords = torch.tensor([[d - 1 - d // 2 + 0.25, 0.0, 0.0]], dtype=torch.float64)
    disp = torch.tensor([[[0.25, 0.0, 0.0]]], dtype=torch.float64, requires_grad=True)
    eye = torch.eye(3, dtype=torch.float64)[None]
    vidx = torch.zeros(1, 4, dtype=torch.int64)
    bary = torch.full((1, 4), 0.25, dtype=torch.float64)
    img = splat_project_reference(density, VoxelGeometry(coords, vidx, bary), disp, eye, d)  # px = D - 0.5
    assert img[0, d // 2, d - 1].item() == pytest.approx(1.0)  # half of the mass is inside
    assert img.sum().item() == pytest.approx(1.0)
    w = torch.arange(d * d, dtype=torch.float64).reshape(1, d, d)
    g_density, g_disp = torch.autograd.grad((img * w).sum(), (density, disp))
    assert g_density.item() == pytest.approx(0.5 * w[0, d // 2, d - 1].item())
    # d/dpx of 2 * (1 - tx) * w: the share leaving the box still carries a gradient
    assert g_disp[0, 0, 0].item() == pytest.approx(-2.0 * w[0, d // 2, d - 1].item())
    # d/dpy of 2 * (1 - tx) * ((1 - ty) w[y] + ty w[y + 1]) at ty = 0, x = D - 1
    assert g_disp[0, 0, 1].item() == pytest.approx(
        2.0 * 0.5 * (w[0, d // 2 + 1, d - 1] - w[0, d // 2, d - 1]).item())


def test_gradcheck_tiny():
    rng = np.random.default_rng(11)
    m, b, nv, d = 6, 2, 5, 7
    coords = torch.as_tensor(rng.uniform(-2.5, 2.5, (m, 3)))
    vidx = torch.as_tensor(np.stack([rng.choice(nv, 4, replace=False) for _ in range(m)]))
    bary = torch.as_tensor(rng.dirichlet(np.ones(4), m))
    rot = torch.as_tensor(random_rotations(b, 12))
    density = torch.as_tensor(rng.uniform(0.5, 1.5, m), dtype=torch.float64).requires_grad_()
    disp = torch.as_tensor(rng.normal(0, 0.7, (b, nv, 3))).requires_grad_()

    def fn(dens, dsp):
        return splat_project_reference(dens, VoxelGeometry(coords, vidx, bary), dsp, rot, d)

    assert torch.autograd.gradcheck(fn, (density, disp), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_public_function_runs_the_reference_on_cpu():
    density, coords, vidx, bary, verts = blob_problem()
    rot = rotations(2, 13)
    disp = torch.randn(2, verts.shape[0], 3, dtype=torch.float64) * 0.5
    torch.testing.assert_close(
        splat_project(density, VoxelGeometry(coords, vidx, bary), disp, rot, 32),
        splat_project_reference(density, VoxelGeometry(coords, vidx, bary), disp, rot, 32))
    with pytest.raises(ValueError, match="displacements"):
        splat_project(density, VoxelGeometry(coords, vidx, bary), disp[:1], rot, 32)


def lowpass(images: torch.Tensor, cutoff: float) -> torch.Tensor:
    d = images.shape[-1]
    k2 = torch.fft.fftfreq(d, dtype=torch.float64)[:, None] ** 2 + \
        torch.fft.rfftfreq(d, dtype=torch.float64)[None, :] ** 2
    return torch.fft.irfft2(torch.fft.rfft2(images) * (k2 <= cutoff ** 2), s=(d, d))


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a.flatten() - a.mean()
    b = b.flatten() - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


def test_rotation_convention_matches_fourier_slice_projector():
    tfs = pytest.importorskip("torch_fourier_slice")
    d = 48
    g = torch.arange(d, dtype=torch.float64) - d // 2
    z, y, x = torch.meshgrid(g, g, g, indexing="ij")
    volume = torch.zeros(d, d, d, dtype=torch.float64)
    for (cx, cy, cz), (sx, sy, sz), amp in [((6, -3, 2), (3, 2, 4), 1.0),
                                            ((-7, 5, -4), (2, 4, 2.5), 0.8),
                                            ((2, 8, 9), (4, 2, 2), 0.6)]:
        volume += amp * torch.exp(-((x - cx) / sx) ** 2 / 2 - ((y - cy) / sy) ** 2 / 2
                                  - ((z - cz) / sz) ** 2 / 2)
    coords = torch.stack([x, y, z], -1).reshape(-1, 3)
    density = volume.reshape(-1)
    m = density.shape[0]
    rot = rotations(3, 14)
    geometry = VoxelGeometry(coords, torch.zeros(m, 4, dtype=torch.int64),
                             torch.full((m, 4), 0.25, dtype=torch.float64))
    ours = splat_project_reference(density, geometry, None, rot, d)
    theirs = tfs.project_3d_to_2d(volume.float(), rotation_matrices=rot.transpose(1, 2).float())
    wrong = tfs.project_3d_to_2d(volume.float(), rotation_matrices=rot.float())
    for i in range(rot.shape[0]):
        a = lowpass(ours[i], 0.2)
        assert correlation(a, lowpass(theirs[i].double(), 0.2)) > 0.99
        assert correlation(a, lowpass(wrong[i].double(), 0.2)) < 0.9


def test_pull_variant_agrees_with_push_for_rigid_and_integer_translations():
    """W(x) = V(x − u(x)): zero flow reproduces the rigid projection; a whole-voxel
    translation of a density well inside the mask moves it like the push model does."""
    from flexcore.core.ops import pull_project_reference

    size = 32
    coords, vidx, bary, verts = lattice_geometry(size, 8, ball_mask(size, 13.0))
    coords_t, vidx_t, bary_t = as_torch(coords, vidx, bary, dtype=torch.float32)
    g = np.arange(size) - size // 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    volume = torch.as_tensor(np.exp(-((x - 1) ** 2 + (y + 1) ** 2 + z**2) / 8.0), dtype=torch.float32)
    flat = volume.flatten()
    idx = torch.as_tensor((coords[:, 2] + size // 2) * size * size + (coords[:, 1] + size // 2) * size
                          + coords[:, 0] + size // 2, dtype=torch.long)
    density = flat[idx]
    rot = rotations(2, 5).float()
    nv = verts.shape[0]
    push = splat_project_reference(density, VoxelGeometry(coords_t, vidx_t, bary_t), None, rot, size)
    pull = pull_project_reference(volume, VoxelGeometry(coords_t, vidx_t, bary_t), None, rot, size)
    torch.testing.assert_close(pull, push, atol=1e-5, rtol=1e-5)
    t = torch.tensor([2.0, -1.0, 1.0])
    disp = t.expand(2, nv, 3).contiguous()
    push_t = splat_project_reference(density, VoxelGeometry(coords_t, vidx_t, bary_t), disp, rot, size)
    pull_t = pull_project_reference(volume, VoxelGeometry(coords_t, vidx_t, bary_t), disp, rot, size)
    assert float((pull_t - push_t).abs().max()) < 1e-3 * float(push_t.abs().max())
    assert float((pull_t - push).abs().max()) > 0.1 * float(push.abs().max())  # it did move
