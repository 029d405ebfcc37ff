"""Strain of a flow on a mesh: 1 for rigid motions, the analytic stretch for a shear, flagged
cells, the map and plot, and the summary the training and the generator report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flexcore.core.errors import ConfigError
from flexcore.core.io import read_map
from flexcore.core.masks import sphere_mask
from flexcore.core.mesh import regular_tet_mesh
from flexcore.core.rotations import rotation_about_axis
from flexcore.core.strain import (
    cell_stretch,
    measure_strain,
    strain_samples,
    stretch_map,
    write_strain_outputs,
)

BOX = 24


@pytest.fixture(scope="module")
def mesh():
    mask = sphere_mask(BOX, 9.0)
    return regular_tet_mesh(mask, mask, pixel_size_A=2.0, n_cells=6)[0]


def rigid_flow(points: np.ndarray):
    """z ↦ rotation by 40°·z about a tilted axis through (2, −1, 3) plus a translation 3·z."""
    axis = np.array([1.0, 2.0, 0.5])
    axis /= np.linalg.norm(axis)
    centre = np.array([2.0, -1.0, 3.0])

    def fn(z):
        out = []
        for zi in np.asarray(z)[:, 0]:
            rot = rotation_about_axis(axis, np.deg2rad(40.0 * zi))
            moved = (points - centre) @ rot.T + centre + 3.0 * zi
            out.append(moved - points)
        return torch.as_tensor(np.stack(out))
    return fn


def shear_flow(points: np.ndarray):
    """z ↦ simple shear x += γ·y with γ = z (a hand-built unphysical motion)."""
    def fn(z):
        d = np.zeros((len(z),) + points.shape)
        d[..., 0] = np.asarray(z)[:, :1] * points[None, :, 1]
        return torch.as_tensor(d)
    return fn


def test_rigid_motion_has_stretch_one_everywhere(mesh):
    z = np.linspace(-1.5, 1.5, 7)[:, None]
    stretch, det = cell_stretch(mesh.points, mesh.cells, mesh.rest_edges_inverse(),
                                rigid_flow(mesh.points)(z))
    assert stretch.shape == (7, mesh.n_cells)
    np.testing.assert_allclose(stretch.numpy(), 1.0, atol=1e-9)
    assert (det > 0).all()
    res = measure_strain(rigid_flow(mesh.points), mesh, z, threshold=1.01)
    assert res["summary"]["n_flagged"] == 0 and res["summary"]["max_stretch"] < 1 + 1e-9


def test_shear_stretch_matches_the_analytic_value_and_grows(mesh):
    gammas = np.array([0.1, 0.5, 1.0, 2.0])
    stretch, _ = cell_stretch(mesh.points, mesh.cells, mesh.rest_edges_inverse(),
                              shear_flow(mesh.points)(gammas[:, None]))
    expected = gammas / 2 + np.sqrt(1 + gammas**2 / 4)  # largest singular value of [[1, γ], [0, 1]]
    np.testing.assert_allclose(stretch.numpy(), expected[:, None] * np.ones(mesh.n_cells), rtol=1e-9)
    assert np.all(np.diff(expected) > 0)


def test_compression_counts_like_extension(mesh):
    """Squeezing z by 2 stretches as much as pulling it to twice its length."""
    def scale_z(factor):
        d = np.zeros((1,) + mesh.points.shape)
        d[0, :, 2] = (factor - 1.0) * mesh.points[:, 2]
        return torch.as_tensor(d)
    einv = mesh.rest_edges_inverse()
    squeezed, _ = cell_stretch(mesh.points, mesh.cells, einv, scale_z(0.5))
    pulled, _ = cell_stretch(mesh.points, mesh.cells, einv, scale_z(2.0))
    np.testing.assert_allclose(squeezed.numpy(), 2.0, rtol=1e-9)
    np.testing.assert_allclose(pulled.numpy(), 2.0, rtol=1e-9)


def test_shear_beyond_the_threshold_is_flagged_and_mapped(mesh, tmp_path):
    z = np.linspace(0.0, 1.0, 11)[:, None]  # shear up to γ = 1 → stretch 1.618
    res = measure_strain(shear_flow(mesh.points), mesh, z, threshold=1.5)
    s = res["summary"]
    assert s["n_flagged"] == s["n_cells"] == mesh.n_cells and s["n_inverted"] == 0
    assert s["max_stretch"] == pytest.approx((1 + np.sqrt(5)) / 2, rel=1e-9)
    assert measure_strain(shear_flow(mesh.points), mesh, z * 0.5, threshold=1.5)["summary"][
        "n_flagged"] == 0  # γ = 0.5 → 1.28
    paths = write_strain_outputs(mesh, res, tmp_path)
    vol, voxel = read_map(paths["map"])
    assert voxel == pytest.approx(2.0) and vol.shape == (BOX,) * 3
    np.testing.assert_allclose(vol[mesh.tet_map >= 0], s["max_stretch"], rtol=1e-6)
    assert (vol[mesh.tet_map < 0] == 0).all()
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"


def test_a_cell_turned_inside_out_is_flagged(mesh):
    def flip(z):  # mirror x: every cell inverted, though no direction is stretched
        d = np.zeros((len(z),) + mesh.points.shape)
        d[..., 0] = -2.0 * mesh.points[None, :, 0] * np.asarray(z)[:, :1]
        return torch.as_tensor(d)
    res = measure_strain(flip, mesh, np.array([[0.0], [1.0]]), threshold=1.5)
    assert res["inverted"].all() and res["flagged"].all()
    assert res["summary"]["max_stretch"] == pytest.approx(1.0)


def test_samples_cover_the_latent_range_and_bad_threshold_fails(mesh):
    z = np.random.default_rng(0).normal(size=(1000, 2)).astype(np.float32)
    picked = strain_samples(z, 50)
    assert 50 <= len(picked) <= 54
    for k in range(2):
        assert picked[:, k].min() == z[:, k].min() and picked[:, k].max() == z[:, k].max()
    assert len(strain_samples(z[:30], 50)) == 30
    with pytest.raises(ConfigError, match="threshold"):
        measure_strain(shear_flow(mesh.points), mesh, z[:3, :1], threshold=1.0)
    assert stretch_map(mesh, np.full(mesh.n_cells, 2.0)).max() == 2.0
