"""Native CPU push + splat kernels against the float64 reference (forward and both
gradients) over sizes, batch sizes that do and do not fill the kernel's image groups, rigid
and unsorted voxels; physics (mass, zero flow), a gradcheck, thread counts, the dispatch and
the fallback when the extension is unavailable.

Skipped, with the reason, where the extension cannot be built (no C++ compiler or ninja).
Voxels within ``EDGE_EPS`` of a pixel line get zero density in the comparisons (see
``test_ops_cuda.py``: the derivative of the bilinear weights jumps there).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from test_ops_cuda import TOL, away_from_pixel_lines, random_problem, rel_err

from flexcore.core.ops import VoxelGeometry, backend_for, splat_project
from flexcore.core.ops import cpu as cpu_backend
from flexcore.core.ops.cpu import SplatProjectCPUFunction, splat_project_cpu
from flexcore.core.ops.reference import splat_project_reference
from flexcore.core.rotations import random_rotations


@pytest.fixture(scope="module")
def ext():
    module = cpu_backend.load_extension()
    if module is None:
        pytest.skip("the native CPU splat extension did not build (no C++ compiler or ninja?); "
                    f"see {cpu_backend.build_directory() / 'last_build_error.txt'}")
    return module


def run_both(density, coords, vidx, bary, disp, rot, d, seed=1):
    """Native (float32) and reference (float64) images and the gradients of a random linear
    functional ``Σ W · image``."""
    w = torch.randn(rot.shape[0], d, d, generator=torch.Generator().manual_seed(seed))
    results = []
    for native in (True, False):
        dt = torch.float32 if native else torch.float64
        dens = density.to(dt).clone().requires_grad_()
        dsp = None if disp is None else disp.to(dt).clone().requires_grad_()
        args = (dens, VoxelGeometry(coords.to(dt), vidx, bary.to(dt)), dsp, rot.to(dt), d)
        img = splat_project_cpu(*args) if native else splat_project_reference(*args)
        wanted = [dens] if dsp is None else [dens, dsp]
        grads = torch.autograd.grad((img * w.to(dt)).sum(), wanted)
        results.append((img.detach(), *grads))
    return results


CASES = {
    # id: (D, B, M, Nv, displacements, spread, run length, shuffled)
    "tiny": (16, 1, 100, 20, True, 0.3, 10, False),
    "many-outside": (33, 7, 5_000, 200, True, 0.9, 25, False),
    "odd-size-partial-group": (47, 13, 20_000, 300, True, 0.35, 30, False),
    "d64": (64, 24, 50_000, 1_500, True, 0.3, 5, False),
    "few-images-split-voxels": (64, 3, 30_000, 800, True, 0.3, 30, False),
    "rigid": (64, 9, 20_000, 500, False, 0.45, 30, False),
    "unsorted": (48, 10, 20_000, 600, True, 0.3, 30, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_native_matches_float64_reference(ext, case):
    d, b, m, nv, disp, spread, run_len, shuffle = CASES[case]
    problem = random_problem(d, b, m, nv, disp=disp, spread=spread, run_len=run_len,
                             shuffle=shuffle, seed=100 + list(CASES).index(case), device="cpu")
    density = away_from_pixel_lines(*problem, d)
    before = torch.get_num_threads()
    if case == "few-images-split-voxels":  # one image group, 2 threads: voxels are split
        torch.set_num_threads(2)
    try:
        ours, ref = run_both(density, *problem[1:], d)
    finally:
        torch.set_num_threads(before)
    for name, a, r in zip(["image", "grad_density", "grad_displacements"], ours, ref):
        assert a.dtype == torch.float32 and torch.isfinite(a).all(), name
        err = rel_err(a, r)
        assert err < TOL, f"{name}: relative error {err:.3g}"
    # every image's total equals the reference's (a missed or doubled record shows here)
    torch.testing.assert_close(ours[0].double().sum((1, 2)), ref[0].sum((1, 2)), rtol=1e-5,
                               atol=1e-6 * float(density.abs().sum()))


def test_lattice_mesh_matches_reference(ext):
    from test_ops_reference import ball_mask

    from flexcore.core.mesh.synthetic import lattice_geometry

    d = 40
    coords, vidx, bary, verts = lattice_geometry(d, 10, ball_mask(d, 0.35 * d))
    rng = np.random.default_rng(3)
    problem = [torch.as_tensor(rng.uniform(0.5, 1.5, len(coords)), dtype=torch.float32),
               torch.as_tensor(coords, dtype=torch.float32),
               torch.as_tensor(vidx, dtype=torch.int64),  # int64 indices, as the mesh gives
               torch.as_tensor(bary, dtype=torch.float32),
               torch.as_tensor(rng.normal(0, 1.0, (11, len(verts), 3)), dtype=torch.float32),
               torch.as_tensor(random_rotations(11, 4), dtype=torch.float32)]
    density = away_from_pixel_lines(*problem, d)
    ours, ref = run_both(density, *problem[1:], d)
    for name, a, r in zip(["image", "grad_density", "grad_displacements"], ours, ref):
        assert rel_err(a, r) < TOL, name


def test_mass_is_conserved_inside_the_box(ext):
    density, coords, vidx, bary, disp, rot = random_problem(48, 10, 8_000, 100, spread=0.2,
                                                            seed=7, device="cpu")
    img = splat_project_cpu(density, VoxelGeometry(coords, vidx, bary), disp * 0.5, rot, 48)
    # every point lands well inside (|p| < 0.35 D + 3 displacement σ), so all mass arrives
    torch.testing.assert_close(img.double().sum((1, 2)),
                               density.double().sum().expand(10), rtol=1e-5, atol=0)


def test_zero_flow_is_the_rigid_projection(ext):
    density, coords, vidx, bary, disp, rot = random_problem(40, 9, 6_000, 80, seed=8,
                                                            device="cpu")
    geometry = VoxelGeometry(coords, vidx, bary)
    rigid = splat_project_cpu(density, geometry, None, rot, 40)
    zero = splat_project_cpu(density, geometry, torch.zeros_like(disp), rot, 40)
    torch.testing.assert_close(zero, rigid, rtol=0, atol=1e-6)
    ref = splat_project_reference(density.double(), geometry.to(dtype=torch.float64), None,
                                  rot.double(), 40)
    assert rel_err(rigid, ref) < TOL


def test_gradcheck_tiny(ext):
    """Finite differences of the float32 kernel (steps small against the distance to pixel
    lines, tolerances of float32)."""
    density, coords, vidx, bary, disp, rot = random_problem(12, 3, 40, 8, seed=9, device="cpu")
    density = away_from_pixel_lines(density, coords, vidx, bary, disp, rot, 12, eps=0.05)
    dens = density.clone().requires_grad_()
    dsp = disp.clone().requires_grad_()

    def fn(dn, ds):
        return SplatProjectCPUFunction.apply(dn, coords, vidx, bary, ds, rot, 12)

    with pytest.warns(UserWarning, match="double precision"):
        ok = torch.autograd.gradcheck(fn, (dens, dsp), eps=1e-3, atol=2e-3, rtol=2e-2)
    assert ok


def test_only_the_requested_gradient(ext):
    density, coords, vidx, bary, disp, rot = random_problem(24, 5, 2_000, 40, seed=10,
                                                            device="cpu")
    geometry = VoxelGeometry(coords, vidx, bary)
    dens = density.clone().requires_grad_()
    (g,) = torch.autograd.grad(splat_project_cpu(dens, geometry, disp, rot, 24).sum(), [dens])
    assert g.shape == density.shape and g.abs().sum() > 0
    dsp = disp.clone().requires_grad_()
    (g,) = torch.autograd.grad(splat_project_cpu(density, geometry, dsp, rot, 24).sum(), [dsp])
    assert g.shape == disp.shape


def test_thread_counts_agree(ext):
    density, coords, vidx, bary, disp, rot = random_problem(32, 20, 10_000, 200, seed=11,
                                                            device="cpu")
    geometry = VoxelGeometry(coords, vidx, bary)
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            dsp = disp.clone().requires_grad_()
            img = splat_project_cpu(density, geometry, dsp, rot, 32)
            (g,) = torch.autograd.grad((img * img).sum(), [dsp])
            outs.append((img, g))
    finally:
        torch.set_num_threads(before)
    for img, g in outs[1:]:
        torch.testing.assert_close(img, outs[0][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(g, outs[0][1], rtol=1e-4, atol=1e-4)


def test_empty_batch_and_no_voxels(ext):
    density, coords, vidx, bary, disp, rot = random_problem(16, 3, 200, 10, seed=15,
                                                            device="cpu")
    geometry = VoxelGeometry(coords, vidx, bary)
    assert splat_project_cpu(density, geometry, disp[:0], rot[:0], 16).shape == (0, 16, 16)
    none = VoxelGeometry(coords[:0], vidx[:0], bary[:0])
    dens = density[:0].clone().requires_grad_()
    dsp = disp.clone().requires_grad_()
    img = splat_project_cpu(dens, none, dsp, rot, 16)
    assert img.shape == (3, 16, 16) and not img.any()
    g_dens, g_disp = torch.autograd.grad(img.sum(), [dens, dsp])
    assert g_dens.shape == (0,) and g_disp.shape == disp.shape and not g_disp.any()


def test_out_of_range_vertex_indices_raise(ext):
    density, coords, vidx, bary, disp, rot = random_problem(24, 2, 1_000, 40, seed=12,
                                                            device="cpu")
    with pytest.raises(RuntimeError, match="vertex_index values must lie in"):
        splat_project_cpu(density, VoxelGeometry(coords, vidx, bary), disp[:, :20].contiguous(),
                          rot, 24)


def test_dispatch_picks_native_for_float32_cpu(ext, monkeypatch):
    density, coords, vidx, bary, disp, rot = random_problem(24, 4, 2_000, 40, seed=13,
                                                            device="cpu")
    geometry = VoxelGeometry(coords, vidx, bary)
    monkeypatch.delenv("FLEXCORE_OPS_BACKEND", raising=False)
    assert backend_for(torch.device("cpu")) == "cpu"
    torch.testing.assert_close(splat_project(density, geometry, disp, rot, 24),
                               splat_project_cpu(density, geometry, disp, rot, 24),
                               rtol=0, atol=0)
    # float64 inputs keep the float64 reference
    args64 = (density.double(), geometry.to(dtype=torch.float64), disp.double(), rot.double(), 24)
    torch.testing.assert_close(splat_project(*args64), splat_project_reference(*args64),
                               rtol=0, atol=0)
    monkeypatch.setenv("FLEXCORE_OPS_BACKEND", "reference")
    assert backend_for(torch.device("cpu")) == "reference"
    torch.testing.assert_close(splat_project(density, geometry, disp, rot, 24),
                               splat_project_reference(density, geometry, disp, rot, 24),
                               rtol=0, atol=0)


def test_build_folder_follows_the_sources(tmp_path, monkeypatch):
    src = tmp_path / "csrc"
    src.mkdir()
    for f in cpu_backend.CSRC.glob("*cpu*"):
        (src / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(cpu_backend, "CSRC", src)
    monkeypatch.setenv("FLEXCORE_BUILD_DIR", str(tmp_path / "build"))
    first = cpu_backend.build_directory()
    assert first.parent == tmp_path / "build" and first.name.startswith("cpu-")
    (src / "splat_cpu_impl.h").write_text((src / "splat_cpu_impl.h").read_text() + "\n// edit\n")
    assert cpu_backend.build_directory() != first


def test_a_built_library_is_imported_without_torch_load_and_a_broken_one_is_rebuilt(
        ext, tmp_path, monkeypatch):
    """A library in the folder named by the sources is imported directly, whichever
    checkout built it; one that does not import (a killed link) goes back to torch's load."""
    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setenv("FLEXCORE_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.delenv("FLEXCORE_BUILD_VERBOSE", raising=False)
    folder = cpu_backend.build_directory()
    folder.mkdir(parents=True)
    library = folder / Path(ext.__file__).name
    library.write_bytes(Path(ext.__file__).read_bytes())
    calls = []
    monkeypatch.setattr(cpp_extension, "load", lambda **kw: calls.append(kw) or "rebuilt")
    module = cpu_backend._build()
    assert calls == []  # imported, not built (one process may keep its first copy of the module)
    assert module.isa() == ext.isa() and callable(module.forward) and callable(module.backward)
    # another folder: Python keeps an imported extension per path for the whole process
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / library.name).write_bytes(b"not a shared library")
    monkeypatch.setattr(cpu_backend, "build_directory", lambda: broken)
    assert cpu_backend._build() == "rebuilt" and calls[0]["build_directory"] == str(broken)


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_unbuildable_extension_falls_back_with_one_warning(monkeypatch):
    def broken():
        raise RuntimeError("Error building extension 'flexcore_splat_cpu': no compiler")

    monkeypatch.setattr(cpu_backend, "_build", broken)
    monkeypatch.setattr(cpu_backend, "_EXTENSION", None)
    monkeypatch.setattr(cpu_backend, "_EXTENSION_TRIED", False)
    monkeypatch.delenv("FLEXCORE_OPS_BACKEND", raising=False)
    density, coords, vidx, bary, disp, rot = random_problem(16, 2, 300, 20, seed=14,
                                                            device="cpu")
    geometry = VoxelGeometry(coords, vidx, bary)
    logger, seen = logging.getLogger("flexcore.ops.cpu"), Records()
    logger.addHandler(seen)  # the package logger does not propagate to the root
    try:
        for _ in range(3):
            img = splat_project(density, geometry, disp, rot, 16)
    finally:
        logger.removeHandler(seen)
    warnings = seen.records
    assert len(warnings) == 1 and "using the PyTorch reference" in warnings[0].getMessage()
    torch.testing.assert_close(img, splat_project_reference(density, geometry, disp, rot, 16))
    monkeypatch.setenv("FLEXCORE_OPS_BACKEND", "cpu")
    with pytest.raises(RuntimeError, match="FLEXCORE_OPS_BACKEND=cpu"):
        backend_for(torch.device("cpu"))



