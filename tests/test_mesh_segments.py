"""Segmented meshes: Segger .seg and label .mrc inputs, connection trees, fused and unfused
segments, and the voxel → tet lookup in each voxel's own segment."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from flexcore.core.errors import ConfigError, InputFileError
from flexcore.core.io.mrc import write_map
from flexcore.core.mesh import (
    TetMesh,
    parse_connections,
    read_label_map,
    read_segger,
    segmented_mesh,
    validate_connections,
)
from flexcore.core.mesh.segments import expand_segments
from flexcore.core.ops.reference import interpolate_displacements
from flexcore.stages.mesh.step import run_mesh

N, PSIZE = 32, 2.0


def write_seg(path, leaf_mask, region_ids, parent_ids, map_size=None, version=2, fmt=b"segger"):
    """A minimal Segger .seg (HDF5, the layout segfile.py writes with PyTables)."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = np.bytes_(fmt)
        f.attrs["format_version"] = np.int32(version)
        f.attrs["name"] = np.bytes_("test.seg")
        f.attrs["map_name"] = np.bytes_("map.mrc")
        f.attrs["map_size"] = np.array(map_size or leaf_mask.shape[::-1], np.int32)
        f.attrs["map_level"] = np.float32(0.1)
        f.attrs["ijk_to_xyz_transform"] = np.eye(3, 4, dtype=np.float32) * PSIZE
        f.create_dataset("mask", data=leaf_mask.astype(np.uint32), compression="gzip")
        f.create_dataset("region_ids", data=np.asarray(region_ids, np.int32))
        f.create_dataset("parent_ids", data=np.asarray(parent_ids, np.int32))
        f.create_dataset("region_colors", data=np.ones((len(region_ids), 4), np.float32))
        f.create_dataset("ref_points", data=np.zeros((len(region_ids), 3), np.float32))
        f.create_dataset("smoothing_levels", data=np.zeros(len(region_ids), np.float32))


def halves(n=N):
    """Label 5 on x < centre, 7 on x >= centre (every voxel labelled)."""
    x = np.arange(n)[None, None, :] * np.ones((n, n, n), int)
    return np.where(x < n // 2, 5, 7)


def ball_mask(n=N, r=11):
    z, y, x = (g - n // 2 for g in np.ogrid[:n, :n, :n])
    return (x ** 2 + y ** 2 + z ** 2) <= r * r


def test_segger_leaves_map_to_top_level_ancestors(tmp_path):
    leaf = np.zeros((N, N, N), int)
    leaf[:, :, :10] = 11
    leaf[:, :, 10:16] = 12
    leaf[:, :, 16:28] = 13
    # 11 and 12 grouped under 20; 13 top-level; 20 top-level
    path = tmp_path / "t.seg"
    write_seg(path, leaf, [11, 12, 13, 20], [20, 20, 0, 0])
    labels, info = read_segger(path, N)
    assert labels.dtype == np.int32 and labels.shape == (N, N, N)
    assert set(np.unique(labels)) == {-1, 13, 20}
    assert np.all(labels[:, :, :16] == 20) and np.all(labels[:, :, 16:28] == 13)
    assert np.all(labels[:, :, 28:] == -1)
    assert info["segments"] == [13, 20] and info["regions"] == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"version": 1}, "format_version 1"),
    ({"fmt": b"other"}, "format is 'other'"),
    ({"map_size": (N, N, N + 1)}, "map_size"),
])
def test_segger_format_errors_name_the_file(tmp_path, kwargs, message):
    path = tmp_path / "bad.seg"
    write_seg(path, np.ones((N, N, N), int), [1], [0], **kwargs)
    with pytest.raises(InputFileError, match=f"bad.seg.*{message}"):
        read_segger(path, N)


