"""Rigidity weights from density: dense ≈ 1, empty = floor, periphery 3.0, rigid segments 20."""

from __future__ import annotations

import numpy as np
import pytest

from flexcore.core.errors import ConfigError
from flexcore.core.mesh import blob_map, regular_tet_mesh, rigidity_weights, segmented_mesh
from flexcore.core.mesh.topology import boundary_vertices
from flexcore.core.mesh.weights import (
    EMPTY_FRACTION,
    LOW_DENSITY_FRACTION,
    barycentric_lattice,
    density_per_cell,
)

N = 40


@pytest.fixture(scope="module")
def setup():
    # a dense plateau (a ball of density 2) on the left, empty space on the right, a faint
    # blob at the edge; the mask covers all of it
    z, y, x = (g - N // 2 for g in np.ogrid[:N, :N, :N])
    ball = ((x + 6) ** 2 + y ** 2 + z ** 2) <= 9.5 ** 2
    density = 2.0 * ball + 0.6 * blob_map(N, [(11, 0, 4)], [2.0])
    mask = ((x / 15.0) ** 2 + (y / 9.0) ** 2 + (z / 9.0) ** 2) <= 1.0
    mesh, _ = regular_tet_mesh(mask, mask.astype(np.float32), 2.0, 8)
    rho = density_per_cell(mesh.points, mesh.cells, density)
    return mesh, density, rho


def test_barycentric_lattice_and_cell_means():
    b = barycentric_lattice(4)
    assert len(b) == 35 and np.allclose(b.sum(axis=1), 1.0) and b.min() >= 0
    pts = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0], [0, 0, 4]], float)
    ramp = np.broadcast_to(np.arange(N, dtype=np.float32)[None, None, :], (N, N, N)).copy()
    # trilinear sampling of a linear ramp is exact; the lattice mean is the centroid value
    got = density_per_cell(pts, np.array([[0, 1, 2, 3]]), ramp)
    assert got[0] == pytest.approx(N // 2 + 1.0)


def test_dense_cells_near_one_and_empty_cells_at_floor(setup):
    mesh, density, rho = setup
    w, info = rigidity_weights(mesh.points, mesh.cells, density, rigidity_min=0.5)
    rel = rho / info["rho_ref"]
    assert info["rho_ref"] == pytest.approx(2.0)
    inside = np.all(((mesh.points[mesh.cells] + [6, 0, 0]) ** 2).sum(axis=2) <= 9.0 ** 2, axis=1)
    assert inside.sum() > 10
    np.testing.assert_allclose(w[inside], 1.0, atol=1e-6)  # cells in the plateau: exactly 1
    empty = rel < 0.01
    assert empty.sum() > 20 and np.all(w[empty] == 0.5)
    assert w.min() == 0.5 and info["cells_at_floor"] == int((w == 0.5).sum())
    assert w.dtype == np.float32 and w.shape == (mesh.n_cells,)
    w3, _ = rigidity_weights(mesh.points, mesh.cells, density, rigidity_min=0.3)
    assert np.all(w3[empty] == np.float32(0.3))


def test_stiffen_sets_three_on_non_empty_periphery_only(setup):
    mesh, density, rho = setup
    w0, info = rigidity_weights(mesh.points, mesh.cells, density)
    w, info_s = rigidity_weights(mesh.points, mesh.cells, density, stiffen_low_density=True)
    rel = rho / info["rho_ref"]
    stiff = w == 3.0
    assert info_s["cells_stiffened"] == int(stiff.sum()) > 0
    assert np.all(rel[stiff] >= EMPTY_FRACTION) and np.all(rel[stiff] < LOW_DENSITY_FRACTION)
    assert np.all(w[rel < EMPTY_FRACTION] == 0.5)  # empty space stays soft
    np.testing.assert_array_equal(w[rel >= LOW_DENSITY_FRACTION], w0[rel >= LOW_DENSITY_FRACTION])
    # every stiffened cell touches an empty cell or the outer boundary
    empty_vertices = np.unique(mesh.cells[rel < EMPTY_FRACTION])
    exposed = boundary_vertices(mesh.points, mesh.cells)
    exposed[empty_vertices] = True
    assert exposed[mesh.cells[stiff]].any(axis=1).all()


def test_rigid_segments_get_twenty(setup):
    mesh, density, _ = setup
    labels = np.where(np.arange(N)[None, None, :] < N // 2, 1, 2) * np.ones((N, N, N), int)
    seg_mesh, _ = segmented_mesh(labels, mesh.mask, mesh.mask_soft, 2.0, 8, "1>2")
    w, info = rigidity_weights(seg_mesh.points, seg_mesh.cells, density,
                               segments=seg_mesh.segments, rigid_segments=[2])
    assert np.all(w[seg_mesh.segments == 2] == 20.0)
    assert np.all(w[seg_mesh.segments == 1] < 20.0)
    assert info["cells_rigid"] == int((seg_mesh.segments == 2).sum())


def test_weight_errors(setup):
    mesh, density, _ = setup
    with pytest.raises(ConfigError, match="rigid_segments"):
        rigidity_weights(mesh.points, mesh.cells, density, rigid_segments=[1])
    with pytest.raises(ConfigError, match="no positive density"):
        rigidity_weights(mesh.points, mesh.cells, -density)
    with pytest.raises(ConfigError, match="rigidity_min"):
        rigidity_weights(mesh.points, mesh.cells, density, rigidity_min=0.0)
