"""prep: crops and downsamples consistently, fixes inverted contrast, refuses bad input."""

import json

import mrcfile
import numpy as np
import pytest

from flexcore.core.errors import ConfigError, InputFileError
from flexcore.core.io import read_particles, write_map, write_stack
from flexcore.stages.prep.step import run_prep
from flexcore.stages.simulate import run_simulate


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    run_simulate(out, n_particles=200, box=48, pixel_size_A=2.6, snr=1.0, seed=2, n_gt_maps=3)
    return out


def test_prep_downsamples_and_links_to_source(sim, tmp_path):
    info = run_prep(sim / "particles.star", sim / "consensus.mrc", tmp_path, train_box=32,
                    n_particles=150)
    assert info.train_pixel_size_A == pytest.approx(2.6 * 48 / 32)
    # splat projections sum voxels along a ray: a map Fourier-cropped 48 → 32 projects 32/48 as
    # bright as the (grey-level preserving) cropped images, so the fitted scale is 48/32.
    assert info.image_sign == 1.0 and info.image_scale == pytest.approx(48 / 32, rel=0.1)
    table = read_particles(tmp_path / "particles.star")
    assert len(table) == 150 and table.box == 32
    assert table.pixel_size_A == pytest.approx(3.9)
    np.testing.assert_array_equal(np.asarray(table.raw["flexSourceIndex"]), np.arange(150))
    src = read_particles(sim / "particles.star")
    np.testing.assert_allclose(table.rotations, src.rotations[:150], atol=1e-6)
    np.testing.assert_allclose(table.shifts_A, src.shifts_A[:150], atol=1e-4)  # Å unchanged
    with mrcfile.open(tmp_path / "consensus.mrc") as m:
        assert m.data.shape == (32, 32, 32) and m.voxel_size.x == pytest.approx(3.9, abs=1e-4)
    record = json.loads((tmp_path / "prep.json").read_text())
    assert record["step"] == "prep" and record["flexcore"] and record["train_box"] == 32


def test_inverted_particles_are_detected_and_flipped(sim, tmp_path):
    images = mrcfile.read(sim / "particles.mrcs")
    flipped_dir = tmp_path / "flipped"
    flipped_dir.mkdir()
    write_stack(flipped_dir / "particles.mrcs", -images, 2.6)
    (flipped_dir / "particles.star").write_text((sim / "particles.star").read_text())
    info = run_prep(flipped_dir / "particles.star", sim / "consensus.mrc", tmp_path / "out",
                    train_box=48)
    assert info.image_sign == -1.0 and info.image_scale > 0
    prepared = mrcfile.read(tmp_path / "out" / "particles.mrcs")
    np.testing.assert_allclose(prepared, images, atol=1e-4)
    with pytest.raises(InputFileError, match="contrast is inverted.*prep.auto_sign"):
        run_prep(flipped_dir / "particles.star", sim / "consensus.mrc", tmp_path / "out2",
                 train_box=48, auto_sign=False)


def test_map_that_does_not_match_the_particles_is_refused(sim, tmp_path):
    vol = mrcfile.read(sim / "consensus.mrc")
    write_map(tmp_path / "small.mrc", vol[:40, :40, :40], 2.6)
    with pytest.raises(InputFileError, match="small.mrc.*box 40"):
        run_prep(sim / "particles.star", tmp_path / "small.mrc", tmp_path / "o", train_box=32)
    write_map(tmp_path / "wrongpix.mrc", vol, 3.0)
    with pytest.raises(InputFileError, match="wrongpix.mrc.*voxel size"):
        run_prep(sim / "particles.star", tmp_path / "wrongpix.mrc", tmp_path / "o", train_box=32)
    with pytest.raises(ConfigError, match="train_box"):
        run_prep(sim / "particles.star", sim / "consensus.mrc", tmp_path / "o", train_box=50)
    assert not (tmp_path / "o" / "particles.star").exists()


def test_particles_without_poses_are_refused(sim, tmp_path):
    lines = (sim / "particles.star").read_text()
    text = lines.replace("_rlnAngleRot", "_rlnUnrelatedA").replace("_rlnAngleTilt", "_rlnUnrelatedB")
    (tmp_path / "noposes.star").write_text(text)
    (tmp_path / "particles.mrcs").symlink_to(sim / "particles.mrcs")
    with pytest.raises(InputFileError, match="noposes.star.*no 3-D poses"):
        run_prep(tmp_path / "noposes.star", sim / "consensus.mrc", tmp_path / "o", train_box=32)
