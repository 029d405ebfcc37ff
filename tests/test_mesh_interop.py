"""Mesh files: our .npz, CryoSPARC's pickle (round trip, convention detection, safety),
user-supplied arrays and Delaunay meshes."""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest
from scipy.spatial import Delaunay

from flexcore.core.errors import ConfigError, InputFileError
from flexcore.core.io.mrc import write_map
from flexcore.core.mesh import (
    CANDIDATE_CONVENTIONS,
    TetMesh,
    blob_map,
    delaunay_mesh,
    export_cryosparc_pickle,
    import_cryosparc_pickle,
    locate_voxels,
    mesh_from_arrays,
    regular_tet_mesh,
    segmented_mesh,
    tet_volumes,
)
from flexcore.core.mesh.locate import barycentric_coordinates, voxel_positions
from flexcore.stages.mesh.step import run_mesh

N, PSIZE = 32, 1.7


@pytest.fixture(scope="module")
def mesh():
    vol = blob_map(N, [(-5, 2, 0), (6, -3, 2)], [3.0, 2.5])
    hard = vol > 0.3
    m, _ = regular_tet_mesh(hard, np.clip(vol * 2, 0, 1), PSIZE, 4)  # h = 8: face ties
    rng = np.random.default_rng(1)
    m.rigidity = rng.uniform(0.5, 1.1, m.n_cells).astype(np.float32)
    return m


