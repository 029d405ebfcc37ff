"""CUDA push + splat kernels against the float64 reference (forward and both gradients),
over sizes, paths and tuning values; plus CPU checks of the slot layout the kernels read.

Gradients with respect to displacements jump where a point crosses a pixel line (the
bilinear weights' derivative is discontinuous there), so float32 kernel positions and
float64 reference positions may disagree for points within ~1e-5 pixel of a line. The
comparisons zero the density of voxels that come within ``EDGE_EPS`` of a pixel line in any
image (a few per cent of them); everything else must agree to ``TOL`` in relative norm.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flexcore.core.ops import VoxelGeometry, backend_for, splat_project
from flexcore.core.ops.cuda import (
    SplatTuning,
    build_slot_layout,
    choose_piece_len,
    launch_plan,
    load_extension,
    splat_project_cuda,
)
from flexcore.core.ops.reference import interpolate_displacements, splat_project_reference
from flexcore.core.rotations import random_rotations

TOL = 1e-4
EDGE_EPS = 2e-4


@pytest.fixture(scope="module")
def ext():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device (torch.cuda.is_available() is False)")
    module = load_extension()
    if module is None:
        pytest.skip("the CUDA splat extension did not build (see the warning in the log)")
    return module


def random_problem(d, b, m, nv, *, disp=True, spread=0.3, run_len=30, shuffle=False, seed=0,
                   device="cuda"):
    """Voxels in runs sharing 4 random vertices (sorted like the mesh's voxel→tet map),
    coordinates uniform in ``±spread·D`` per axis, random poses and displacements."""
    g = torch.Generator().manual_seed(seed)
    coords = (torch.rand(m, 3, generator=g) * 2 - 1) * spread * d
    n_tets = max(1, m // run_len)
    tet = torch.sort(torch.randint(0, n_tets, (m,), generator=g)).values
    vidx = torch.randint(0, nv, (n_tets, 4), generator=g)[tet].to(torch.int32)
    bary = -torch.log(torch.rand(m, 4, generator=g).clamp_min(1e-12))
    bary = bary / bary.sum(1, keepdim=True)
    density = torch.rand(m, generator=g) + 0.5
    density[torch.rand(m, generator=g) < 0.01] = 0.0  # exact zeros are skipped by the forward
    if shuffle:
        perm = torch.randperm(m, generator=g)
        coords, vidx, bary, density = coords[perm], vidx[perm], bary[perm], density[perm]
    rot = torch.as_tensor(random_rotations(b, seed), dtype=torch.float32)
    dsp = torch.randn(b, nv, 3, generator=g) * 1.5 if disp else None
    out = [density, coords, vidx, bary, dsp, rot]
    return [None if t is None else t.to(device) for t in out]


def away_from_pixel_lines(density, coords, vidx, bary, disp, rot, d, eps=EDGE_EPS):
    """Density with voxels that land within ``eps`` of a pixel line (any image) set to 0."""
    pos = coords.double()[None].expand(rot.shape[0], -1, -1)
    if disp is not None:
        geometry = VoxelGeometry(coords, vidx.long(), bary.double())
        pos = pos + interpolate_displacements(geometry, disp.double())
    p = torch.einsum("bij,bmj->bmi", rot[:, :2].double(), pos) + d // 2
    near = ((p - p.round()).abs() < eps).any(-1).any(0)
    return torch.where(near, torch.zeros_like(density), density)


def rel_err(a, b) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def run_both(density, coords, vidx, bary, disp, rot, d, tuning=None, seed=1):
    """Kernel (float32) and reference (float64) images and gradients of a random linear
    functional ``Σ W · image``."""
    gen = torch.Generator(device=density.device).manual_seed(seed)
    w = torch.randn(rot.shape[0], d, d, generator=gen, device=density.device)
    results = []
    for kernel in (True, False):
        dt = torch.float32 if kernel else torch.float64
        dens = density.to(dt).clone().requires_grad_()
        dsp = None if disp is None else disp.to(dt).clone().requires_grad_()
        args = (dens, VoxelGeometry(coords.to(dt), vidx, bary.to(dt)), dsp, rot.to(dt), d)
        img = splat_project_cuda(*args, tuning=tuning) if kernel else splat_project_reference(*args)
        wanted = [dens] if dsp is None else [dens, dsp]
        grads = torch.autograd.grad((img * w.to(dt)).sum(), wanted)
        results.append((img.detach(), *grads))
    return results


def check_case(density, coords, vidx, bary, disp, rot, d, tuning=None):
    density = away_from_pixel_lines(density, coords, vidx, bary, disp, rot, d)
    ours, ref = run_both(density, coords, vidx, bary, disp, rot, d, tuning)
    names = ["image", "grad_density", "grad_displacements"]
    for name, a, b in zip(names, ours, ref):
        assert torch.isfinite(a).all(), f"{name}: non-finite values"
        err = rel_err(a, b)
        assert err < TOL, f"{name}: relative error {err:.3g} (tuning {tuning})"
    # mass: every image's total equals the reference's (a missed or doubled write shows here)
    torch.testing.assert_close(ours[0].double().sum((1, 2)), ref[0].sum((1, 2)), rtol=1e-5,
                               atol=1e-6 * float(density.abs().sum()))


CASES = {
    # id: (D, B, M, Nv, displacements, spread, run length, shuffled, tuning)
    "tiny": (16, 1, 100, 20, True, 0.3, 10, False, None),
    "many-outside": (33, 7, 5_000, 200, True, 0.9, 25, False, None),
    "d64": (64, 64, 50_000, 1_500, True, 0.3, 30, False, None),
    "rigid": (64, 7, 20_000, 500, False, 0.45, 30, False, None),
    "d128": (128, 64, 200_000, 3_000, True, 0.3, 40, False, None),
    "unsorted": (128, 7, 100_000, 3_000, True, 0.3, 40, True, None),
    "auto-path-d256": (256, 7, 100_000, 3_000, True, 0.3, 40, False, None),
    "global-d64": (64, 64, 50_000, 1_500, True, 0.45, 30, False, SplatTuning(path="global")),
    "global-rigid": (48, 9, 20_000, 100, False, 0.45, 30, False, SplatTuning(path="global")),
    "fixed-d64": (64, 64, 50_000, 1_500, True, 0.45, 30, False, SplatTuning(path="fixed")),
    "fixed-d128": (128, 64, 200_000, 3_000, True, 0.3, 40, False, SplatTuning(path="fixed")),
    "fixed-rigid": (64, 7, 20_000, 500, False, 0.45, 30, False, SplatTuning(path="fixed")),
    "fixed-unsorted": (128, 7, 100_000, 3_000, True, 0.3, 40, True, SplatTuning(path="fixed")),
}


@pytest.mark.cuda
@pytest.mark.parametrize("case", list(CASES))
def test_kernel_matches_reference(ext, case):
    d, b, m, nv, disp, spread, run_len, shuffle, tuning = CASES[case]
    problem = random_problem(d, b, m, nv, disp=disp, spread=spread, run_len=run_len,
                             shuffle=shuffle, seed=list(CASES).index(case))
    check_case(*problem, d, tuning)


@pytest.mark.cuda
def test_kernel_matches_reference_on_a_lattice_mesh(ext):
    from test_ops_reference import ball_mask

    from flexcore.core.mesh.synthetic import lattice_geometry

    d = 64
    coords, vidx, bary, verts = lattice_geometry(d, 20, ball_mask(d, 0.35 * d))
    rng = np.random.default_rng(3)
    dev = "cuda"
    density = torch.as_tensor(rng.uniform(0.5, 1.5, len(coords)), dtype=torch.float32, device=dev)
    rot = torch.as_tensor(random_rotations(32, 4), dtype=torch.float32, device=dev)
    disp = torch.as_tensor(rng.normal(0, 1.0, (32, len(verts), 3)), dtype=torch.float32,
                           device=dev)
    check_case(density, torch.as_tensor(coords, dtype=torch.float32, device=dev),
               torch.as_tensor(vidx, dtype=torch.int32, device=dev),
               torch.as_tensor(bary, dtype=torch.float32, device=dev), disp, rot, d)


TUNINGS = [
    SplatTuning(images_per_block=1, threads=32, piece_len=1),
    SplatTuning(images_per_block=2, threads=128, piece_len=3, tiles_per_block=1),
    SplatTuning(images_per_block=3, threads=512, piece_len=8, tiles_per_block=7),
    SplatTuning(images_per_block=4, threads=256, piece_len=32),
    SplatTuning(images_per_block=4, tiles_per_block=1_000_000),  # one chunk: plain stores
    SplatTuning(images_per_block=2, path="global", piece_len=16, tiles_per_block=3),
    SplatTuning(images_per_block=4, path="global", threads=64, piece_len=2),
    SplatTuning(images_per_block=1, path="shared", threads=96, piece_len=5),
    SplatTuning(images_per_block=3, path="fixed", threads=512, piece_len=8, tiles_per_block=7),
    SplatTuning(images_per_block=4, path="fixed", tiles_per_block=1_000_000),  # one chunk
    SplatTuning(images_per_block=1, path="fixed", threads=64, piece_len=1),
]


@pytest.mark.cuda
@pytest.mark.parametrize("tuning", TUNINGS, ids=str)
def test_tuning_values_give_the_same_result(ext, tuning):
    check_case(*random_problem(48, 13, 30_000, 800, spread=0.6, seed=21), 48, tuning)


@pytest.mark.cuda
@pytest.mark.parametrize("path", ["shared", "global", "fixed"])
def test_single_image_group(ext, path):
    # B <= G: one image group, so grad_density is stored, not accumulated
    tuning = SplatTuning(images_per_block=4, tiles_per_block=1_000_000, path=path)
    check_case(*random_problem(40, 3, 20_000, 300, spread=0.5, seed=22), 40, tuning)


@pytest.mark.cuda
def test_shared_path_at_a_large_image(ext):
    d = 200
    need = (d + 2) ** 2 * 4
    optin = getattr(torch.cuda.get_device_properties(0), "shared_memory_per_block_optin", 0)
    if optin and optin < need:
        pytest.skip(f"{need} bytes of shared memory per block needed, device has {optin}")
    tuning = SplatTuning(images_per_block=1, path="shared")
    check_case(*random_problem(d, 5, 100_000, 2_000, seed=23), d, tuning)


@pytest.mark.cuda
@pytest.mark.parametrize("which", ["density", "displacements"])
def test_only_the_requested_gradient(ext, which):
    density, coords, vidx, bary, disp, rot = random_problem(48, 9, 20_000, 400, seed=24)
    density = away_from_pixel_lines(density, coords, vidx, bary, disp, rot, 48)
    w = torch.randn(9, 48, 48, device="cuda")
    dens = density.clone().requires_grad_(which == "density")
    dsp = disp.clone().requires_grad_(which == "displacements")
    img = splat_project_cuda(dens, VoxelGeometry(coords, vidx, bary), dsp, rot, 48)
    (grad,) = torch.autograd.grad((img * w).sum(), [dens if which == "density" else dsp])
    ref_in = [density.double().requires_grad_(which == "density"),
              disp.double().requires_grad_(which == "displacements")]
    ref = splat_project_reference(ref_in[0], VoxelGeometry(coords.double(), vidx, bary.double()), ref_in[1],
                                  rot.double(), 48)
    (ref_grad,) = torch.autograd.grad((ref * w.double()).sum(),
                                      [ref_in[0] if which == "density" else ref_in[1]])
    assert rel_err(grad, ref_grad) < TOL


@pytest.mark.cuda
@pytest.mark.parametrize("path", ["shared", "fixed"])
def test_mass_is_conserved_inside_the_box(ext, path):
    density, coords, vidx, bary, disp, rot = random_problem(64, 16, 40_000, 500, spread=0.2,
                                                            seed=25)
    # |x| <= 0.2 * 64 * sqrt(3) = 22.2 and |u| < 4 voxels: every point lands well inside
    img = splat_project_cuda(density, VoxelGeometry(coords, vidx, bary), 0.3 * disp, rot, 64,
                             tuning=SplatTuning(path=path))
    torch.testing.assert_close(img.double().sum((1, 2)), density.double().sum().expand(16),
                               rtol=1e-5, atol=0)


@pytest.mark.cuda
def test_fixed_point_cannot_overflow_when_all_mass_lands_on_one_pixel(ext):
    """The worst case for 32-bit fixed point: every voxel of a chunk, each of large density,
    on one pixel (an extreme compression by the flow). The chunk's scale keeps the sum below
    2^31 whatever the densities; a wrapped integer would be off by far more than 1e-3."""
    m, d = 4096, 32
    coords = torch.tensor([0.3, -0.2, 0.0], device="cuda").expand(m, 3).contiguous()
    vidx = torch.zeros(m, 4, dtype=torch.int32, device="cuda")
    bary = torch.full((m, 4), 0.25, device="cuda")
    density = torch.full((m,), 1e6, device="cuda")
    density[::7] = -3e5  # signed densities: the scale bounds the sum of |density|
    rot = torch.eye(3, device="cuda").expand(3, 3, 3).contiguous()
    ref = splat_project_reference(density.double(), VoxelGeometry(coords.double(), vidx, bary.double()), None,
                                  rot.double(), d)
    for tiles in (1, 1_000_000):  # many chunks, one chunk
        t = SplatTuning(path="fixed", tiles_per_block=tiles)
        img = splat_project_cuda(density, VoxelGeometry(coords, vidx, bary), None, rot, d, tuning=t)
        # each voxel holds ~2^30 / 4096 units; a corner share of >= 0.06 rounds by <= 2 units
        assert rel_err(img, ref) < 1e-3, f"tiles_per_block={tiles}"


@pytest.mark.cuda
def test_fixed_point_rounding_is_bounded_by_the_chunk_mass(ext):
    """Against the float path (same positions): each voxel-image adds at most 3.5 units of
    rounding (0.5 for three corners, 2 for the remainder), a unit being the chunk's total
    |density| / 2^30; so one voxel 10^4 times the others does not wipe out the others."""
    density, coords, vidx, bary, disp, rot = random_problem(64, 8, 50_000, 1_000, seed=31)
    density[123] = 1e4 * float(density.max())
    one_chunk = dict(tiles_per_block=1_000_000)
    fixed = splat_project_cuda(density, VoxelGeometry(coords, vidx, bary), disp, rot, 64,
                               tuning=SplatTuning(path="fixed", **one_chunk)).double()
    flt = splat_project_cuda(density, VoxelGeometry(coords, vidx, bary), disp, rot, 64,
                             tuning=SplatTuning(path="shared", **one_chunk)).double()
    unit = float(density.double().abs().sum()) * 2.0 ** -30
    l1 = (fixed - flt).abs().sum((1, 2))
    assert (l1 <= 3.5 * 50_000 * unit + 1e-5 * flt.abs().sum((1, 2))).all()
    small = density.clone()
    small[123] = 0
    small_img = splat_project_cuda(small, VoxelGeometry(coords, vidx, bary), disp, rot, 64).double()
    assert float((fixed - flt).norm() / small_img.norm()) < 1e-4


@pytest.mark.cuda
def test_fixed_point_forward_is_bitwise_reproducible(ext):
    # integer atomics commute: with one voxel chunk the forward does not depend on the order
    problem = random_problem(64, 32, 50_000, 1_000, spread=0.4, seed=32)
    t = SplatTuning(path="fixed", tiles_per_block=1_000_000)
    density, coords, vidx, bary, disp, rot = problem
    geometry = VoxelGeometry(coords, vidx, bary)
    first = splat_project_cuda(density, geometry, disp, rot, 64, tuning=t)
    for _ in range(3):
        assert torch.equal(splat_project_cuda(density, geometry, disp, rot, 64, tuning=t), first)


@pytest.mark.cuda
def test_fixed_point_passes_non_finite_densities_on(ext):
    density, coords, vidx, bary, disp, rot = random_problem(32, 4, 5_000, 100, seed=33)
    density[10] = float("nan")
    img = splat_project_cuda(density, VoxelGeometry(coords, vidx, bary), disp, rot, 32,
                             tuning=SplatTuning(path="fixed"))
    assert not torch.isfinite(img).all()


@pytest.mark.cuda
def test_repeated_runs_agree_to_rounding(ext):
    problem = random_problem(64, 32, 50_000, 1_000, spread=0.4, seed=26)
    first = run_both(*problem, 64)[0]
    for _ in range(2):
        again = run_both(*problem, 64)[0]
        for a, b in zip(again, first):
            assert rel_err(a, b) < 1e-5  # atomics reorder sums; a race would move far more


@pytest.mark.cuda
def test_public_function_dispatches_to_the_kernel(ext):
    density, coords, vidx, bary, disp, rot = random_problem(32, 4, 5_000, 100, seed=27)
    assert backend_for(density.device) == "cuda"
    torch.testing.assert_close(splat_project(density, VoxelGeometry(coords, vidx, bary), disp, rot, 32),
                               splat_project_cuda(density, VoxelGeometry(coords, vidx, bary), disp, rot, 32),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
def test_bad_tuning_and_bad_vertex_indices_raise(ext):
    density, coords, vidx, bary, disp, rot = random_problem(32, 4, 5_000, 100, seed=28)
    with pytest.raises(RuntimeError, match="no launch plan"):
        splat_project_cuda(density, VoxelGeometry(coords, vidx, bary), disp, rot, 32,
                           tuning=SplatTuning(images_per_block=9))
    with pytest.raises(ValueError, match="vertex_index"):
        splat_project_cuda(density, VoxelGeometry(coords, vidx, bary), disp[:, :50].contiguous(), rot, 32)


@pytest.mark.cuda
@pytest.mark.parametrize("d,path", [(128, "shared"), (256, "global")])
def test_offsets_past_two_to_the_31(ext, d, path):
    """B · D² > 2³¹: the last images must land (and be read) where they belong."""
    b = 2 ** 31 // (d * d) + 3
    free, _ = torch.cuda.mem_get_info()
    if free < 4 * b * d * d * 4:
        pytest.skip(f"needs about {4 * b * d * d * 4 / 2**30:.0f} GiB of free GPU memory")
    density, coords, vidx, bary, _, _ = random_problem(d, 1, 2_000, 50, seed=29)
    rot = torch.as_tensor(random_rotations(b, 30), dtype=torch.float32, device="cuda")
    disp = torch.randn(b, 50, 3, device="cuda")
    dens = density.clone().requires_grad_()
    img = splat_project_cuda(dens, VoxelGeometry(coords, vidx, bary), disp, rot, d,
                             tuning=SplatTuning(path=path))
    w = torch.zeros_like(img)
    w[-1] = torch.randn(d, d, device="cuda")
    (grad,) = torch.autograd.grad(img, dens, grad_outputs=w)
    pick = [0, b - 2, b - 1]
    ref_dens = density.double().requires_grad_()
    ref = splat_project_reference(ref_dens, VoxelGeometry(coords.double(), vidx, bary.double()),
                                  disp[pick].double(), rot[pick].double(), d)
    assert rel_err(img[pick], ref) < TOL
    (ref_grad,) = torch.autograd.grad(ref[-1], ref_dens, grad_outputs=w[-1].double())
    assert rel_err(grad, ref_grad) < TOL
    del img, w, grad
    torch.cuda.empty_cache()


# ---- CPU checks of the slot layout (run everywhere) -------------------------------------


def test_load_extension_never_raises():
    module = load_extension()
    assert module is None or hasattr(module, "forward")


@pytest.mark.parametrize("piece_len", [1, 3, 16, 0])
@pytest.mark.parametrize("shuffle", [False, True])
def test_slot_layout_is_a_padded_permutation_of_the_voxels(piece_len, shuffle):
    _, _, vidx, _, _, _ = random_problem(16, 1, 3_001, 60, run_len=23, shuffle=shuffle, seed=5,
                                         device="cpu")
    m = vidx.shape[0]
    lay = build_slot_layout(vidx, piece_len)
    r = lay.piece_len
    assert lay.slot_src.shape == (lay.n_tiles * 32 * r,)
    assert lay.piece_vidx.shape == (lay.n_tiles * 32, 4)
    assert torch.equal(lay.slot_src[lay.voxel_slot], torch.arange(m))
    valid = lay.slot_src < m
    assert int(valid.sum()) == m  # every voxel in exactly one slot, the rest padding
    slots = valid.nonzero().squeeze(1)
    piece = (slots // (32 * r)) * 32 + slots % 32
    step = (slots % (32 * r)) // 32
    src = lay.slot_src[slots]
    # a slot's voxel has the vertex indices of its piece ...
    assert torch.equal(lay.piece_vidx[piece], vidx[src])
    # ... and a piece holds consecutive voxels, in order, at most piece_len of them
    order = torch.argsort(piece * (r + 1) + step)
    p_sorted, s_sorted, v_sorted = piece[order], step[order], src[order]
    same = p_sorted[1:] == p_sorted[:-1]
    assert torch.equal(v_sorted[1:][same], v_sorted[:-1][same] + 1)
    assert torch.equal(s_sorted[1:][same], s_sorted[:-1][same] + 1)
    assert int(step.max()) < r


def test_piece_length_follows_the_run_length():
    assert choose_piece_len(torch.full((100,), 44)) == 16
    assert choose_piece_len(torch.ones(100, dtype=torch.int64)) == 1
    assert choose_piece_len(torch.full((100,), 7)) == 8
    assert build_slot_layout(torch.zeros(0, 4, dtype=torch.int32)).n_tiles == 0


def test_launch_plan_needs_the_extension_or_says_so():
    if load_extension() is None:
        with pytest.raises(RuntimeError, match="unavailable"):
            launch_plan(8, 64, 10, 16, has_disp=True)
    else:
        plan = launch_plan(8, 64, 10, 16, has_disp=True)
        assert plan["path"] in ("shared", "global") and plan["threads"] % 32 == 0


def test_tuning_paths_match_the_kernel_enum():
    import re

    from flexcore.core.ops.cuda import CSRC, PATHS

    enum = re.search(r"enum SplatPath : int \{([^}]*)\}", (CSRC / "splat.h").read_text())
    values = {name.lower(): int(v) for name, v in re.findall(r"kPath(\w+) = (\d+)", enum.group(1))}
    assert values == PATHS
    assert SplatTuning(path="fixed").launch_args()[3] == PATHS["fixed"]
    with pytest.raises(ValueError, match="path must be one of"):
        SplatTuning(path="fast").launch_args()