def test_segger_hierarchy_errors(tmp_path):
    path = tmp_path / "loop.seg"
    write_seg(path, np.ones((N, N, N), int), [1, 2], [2, 1])
    with pytest.raises(InputFileError, match="loops"):
        read_segger(path, N)
    path = tmp_path / "unknown.seg"
    write_seg(path, np.full((N, N, N), 9), [1], [0])
    with pytest.raises(InputFileError, match=r"region id\(s\) \[9\]"):
        read_segger(path, N)
    with pytest.raises(InputFileError, match="box 32 does not match the map box 40"):
        read_segger(path, 40)
    (tmp_path / "junk.seg").write_text("not hdf5")
    with pytest.raises(InputFileError, match="junk.seg"):
        read_segger(tmp_path / "junk.seg", N)


def test_label_mrc(tmp_path):
    labels = np.where(ball_mask(), halves(), -1).astype(np.float32)
    write_map(tmp_path / "labels.mrc", labels, PSIZE)
    got = read_label_map(tmp_path / "labels.mrc", N, PSIZE)
    np.testing.assert_array_equal(got, labels.astype(np.int32))
    write_map(tmp_path / "frac.mrc", labels + 0.5, PSIZE)
    with pytest.raises(InputFileError, match="frac.mrc.*integers"):
        read_label_map(tmp_path / "frac.mrc", N, PSIZE)
    with pytest.raises(InputFileError, match="labels.mrc.*box"):
        read_label_map(tmp_path / "labels.mrc", 40, PSIZE)


def test_connections_parse_and_validate():
    pairs = parse_connections("0>3, 0>4, 3>2, 2>1")
    assert pairs == [(0, 3), (0, 4), (3, 2), (2, 1)]
    validate_connections(pairs, [0, 1, 2, 3, 4])
    with pytest.raises(ConfigError, match="'0-3' is not of the form X>Y"):
        parse_connections("0-3")
    with pytest.raises(ConfigError, match="pair 2>0 would close a cycle"):
        validate_connections(parse_connections("0>1, 1>2, 2>0"), [0, 1, 2])
    with pytest.raises(ConfigError, match="pair 0>7 names segment 7.*not in the segmentation"):
        validate_connections(parse_connections("0>1, 0>7"), [0, 1, 2])
    with pytest.raises(ConfigError, match="pair 0>2 is out of breadth-first order.*0>1, 0>2, 1>3"):
        validate_connections(parse_connections("0>1, 1>3, 0>2"), [0, 1, 2, 3])
    with pytest.raises(ConfigError, match="pair 2>3 starts at segment 2"):
        validate_connections(parse_connections("0>1, 2>3"), [0, 1, 2, 3])
    with pytest.raises(ConfigError, match="itself"):
        validate_connections([(1, 1)], [1])


def test_unlabelled_mask_voxels_take_the_nearest_segment():
    labels = np.full((N, N, N), -1)
    labels[16, 16, 6] = 1
    labels[16, 16, 26] = 2
    mask = ball_mask()
    exp = expand_segments(labels, mask)
    assert np.all(exp[~mask] == -1) and set(np.unique(exp[mask])) == {1, 2}
    assert exp[16, 16, 10] == 1 and exp[16, 16, 22] == 2 and exp[16, 20, 15] == 1


def _mesh(connections):
    mask = ball_mask()
    return segmented_mesh(halves(), mask, mask.astype(np.float32), PSIZE, 4, connections)


def _displace(mesh: TetMesh, delta: np.ndarray) -> np.ndarray:
    geometry = mesh.voxel_tensors().to(dtype=torch.float64)
    return interpolate_displacements(geometry, torch.from_numpy(delta)[None])[0].numpy()


def test_voxel_tet_comes_from_its_own_segment():
    mesh, info = _mesh(None)
    seg_of_voxel = mesh.segments[mesh.tet_map[mesh.tet_map >= 0]]
    np.testing.assert_array_equal(seg_of_voxel, info["segmask_exp"][mesh.tet_map >= 0])
    assert info["segment_ids"] == [5, 7]
    d = mesh.voxel_data()
    assert d["barycentric"].min() >= -1e-6
    rebuilt = np.einsum("mk,mkd->md", d["barycentric"].astype(float),
                        mesh.points[d["vertex_index"]])
    np.testing.assert_allclose(rebuilt, d["coords"], atol=1e-4)


