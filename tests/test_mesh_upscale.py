"""Upscaling a mesh to a larger box: same cells, scaled vertices, consistent voxel → tet map."""

from __future__ import annotations

import numpy as np
import pytest

from flexcore.core.masks import resize_mask
from flexcore.core.mesh import blob_map, locate_voxels, regular_tet_mesh, segmented_mesh
from flexcore.core.mesh.locate import barycentric_coordinates, voxel_positions

N = 32


@pytest.fixture(scope="module", params=["regular", "segmented"])
def mesh(request):
    vol = blob_map(N, [(-6, 2, 0), (6, -3, 2)], [3.0, 2.5])
    hard = vol > 0.25
    m, _ = regular_tet_mesh(hard, np.clip(2 * vol, 0, 1), 1.2, 6)
    if request.param == "segmented":
        labels = np.where(np.arange(N)[None, None, :] < N // 2, 3, 4) * np.ones((N,) * 3, int)
        m, _ = segmented_mesh(labels, m.mask, m.mask_soft, 1.2, 6, None)
    m.rigidity = np.random.default_rng(0).uniform(0.5, 1.0, m.n_cells).astype(np.float32)
    return m


@pytest.mark.parametrize("factor", [2, 3])
def test_upscaled_mesh_is_the_same_mesh_scaled(mesh, factor):
    hi = mesh.upscale(factor * N)
    n = factor * N
    np.testing.assert_array_equal(hi.cells, mesh.cells)
    np.testing.assert_array_equal(hi.points, mesh.points * factor)
    np.testing.assert_array_equal(hi.rigidity, mesh.rigidity)
    assert hi.box == n and hi.pixel_size_A == pytest.approx(mesh.pixel_size_A / factor)
    if mesh.segments is not None:
        np.testing.assert_array_equal(hi.segments, mesh.segments)
    # the whole nearest-neighbour upsampled mask is covered: nothing dropped
    np.testing.assert_array_equal(hi.mask > 0.5, resize_mask(mesh.mask > 0.5, n, order=0))
    # barycentric test at the new box: every mask voxel lies in its tet
    lin = np.flatnonzero(hi.tet_map.reshape(-1) >= 0)
    b = barycentric_coordinates(hi.points, hi.cells, hi.tet_map.reshape(-1)[lin],
                                voxel_positions(lin, n))
    assert b.min() >= -1e-9
    np.testing.assert_allclose(b.sum(axis=1), 1.0, atol=1e-12)
    # and the map is what the rasteriser gives for these labels
    labels = hi.voxel_labels()
    np.testing.assert_array_equal(locate_voxels(hi.points, hi.cells, labels, hi.segments),
                                  hi.tet_map)
    assert (hi.mask_soft >= hi.mask).all() and hi.mask_soft.max() <= 1.0


def test_coinciding_voxels_keep_their_tet_and_weights(mesh):
    hi = mesh.upscale(2 * N)
    idx = np.arange(N)
    lo_map = mesh.tet_map
    # hi voxel 2i sits at 2i - N = 2 (i - N//2): twice the position of lo voxel i
    hi_map = hi.tet_map[np.ix_(2 * idx, 2 * idx, 2 * idx)]
    np.testing.assert_array_equal(hi_map, lo_map)
    lo, hi_d = mesh.voxel_data(), hi.voxel_data()
    hi_lookup = dict(zip(hi_d["voxel_index"].tolist(), range(len(hi_d["voxel_index"]))))
    iz, iy, ix = np.unravel_index(lo["voxel_index"], (N,) * 3)
    hi_lin = np.ravel_multi_index((2 * iz, 2 * iy, 2 * ix), (2 * N,) * 3)
    rows = np.array([hi_lookup[v] for v in hi_lin.tolist()])
    np.testing.assert_allclose(hi_d["barycentric"][rows], lo["barycentric"], atol=1e-6)
    np.testing.assert_allclose(hi_d["coords"][rows], 2 * lo["coords"])


def test_resize_mask_keeps_the_centre_voxel_and_interpolates_linearly():
    labels = np.arange(8 ** 3, dtype=np.int32).reshape(8, 8, 8)
    up = resize_mask(labels, 16, order=0)
    assert up.dtype == np.int32
    assert up[8, 8, 8] == labels[4, 4, 4]  # centre stays the centre
    np.testing.assert_array_equal(up[::2, ::2, ::2], labels)  # coinciding voxels
    ramp = np.broadcast_to(np.arange(8, dtype=np.float32), (8, 8, 8))
    lin = resize_mask(ramp, 16, order=1)
    np.testing.assert_allclose(lin[3, 5, :15], 4 + (np.arange(15) - 8) / 2)
    assert lin[0, 0, 15] == 7.0  # clamped at the edge