@pytest.fixture(scope="module")
def seg_mesh(mesh):
    labels = np.where(np.arange(N)[None, None, :] < N // 2, 1, 2) * np.ones((N, N, N), int)
    m, _ = segmented_mesh(labels, mesh.mask, mesh.mask_soft, PSIZE, 4, "1>2")
    return m


def _same(a: TetMesh, b: TetMesh, exact_points=True):
    for name in ("cells", "rigidity", "tet_map", "mask", "mask_soft"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    if exact_points:
        np.testing.assert_array_equal(a.points, b.points)
    else:
        np.testing.assert_allclose(a.points, b.points, atol=1e-9)
    assert (a.box, a.pixel_size_A) == (b.box, b.pixel_size_A)
    for name in ("segments", "fuses"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)


def test_npz_round_trip_and_errors(tmp_path, mesh, seg_mesh):
    for m in (mesh, seg_mesh):
        m.save(tmp_path / "m.npz")
        _same(TetMesh.load(tmp_path / "m.npz"), m)
    with np.load(tmp_path / "m.npz") as z:
        data = dict(z)
    np.savez(tmp_path / "nokey.npz", **{k: v for k, v in data.items() if k != "tet_map"})
    with pytest.raises(InputFileError, match="nokey.npz.*missing key.*tet_map"):
        TetMesh.load(tmp_path / "nokey.npz")
    np.savez(tmp_path / "v2.npz", **{**data, "format_version": np.array(2)})
    with pytest.raises(InputFileError, match="v2.npz.*version 2"):
        TetMesh.load(tmp_path / "v2.npz")
    with pytest.raises(InputFileError, match="does not exist"):
        TetMesh.load(tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(InputFileError, match="junk.npz"):
        TetMesh.load(tmp_path / "junk.npz")


def test_pickle_round_trip_is_exact(tmp_path, mesh, seg_mesh):
    for m in (mesh, seg_mesh):
        export_cryosparc_pickle(m, tmp_path / "m.pkl", consensus_map=np.ones((N,) * 3))
        got, report = import_cryosparc_pickle(tmp_path / "m.pkl", trusted=True)
        _same(got, m)
        assert report["convention"] == "voxel-xyz-centre"
        assert report["tet_map_mismatch"] == 0 and report["dropped_voxels"] == 0
        with open(tmp_path / "m.pkl", "rb") as fh:
            raw = pickle.load(fh)
        assert raw["version"] == 1 and raw["N"] == N and raw["psize_A"] == PSIZE
        # the stored map equals the one recomputed from tm_points / tm_cells
        labels = np.where(raw["tm_tetraidx_map"] >= 0, 0, -1)
        cell_labels = None
        if "tm_segmask" in raw:
            labels = raw["segmask_exp"]
            cell_labels = raw["tm_segmask"]
        np.testing.assert_array_equal(
            locate_voxels(raw["tm_points"], raw["tm_cells"], labels, cell_labels),
            raw["tm_tetraidx_map"])


@pytest.mark.parametrize("conv", CANDIDATE_CONVENTIONS, ids=lambda c: c.name)
def test_convention_detection(tmp_path, mesh, conv):
    export_cryosparc_pickle(mesh, tmp_path / "c.pkl", convention=conv)
    got, report = import_cryosparc_pickle(tmp_path / "c.pkl", trusted=True)
    assert report["convention"] == conv.name
    assert report["fraction_inside"] == 1.0 and report["tied_with"] == []
    assert max(v for k, v in report["candidates"].items() if k != conv.name) < 0.9
    _same(got, mesh, exact_points=False)


def test_ties_with_another_tie_break_are_reported_not_rejected(tmp_path, mesh):
    export_cryosparc_pickle(mesh, tmp_path / "t.pkl")
    with open(tmp_path / "t.pkl", "rb") as fh:
        raw = pickle.load(fh)
    # a voxel on a shared face: give it the other (higher-numbered) tet containing it
    lin = np.flatnonzero(raw["tm_tetraidx_map"].reshape(-1) >= 0)
    pos = voxel_positions(lin, N)
    changed = 0
    for t in range(mesh.n_cells):
        b = barycentric_coordinates(mesh.points, mesh.cells, np.full(len(lin), t), pos)
        inside = (b.min(axis=1) >= -1e-9) & (raw["tm_tetraidx_map"].reshape(-1)[lin] < t)
        if inside.any():
            raw["tm_tetraidx_map"].reshape(-1)[lin[np.flatnonzero(inside)[0]]] = t
            changed += 1
        if changed == 3:
            break
    with open(tmp_path / "t.pkl", "wb") as fh:
        pickle.dump(raw, fh)
    got, report = import_cryosparc_pickle(tmp_path / "t.pkl", trusted=True)
    assert report["tet_map_ties"] == 3 and report["tet_map_mismatch"] == 0
    np.testing.assert_array_equal(got.tet_map, mesh.tet_map)


class _Evil:
    def __reduce__(self):
        return (os.getpid, ())


def test_pickle_import_is_guarded(tmp_path, mesh):
    export_cryosparc_pickle(mesh, tmp_path / "m.pkl")
    with pytest.raises(ConfigError, match="trusted=True"):
        import_cryosparc_pickle(tmp_path / "m.pkl")
    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump({"N": _Evil()}, fh)
    with pytest.raises(InputFileError, match="evil.pkl.*refusing to load"):
        import_cryosparc_pickle(tmp_path / "evil.pkl", trusted=True)
    with open(tmp_path / "m.pkl", "rb") as fh:
        raw = pickle.load(fh)
    del raw["tm_rweights"]
    with open(tmp_path / "short.pkl", "wb") as fh:
        pickle.dump(raw, fh)
    with pytest.raises(InputFileError, match="short.pkl.*tm_rweights"):
        import_cryosparc_pickle(tmp_path / "short.pkl", trusted=True)


def test_user_arrays_any_order_and_orientation(mesh):
    rng = np.random.default_rng(2)
    perm = rng.permutation(mesh.n_cells)
    cells = mesh.cells[perm][:, [1, 0, 2, 3]]  # flipped orientation
    m = mesh_from_arrays(mesh.points, cells, mesh.mask, mesh.mask_soft, PSIZE)
    assert tet_volumes(m.points, m.cells).min() > 0
    assert np.array_equal(m.tet_map >= 0, mesh.mask > 0.5)
    b = m.voxel_data()["barycentric"]
    assert b.min() >= -1e-6
    with pytest.raises(ValueError, match="do not cover|does not cover"):
        mesh_from_arrays(mesh.points, mesh.cells[: mesh.n_cells // 2], mesh.mask, None, PSIZE)


def test_run_mesh_with_custom_arrays_and_cryosparc_pickle(tmp_path, mesh):
    vol = blob_map(N, [(-5, 2, 0), (6, -3, 2)], [3.0, 2.5])
    write_map(tmp_path / "map.mrc", vol, PSIZE)
    np.savez(tmp_path / "arrays.npz", points=mesh.points, cells=mesh.cells)
    s = run_mesh(tmp_path / "map.mrc", tmp_path / "a", n_cells=4, threshold=0.3, pad_A=0.0,
                 custom_mesh=tmp_path / "arrays.npz")
    assert s["mesh_type"] == "custom" and s["n_cells"] == mesh.n_cells
    export_cryosparc_pickle(mesh, tmp_path / "m.pkl")
    s = run_mesh(tmp_path / "map.mrc", tmp_path / "b", cryosparc_mesh=tmp_path / "m.pkl")
    assert s["import"]["convention"] == "voxel-xyz-centre"
    _same(TetMesh.load(tmp_path / "b" / "mesh.npz"), mesh)
    np.savez(tmp_path / "bad.npz", verts=mesh.points)
    with pytest.raises(InputFileError, match="bad.npz.*'points'"):
        run_mesh(tmp_path / "map.mrc", tmp_path / "c", custom_mesh=tmp_path / "bad.npz")


def _check_delaunay(m: TetMesh):
    assert tet_volumes(m.points, m.cells).min() > 0
    assert np.array_equal(m.tet_map >= 0, m.mask > 0.5)
    d = m.voxel_data()
    assert d["barycentric"].min() >= -1e-6
    rebuilt = np.einsum("mk,mkd->md", d["barycentric"].astype(float), m.points[d["vertex_index"]])
    np.testing.assert_allclose(rebuilt, d["coords"], atol=1e-3)


def test_delaunay_mesh_path_with_scipy_standing_in(monkeypatch, mesh):
    # pytetgen.Delaunay mimics scipy.spatial.Delaunay (.simplices): exercise our code path
    monkeypatch.setitem(sys.modules, "pytetgen", types.SimpleNamespace(Delaunay=Delaunay))
    vol = blob_map(N, [(-5, 2, 0), (6, -3, 2)], [3.0, 2.5])
    m = delaunay_mesh(vol, mesh.mask, mesh.mask_soft, PSIZE, 4)
    _check_delaunay(m)
    assert m.n_vertices > mesh.n_vertices  # density-adaptive points were added


def test_delaunay_mesh_with_pytetgen(mesh):
    pytest.importorskip("pytetgen", reason="optional AGPL 'tetgen' extra is not installed")
    vol = blob_map(N, [(-5, 2, 0), (6, -3, 2)], [3.0, 2.5])
    _check_delaunay(delaunay_mesh(vol, mesh.mask, mesh.mask_soft, PSIZE, 4))


def test_delaunay_without_pytetgen_says_how_to_install(monkeypatch, mesh):
    monkeypatch.setitem(sys.modules, "pytetgen", None)  # import fails
    with pytest.raises(ConfigError, match="tetgen"):
        delaunay_mesh(np.ones((N,) * 3), mesh.mask, mesh.mask_soft, PSIZE, 4)
