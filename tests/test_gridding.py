"""Direct Fourier gridding of central slices (flexcore.core.gridding) and the Wiener
accumulator built on it: same grids as torch_fourier_slice's trilinear insertion, slices of
the identity pose on the central plane, Friedel symmetry of the x = 0 plane."""

import pytest
import torch
from scipy.spatial.transform import Rotation

from flexcore.core.gridding import CentralSliceInserter


def _random_batch(p: int, b: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(b, p, p // 2 + 1, dtype=torch.complex64, generator=g)
    weights = torch.rand(b, p, p // 2 + 1, generator=g)
    mats = torch.tensor(Rotation.random(b, random_state=seed).as_matrix(), dtype=torch.float32)
    return values, weights, mats


def _insert(p, values, weights, mats, chunk=32, native=None):
    sums = torch.zeros(3, p, p, p // 2 + 1)
    CentralSliceInserter(p, native=native).insert(sums, values, weights, mats, chunk=chunk)
    return torch.complex(sums[0], sums[1]), sums[2]


def _native_or_skip():
    from flexcore.core.ops.cpu import load_extension

    if load_extension() is None:
        pytest.skip("the native CPU kernels did not build here (see the warning)")


@pytest.mark.parametrize("native", [False, True], ids=["reference", "native"])
@pytest.mark.parametrize("p", [8, 16, 34])
def test_same_grids_as_torch_fourier_slice(p, native):
    if native:
        _native_or_skip()
    tfs = pytest.importorskip("torch_fourier_slice.slice_insertion")
    values, weights, mats = _random_batch(p, 40, seed=p)
    mats[0] = torch.eye(3)  # grid-aligned: integer positions and the x = 0 line
    mats[1] = torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])  # slice on the x = 0 plane
    channels = torch.stack([values, weights.to(values.dtype)], dim=1)
    dft, _ = tfs.insert_central_slices_rfft_3d_multichannel(
        channels, volume_shape=(p, p, p), rotation_matrices=mats)
    num, den = _insert(p, values, weights, mats, chunk=7, native=native)  # several chunks
    assert float(dft[1].imag.abs().max()) == 0.0
    assert torch.allclose(num, dft[0], rtol=0, atol=1e-5 * float(dft[0].abs().max()))
    assert torch.allclose(den, dft[1].real, rtol=0, atol=1e-5 * float(den.max()))


def test_identity_pose_fills_the_central_plane():
    p = 16
    values, weights, _ = _random_batch(p, 1, seed=3)
    num, den = _insert(p, values, weights, torch.eye(3)[None])
    assert torch.allclose(den[p // 2, :, 1:], weights[0, :, 1:])
    assert torch.allclose(num[p // 2, :, 1:], values[0, :, 1:])
    other = torch.ones(p, dtype=torch.bool)
    other[p // 2] = False
    assert float(den[other].abs().max()) == 0.0
    # x = 0 line: the kept half y ≥ 0 as given, its Friedel mates conjugated
    j = torch.arange(p // 2 + 1, p)
    assert torch.allclose(num[p // 2, j, 0], values[0, j, 0])
    assert torch.allclose(num[p // 2, p - j, 0], values[0, j, 0].conj())


def test_x0_plane_is_hermitian():
    p = 16
    values, weights, mats = _random_batch(p, 30, seed=5)
    num, den = _insert(p, values, weights, mats)
    mate = (p - torch.arange(p)) % p
    plane = num[:, :, 0]
    mirrored = plane[mate][:, mate].conj()
    off_origin = torch.ones(p, p, dtype=torch.bool)
    off_origin[p // 2, p // 2] = False
    assert float(plane.abs().max()) > 0
    assert torch.allclose(plane[off_origin], mirrored[off_origin], atol=1e-5)
    assert torch.allclose(den[:, :, 0], den[:, :, 0][mate][:, mate], atol=1e-5)


def test_odd_box_is_refused():
    with pytest.raises(ValueError, match="even"):
        CentralSliceInserter(15)



@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("p", [8, 34, 64])
def test_native_kernel_equals_reference(p, threads):
    """The C++ insertion adds what the index_add_ reference adds, for any thread count (the
    threads split the grid into z slabs; a corner or Friedel mate on a slab edge must land
    once), including poses on the grid axes and slices through the x = 0 plane."""
    _native_or_skip()
    values, weights, mats = _random_batch(p, 24, seed=100 + p)
    mats[0] = torch.eye(3)
    mats[1] = torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    mats[2] = torch.tensor([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]])
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        num_n, den_n = _insert(p, values, weights, mats, native=True)
    finally:
        torch.set_num_threads(old)
    num_r, den_r = _insert(p, values, weights, mats, native=False)
    assert float(den_r.max()) > 0
    assert torch.allclose(num_n, num_r, rtol=0, atol=1e-5 * float(num_r.abs().max()))
    assert torch.allclose(den_n, den_r, rtol=0, atol=1e-5 * float(den_r.max()))
    # every slice point's weight lands in the grid once (plus its x = 0 Friedel copies)
    assert abs(float(den_n.sum()) - float(den_r.sum())) < 1e-4 * float(den_r.sum())


def test_reference_backend_forces_the_reference(monkeypatch):
    monkeypatch.setenv("FLEXCORE_OPS_BACKEND", "reference")
    assert CentralSliceInserter(16)._native is None