def test_shared_displacement_rows_match_the_reference(ext):
    """Images reading their displacements from a shared table (``displacement_rows``, the
    latent search's grid candidates) equal the float64 reference on the gathered rows; with
    gradients wanted the dispatcher gathers and the autograd kernel runs."""
    d, b, m, rows = 40, 21, 8_000, 5
    density, coords, vidx, bary, table, _ = random_problem(d, rows, m, 120, seed=31, device="cpu")
    rot = torch.as_tensor(random_rotations(b, 32), dtype=torch.float32)
    index = torch.randint(0, rows, (b,), generator=torch.Generator().manual_seed(33))
    density = away_from_pixel_lines(density, coords, vidx, bary, table[index], rot, d)
    geometry = VoxelGeometry(coords, vidx, bary)
    ref = splat_project_reference(density.double(), geometry.to(dtype=torch.float64),
                                  table.double(), rot.double(), d, displacement_rows=index)
    assert torch.equal(ref, splat_project_reference(
        density.double(), geometry.to(dtype=torch.float64), table.double()[index], rot.double(), d))
    with torch.no_grad():
        ours = splat_project(density, geometry, table, rot, d, displacement_rows=index)
    assert rel_err(ours, ref) < TOL
    gathered = splat_project_cpu(density, geometry, table[index], rot, d)
    torch.testing.assert_close(ours, gathered, rtol=0, atol=0)  # the same kernel path
    # with gradients: the rows are gathered and the table gets the summed gradient
    live = table.clone().requires_grad_()
    img = splat_project(density, geometry, live, rot, d, displacement_rows=index)
    img.sum().backward()
    table64 = table.double().requires_grad_()
    splat_project_reference(density.double(), geometry.to(dtype=torch.float64), table64,
                            rot.double(), d, displacement_rows=index).sum().backward()
    assert rel_err(live.grad, table64.grad) < TOL
    for bad, message in [(index[:-1], "must be integer"), (index.float(), "must be integer"),
                         (index + rows, r"must lie in \[0, 5\)")]:
        with pytest.raises(ValueError, match=message):
            splat_project(density, geometry, table, rot, d, displacement_rows=bad)