def test_unfused_segments_slide_independently():
    mesh, info = _mesh(None)
    assert info["shared_vertices"] == 0
    verts5 = np.unique(mesh.cells[mesh.segments == 5])
    verts7 = np.unique(mesh.cells[mesh.segments == 7])
    assert np.intersect1d(verts5, verts7).size == 0
    # the two submeshes overlap in a band of cubes: the same positions, separate vertices
    pos5 = {tuple(p) for p in mesh.points[verts5]}
    assert sum(tuple(p) in pos5 for p in mesh.points[verts7]) > 0
    delta = np.zeros((mesh.n_vertices, 3))
    delta[verts7] = np.random.default_rng(0).normal(size=(len(verts7), 3))
    u = _displace(mesh, delta)
    seg = mesh.segments[mesh.tet_map.reshape(-1)[mesh.voxel_data()["voxel_index"]]]
    assert np.all(u[seg == 5] == 0.0)
    assert np.abs(u[seg == 7]).max() > 0.1


def test_fused_segments_share_the_boundary():
    mesh, info = _mesh("5>7")
    assert info["shared_vertices"] > 0
    np.testing.assert_array_equal(mesh.fuses, [[5, 7]])
    verts5 = np.unique(mesh.cells[mesh.segments == 5])
    verts7 = np.unique(mesh.cells[mesh.segments == 7])
    shared = np.intersect1d(verts5, verts7)
    assert shared.size == info["shared_vertices"]
    # fused: one vertex per position
    assert len(np.unique(np.round(mesh.points, 6), axis=0)) == mesh.n_vertices
    delta = np.zeros((mesh.n_vertices, 3))
    delta[shared] = [1.0, 0.0, 0.0]
    u = _displace(mesh, delta)
    seg = mesh.segments[mesh.tet_map.reshape(-1)[mesh.voxel_data()["voxel_index"]]]
    assert np.abs(u[seg == 5]).max() > 0.5 and np.abs(u[seg == 7]).max() > 0.5
    # a uniform shift of every vertex moves every voxel by the same amount (no tearing)
    u = _displace(mesh, np.tile([0.3, -0.2, 0.1], (mesh.n_vertices, 1)))
    np.testing.assert_allclose(u, np.tile([0.3, -0.2, 0.1], (len(u), 1)), atol=1e-6)


def test_run_mesh_with_seg_file(tmp_path):
    from flexcore.core.mesh import blob_map
    vol = blob_map(N, [(-6, 0, 0), (6, 0, 0)], [3.0, 3.0])
    write_map(tmp_path / "map.mrc", vol, PSIZE)
    leaf = np.zeros((N, N, N), int)
    leaf[:, :, 4:14] = 11
    leaf[:, :, 14:16] = 12
    leaf[:, :, 16:28] = 13
    write_seg(tmp_path / "dom.seg", leaf, [11, 12, 13, 20], [20, 20, 0, 0])
    s = run_mesh(tmp_path / "map.mrc", tmp_path / "out", n_cells=4, threshold=0.2,
                 segmentation=tmp_path / "dom.seg", connections="20>13", rigid_segments="13")
    assert s["mesh_type"] == "segmented" and s["segments"] == [13, 20]
    mesh = TetMesh.load(tmp_path / "out" / "mesh.npz")
    assert np.all(mesh.rigidity[mesh.segments == 13] == 20.0)
    assert np.all(mesh.rigidity[mesh.segments == 20] < 20.0)
    with pytest.raises(ConfigError, match="rigid_segments: segment 99"):
        run_mesh(tmp_path / "map.mrc", tmp_path / "o2", n_cells=4, threshold=0.2,
                 segmentation=tmp_path / "dom.seg", rigid_segments="99")
    with pytest.raises(ConfigError, match="pair 20>42 names segment 42"):
        run_mesh(tmp_path / "map.mrc", tmp_path / "o3", n_cells=4, threshold=0.2,
                 segmentation=tmp_path / "dom.seg", connections="20>42")
    with pytest.raises(ConfigError, match="need a segmentation"):
        run_mesh(tmp_path / "map.mrc", tmp_path / "o4", n_cells=4, connections="1>2")
