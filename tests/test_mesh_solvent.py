"""Solvent masks for mesh prep: threshold modes, the level reported, and bad masks."""

from __future__ import annotations

import numpy as np
import pytest

from flexcore.core.errors import ConfigError, InputFileError
from flexcore.core.io.mrc import write_map
from flexcore.core.mesh import blob_map, mask_from_file, mask_from_map
from flexcore.core.mesh.solvent import lowpassed
from flexcore.stages.mesh.step import run_mesh

N, PSIZE = 40, 2.0


@pytest.fixture
def volume():
    return 3.0 * blob_map(N, [(-7, 0, 0), (7, 3, -2)], [3.0, 2.5])


def test_absolute_threshold_builds_dilated_soft_mask(volume):
    m = mask_from_map(volume, PSIZE, threshold=0.5)
    assert m.level == 0.5
    smooth = lowpassed(volume, PSIZE, 10.0)
    core = smooth > 0.5
    assert m.hard[core].all()  # dilation keeps everything above threshold
    assert m.hard.sum() > core.sum()  # and grows it (2 Å = 1 voxel)
    assert m.hard[N // 2, N // 2, N // 2 - 7] == 1 and m.hard[0, 0, 0] == 0
    # the soft mask lies within the hard one: the soft pad is part of the mesh
    assert (m.hard >= (m.soft > 0)).all() and m.soft.max() == 1.0 and m.soft.min() == 0.0
    assert ((m.soft > 0) & (m.soft < 1)).any()  # a soft edge exists
    assert "level 0.5" in m.source


def test_quantile_and_sigma_levels_are_reported(volume):
    smooth = lowpassed(volume, PSIZE, 10.0)
    q = mask_from_map(volume, PSIZE, threshold=0.97, threshold_mode="quantile")
    assert q.level == pytest.approx(float(np.quantile(smooth, 0.97)), rel=1e-6)
    s = mask_from_map(volume, PSIZE, threshold=3.0, threshold_mode="sigma")
    assert s.level == pytest.approx(float(smooth.mean() + 3.0 * smooth.std()), rel=1e-5)
    # the same map scaled by 100 gives the same quantile mask, unlike an absolute level
    q100 = mask_from_map(100 * volume, PSIZE, threshold=0.97, threshold_mode="quantile")
    np.testing.assert_array_equal(q100.hard, q.hard)


def test_empty_mask_and_bad_threshold_raise_config_error(volume):
    with pytest.raises(ConfigError, match="threshold 50"):
        mask_from_map(volume, PSIZE, threshold=50.0)
    with pytest.raises(ConfigError, match="quantile"):
        mask_from_map(volume, PSIZE, threshold=1.5, threshold_mode="quantile")
    with pytest.raises(ConfigError, match="threshold_mode"):
        mask_from_map(volume, PSIZE, threshold_mode="relative")
    with pytest.raises(ConfigError, match="dilate_A"):
        mask_from_map(volume, PSIZE, dilate_A=-1.0)


def test_given_mask_is_checked_against_the_map(tmp_path, volume):
    good = tmp_path / "mask.mrc"
    hard = (lowpassed(volume, PSIZE, 10.0) > 0.5).astype(np.float32)
    write_map(good, hard, PSIZE)
    m = mask_from_file(good, N, PSIZE, dilate_A=0.0, pad_A=0.0)
    np.testing.assert_array_equal(m.hard, hard)
    assert m.level is None and str(good) in m.source
    padded = mask_from_file(good, N, PSIZE, dilate_A=0.0, pad_A=4.0)
    assert (padded.hard >= hard).all() and padded.hard.sum() > hard.sum()
    np.testing.assert_array_equal(padded.hard, (padded.soft > 0).astype(np.float32))

    wrong_box = tmp_path / "mask_box.mrc"
    write_map(wrong_box, np.ones((32, 32, 32), np.float32), PSIZE)
    with pytest.raises(InputFileError, match="mask_box.mrc.*box 32 does not match the map box 40"):
        mask_from_file(wrong_box, N, PSIZE)

    wrong_pix = tmp_path / "mask_pix.mrc"
    write_map(wrong_pix, hard, 1.0)
    with pytest.raises(InputFileError, match="mask_pix.mrc.*voxel size"):
        mask_from_file(wrong_pix, N, PSIZE)

    empty = tmp_path / "mask_empty.mrc"
    write_map(empty, np.zeros((N, N, N), np.float32), PSIZE)
    with pytest.raises(InputFileError, match="mask_empty.mrc.*empty"):
        mask_from_file(empty, N, PSIZE)


def test_run_mesh_names_the_bad_mask_file(tmp_path, volume):
    write_map(tmp_path / "map.mrc", volume, PSIZE)
    write_map(tmp_path / "small.mrc", np.ones((32, 32, 32), np.float32), PSIZE)
    with pytest.raises(InputFileError, match="small.mrc"):
        run_mesh(tmp_path / "map.mrc", tmp_path / "out", mask=tmp_path / "small.mrc", n_cells=8)
    with pytest.raises(ConfigError, match="solvent mask is empty"):
        run_mesh(tmp_path / "map.mrc", tmp_path / "out", threshold=99.0, n_cells=8)
    assert not (tmp_path / "out" / "mesh.npz").exists()


def test_a_full_resolution_mask_is_resampled_to_the_training_box(tmp_path, volume):
    hard = (lowpassed(volume, PSIZE, 10.0) > 0.5).astype(np.float32)
    big = np.kron(hard, np.ones((2, 2, 2), np.float32))  # same extent, twice the voxels
    write_map(tmp_path / "full_box_mask.mrc", big, PSIZE / 2)
    m = mask_from_file(tmp_path / "full_box_mask.mrc", N, PSIZE, dilate_A=0.0, pad_A=0.0)
    assert m.hard.shape == hard.shape
    assert (m.hard != hard).mean() < 0.01
    write_map(tmp_path / "other_extent.mrc", big, PSIZE)  # twice the extent: refused
    with pytest.raises(InputFileError, match="other_extent.mrc.*box 80 does not match the map box 40"):
        mask_from_file(tmp_path / "other_extent.mrc", N, PSIZE)
