"""Local resolution and regions: the windowed FSC reads the band limit of each part of a map,
motion regions group cells by how far the flow moves them, segments become regions.

Flexible vs rigid in the moving domain of a trained model is in tests/test_recon_flex.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flexcore.core.errors import ConfigError
from flexcore.core.fourier import lowpass_volume
from flexcore.core.fsc import fsc_curve, resolution_at
from flexcore.core.masks import sphere_mask
from flexcore.core.mesh import regular_tet_mesh
from flexcore.stages.localres import local_resolution, motion_amplitude, motion_labels, segment_labels
from flexcore.stages.localres.windowed import crossing_resolution, shell_matrix

BOX, PSIZE = 48, 2.0


def band_limited_halves(cutoff_left_A: float, cutoff_right_A: float, noise: float, seed: int = 0):
    """Two half maps sharing a random signal low-passed at one resolution for x < N/2 and at
    another for x ≥ N/2, each with its own white noise."""
    rng = np.random.default_rng(seed)
    signal = torch.from_numpy(rng.normal(size=(BOX,) * 3).astype(np.float32))
    left = lowpass_volume(signal, cutoff_left_A, PSIZE).numpy()
    right = lowpass_volume(signal, cutoff_right_A, PSIZE).numpy()
    x = np.arange(BOX)[None, None, :]
    truth = np.where(x < BOX // 2, left, right) / left.std()
    return (truth + noise * rng.normal(size=truth.shape).astype(np.float32),
            truth + noise * rng.normal(size=truth.shape).astype(np.float32))


def test_shell_sums_give_the_global_fsc():
    """The batched shell sums reproduce flexcore.core.fsc.fsc_curve on whole w³ maps."""
    w = 12
    a, b = torch.randn(2, w, w, w, generator=torch.Generator().manual_seed(0))
    b = b + a  # correlated
    fa, fb = (torch.fft.rfftn(v).flatten()[None] for v in (a, b))
    m = shell_matrix(w)
    fsc = ((fa * fb.conj()).real @ m) / torch.sqrt(((fa.abs() ** 2) @ m) * ((fb.abs() ** 2) @ m))
    np.testing.assert_allclose(fsc[0].numpy(), fsc_curve(a, b), rtol=1e-5, atol=1e-6)


def test_crossing_is_interpolated_and_clamped():
    fsc = torch.tensor([[1.0, 0.9, 0.7, 0.3, 0.1, 0.0],   # crosses 0.5 half-way from shell 2 to 3
                        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],   # never: Nyquist
                        [1.0, 0.2, 0.1, 0.0, 0.0, 0.0]])  # at once: clamped to the window
    res = crossing_resolution(fsc, 0.5, 10, 1.5)
    torch.testing.assert_close(res, torch.tensor([10 * 1.5 / 2.5, 3.0, 10 * 1.5 / 1.0]))


def test_local_resolution_reads_each_halfs_band_limit():
    """Signal-to-noise ≈ 4 per Fourier coefficient inside each band: the FSC falls through 0.5
    at the band limit, so the windowed FSC reads 8 Å on one side and 16 Å on the other."""
    a, b = band_limited_halves(8.0, 16.0, noise=2.0)
    mask = sphere_mask(BOX, 20.0)
    local = local_resolution(a, b, mask, PSIZE, window_px=16, stride=2, threshold=0.5)
    assert local.shape == (BOX,) * 3 and (local[mask <= 0.5] == 0).all()
    inner = sphere_mask(BOX, 16.0) > 0.5
    x = np.arange(BOX)[None, None, :] * np.ones((BOX,) * 3)
    fine = np.median(local[inner & (x < BOX // 2 - 6)])
    coarse = np.median(local[inner & (x >= BOX // 2 + 6)])
    print(f"local resolution: {fine:.2f} Å where the map is limited to 8 Å, {coarse:.2f} Å at 16 Å")
    assert fine == pytest.approx(8.0, rel=0.15)
    assert coarse == pytest.approx(16.0, rel=0.15)
    # the global FSC mixes both
    glob = resolution_at(fsc_curve(a, b, mask=mask), 0.5, PSIZE)
    assert fine < glob < coarse


def test_identical_halves_reach_nyquist_and_bad_parameters_fail():
    a, _ = band_limited_halves(8.0, 8.0, noise=0.0)
    mask = sphere_mask(BOX, 12.0)
    local = local_resolution(a, a, mask, PSIZE, window_px=8, stride=3)
    np.testing.assert_allclose(local[mask > 0.5], 2 * PSIZE)
    for kwargs, key in (({"window_px": 7}, "window_px"), ({"stride": 0}, "stride"),
                        ({"threshold": 1.2}, "threshold")):
        with pytest.raises(ConfigError, match=key):
            local_resolution(a, a, mask, PSIZE, **kwargs)


@pytest.fixture(scope="module")
def mesh():
    mask = sphere_mask(32, 13.0)
    return regular_tet_mesh(mask, mask, pixel_size_A=3.0, n_cells=8)[0]


def test_motion_regions_follow_the_moving_side(mesh):
    """A flow that swings the x > 0 half of the mesh (more the further out) and leaves the rest:
    the moving region is on the far +x side, the core on the static side."""
    pts = mesh.points

    def flow(z):
        d = np.zeros((len(z),) + pts.shape, np.float32)
        d[..., 1] = np.asarray(z)[:, :1] * np.clip(pts[None, :, 0], 0, None) * 0.3
        return torch.as_tensor(d)

    z = np.linspace(-1, 1, 41)[:, None]
    amp = motion_amplitude(flow, z, mesh.pixel_size_A)
    expected = np.clip(pts[:, 0], 0, None) * 0.3 * np.sqrt(np.mean(z**2)) * mesh.pixel_size_A
    np.testing.assert_allclose(amp, expected, rtol=1e-4, atol=1e-6)
    labels, vox_amp, thr = motion_labels(mesh.tet_map, mesh.cells, amp, 0.25)
    inside = mesh.tet_map >= 0
    assert set(np.unique(labels[inside])) == {1, 2, 3} and (labels[~inside] == 0).all()
    # whole cells: the cells at the threshold (ties on this lattice) join the moving region
    assert 0.25 <= (labels == 3).sum() / inside.sum() < 0.35
    x = np.arange(32)[None, None, :] - 16
    x = np.broadcast_to(x, labels.shape)
    assert x[labels == 3].min() > 0 and np.median(x[labels == 1]) < 0
    assert vox_amp[labels == 3].min() >= thr["moving_min_A"] > thr["core_max_A"]


def test_segments_are_regions(mesh):
    segments = (mesh.points[mesh.cells].mean(1)[:, 2] > 0).astype(np.int32) * 5 + 2  # ids 2, 7
    labels, names = segment_labels(mesh.tet_map, segments)
    assert names == {1: "segment2", 2: "segment7"}
    z = np.broadcast_to(np.arange(32)[:, None, None] - 16, labels.shape)
    # whole cells (4-voxel cubes) on either side of z = 0
    assert z[labels == 2].min() >= -4 and z[labels == 1].max() <= 4
    assert np.median(z[labels == 2]) > 2 and np.median(z[labels == 1]) < -2
