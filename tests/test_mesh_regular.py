"""Regular 5-tet lattice and the voxel → tet rasteriser: conformity, orientation, coverage,
barycentric weights, tie-breaking, ordering of ``voxel_data``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flexcore.core.errors import ConfigError
from flexcore.core.mesh import TetMesh, blob_map, locate_voxels, regular_tet_mesh
from flexcore.core.mesh.locate import barycentric_coordinates, tet_volumes, voxel_positions
from flexcore.core.mesh.regular import TEMPLATES, cube_size, regular_mesh
from flexcore.core.mesh.topology import face_counts
from flexcore.core.ops.reference import interpolate_displacements


def _blob_mask(n: int) -> np.ndarray:
    vol = blob_map(n, [(-0.2 * n, 0.05 * n, 0), (0.2 * n, -0.1 * n, 0.1 * n)], [0.12 * n, 0.1 * n])
    return vol > 0.3


@pytest.fixture(params=[(32, 4), (40, 6), (36, 5)], ids=["h8", "h6.67", "h7.2"])
def lattice(request):
    n, n_cells = request.param
    mask = _blob_mask(n)
    mesh, n_cubes = regular_tet_mesh(mask, mask.astype(np.float32), 1.5, n_cells)
    return mesh, n_cubes, cube_size(n, n_cells)


def test_every_interior_face_is_shared_by_two_tets(lattice):
    mesh, n_cubes, h = lattice
    faces, counts = face_counts(mesh.cells)
    assert set(np.unique(counts)) <= {1, 2}
    # vertices are unique by position, so an unmatched interior face would show up as count 1
    assert len(np.unique(np.round(mesh.points, 6), axis=0)) == mesh.n_vertices
    # boundary faces: exactly two triangles per cube face not shared with a kept cube
    cube_centres = np.unique(np.round(mesh.points[mesh.cells].mean(axis=1) / h), axis=0)
    cubes = {tuple(c) for c in cube_centres.astype(int)}
    assert len(cubes) == n_cubes
    exposed = sum((tuple(np.add(c, d)) not in cubes)
                  for c in cubes for d in [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0),
                                           (0, 0, 1), (0, 0, -1)])
    assert int((counts == 1).sum()) == 2 * exposed


def test_tets_positive_and_fill_their_cubes(lattice):
    mesh, n_cubes, h = lattice
    vol = tet_volumes(mesh.points, mesh.cells)
    assert vol.min() > 0
    np.testing.assert_allclose(vol.sum(), n_cubes * h ** 3, rtol=1e-12)
    per_cube = np.sort(vol.reshape(-1, 5), axis=1)
    np.testing.assert_allclose(per_cube[:, :4], h ** 3 / 6, rtol=1e-12)
    np.testing.assert_allclose(per_cube[:, 4], h ** 3 / 3, rtol=1e-12)
    np.testing.assert_allclose(vol.reshape(-1, 5)[:, 0], h ** 3 / 3, rtol=1e-12)  # central first


def test_box_centre_is_a_cube_centre():
    mask = np.zeros((32, 32, 32), bool)
    mask[16, 16, 16] = True
    points, cells, cubes = regular_mesh(mask, 4)
    assert [0, 0, 0] in cubes.tolist()
    central = cells[:5][0]  # cube (0, 0, 0) is even: central tet on corners 000, 110, 101, 011
    np.testing.assert_allclose(points[cells[:5]].reshape(-1, 3).mean(axis=0), 0.0, atol=1e-12)
    assert {tuple(p) for p in points[central]} == {(-4, -4, -4), (4, 4, -4), (4, -4, 4), (-4, 4, 4)}


def test_parity_templates_are_mirror_images():
    even, odd = TEMPLATES
    assert {frozenset(t) for t in even ^ 1} == {frozenset(t) for t in odd}


def test_every_mask_voxel_in_exactly_one_tet_with_valid_barycentrics(lattice):
    mesh, _, _ = lattice
    assert np.array_equal(mesh.tet_map >= 0, mesh.mask > 0.5)
    data = mesh.voxel_data()
    assert len(data["voxel_index"]) == int((mesh.mask > 0.5).sum())
    assert len(np.unique(data["voxel_index"])) == len(data["voxel_index"])
    b = data["barycentric"]
    assert b.min() >= -1e-6
    np.testing.assert_allclose(b.sum(axis=1), 1.0, atol=1e-6)
    rebuilt = np.einsum("mk,mkd->md", b.astype(np.float64), mesh.points[data["vertex_index"]])
    np.testing.assert_allclose(rebuilt, data["coords"], atol=1e-4)


def test_voxel_data_sorted_by_tet_then_voxel(lattice):
    mesh, _, _ = lattice
    d = mesh.voxel_data()
    tet = mesh.tet_map.reshape(-1)[d["voxel_index"]]
    key = tet.astype(np.int64) * mesh.box ** 3 + d["voxel_index"]
    assert np.all(np.diff(key) > 0)
    assert d["voxel_index"].dtype == np.int64 and d["coords"].dtype == np.float32
    assert d["vertex_index"].dtype == np.int32 and d["barycentric"].dtype == np.float32
    np.testing.assert_array_equal(d["vertex_index"], mesh.cells[tet])
    np.testing.assert_array_equal(d["coords"], voxel_positions(d["voxel_index"], mesh.box))


def test_rasteriser_matches_brute_force_lowest_containing_tet():
    n = 24
    mask = _blob_mask(n)
    points, cells, _ = regular_mesh(mask, 3)  # h = 8: many voxels on faces, edges, vertices
    got = locate_voxels(points, cells, np.where(mask, 0, -1))
    lin = np.flatnonzero(mask.reshape(-1))
    pos = voxel_positions(lin, n)
    contains = np.zeros((len(lin), len(cells)), bool)
    for t in range(len(cells)):
        b = barycentric_coordinates(points, cells, np.full(len(lin), t), pos)
        contains[:, t] = b.min(axis=1) >= -1e-9
    assert contains.any(axis=1).all()
    assert (contains.sum(axis=1) > 1).sum() > 100  # the test does exercise ties
    np.testing.assert_array_equal(got.reshape(-1)[lin], contains.argmax(axis=1))


def test_rasteriser_result_does_not_depend_on_chunking():
    mask = _blob_mask(32)
    points, cells, _ = regular_mesh(mask, 4)
    labels = np.where(mask, 0, -1)
    ref = locate_voxels(points, cells, labels)
    np.testing.assert_array_equal(locate_voxels(points, cells, labels, max_pairs=97), ref)


def test_barycentric_interpolation_reproduces_affine_displacements(lattice):
    mesh, _, _ = lattice
    d = mesh.voxel_data()
    rng = np.random.default_rng(3)
    a, t = rng.normal(size=(3, 3)) * 0.05, rng.normal(size=3)
    delta = torch.from_numpy(mesh.points @ a.T + t)[None]
    u = interpolate_displacements(mesh.voxel_tensors().to(dtype=torch.float64), delta)[0].numpy()
    np.testing.assert_allclose(u, d["coords"].astype(np.float64) @ a.T + t, atol=1e-5)


def test_rest_edges_inverse(lattice):
    mesh, _, _ = lattice
    p = mesh.points[mesh.cells]
    edges = np.swapaxes(p[:, 1:] - p[:, :1], 1, 2)
    np.testing.assert_allclose(mesh.rest_edges_inverse() @ edges,
                               np.broadcast_to(np.eye(3), edges.shape), atol=1e-12)


def test_bad_n_cells_and_empty_mask_raise_config_error():
    mask = _blob_mask(32)
    with pytest.raises(ConfigError, match="n_cells"):
        regular_mesh(mask, 17)
    with pytest.raises(ConfigError, match="mask is empty"):
        regular_mesh(np.zeros((32, 32, 32), bool), 4)


def test_tetmesh_rejects_tet_map_outside_mask(lattice):
    mesh, _, _ = lattice
    bad = mesh.tet_map.copy()
    bad[0, 0, 0] = 0
    with pytest.raises(ValueError, match="hard mask"):
        TetMesh(mesh.points, mesh.cells, mesh.rigidity, mesh.box, mesh.pixel_size_A, bad,
                mesh.mask, mesh.mask_soft)
