"""The simulator: deterministic, real formats, the SNR asked for, a motion where expected."""

import json

import mrcfile
import numpy as np
import pytest

from flexcore.core.errors import ConfigError
from flexcore.core.io import read_particles
from flexcore.stages.simulate import run_simulate


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    res = run_simulate(out, n_particles=300, box=48, pixel_size_A=2.6, snr=0.5, seed=5,
                       n_gt_maps=5)
    return out, res


def test_outputs_load_and_carry_ground_truth(sim):
    out, res = sim
    table = read_particles(res.particles)
    assert len(table) == 300 and table.has_poses and table.box == 48
    assert table.pixel_size_A == pytest.approx(2.6)
    truth = np.asarray(table.raw["flexTrueCoord1"])
    assert truth.min() >= -1 and truth.max() <= 1 and truth.std() > 0.4
    csv = np.loadtxt(out / "ground_truth.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(csv[:, 1], truth, atol=1e-5)
    info = json.loads((out / "ground_truth.json").read_text())
    assert len(info["gt_maps"]) == 5 and info["n_particles"] == 300
    for name in ("consensus.mrc", "mask.mrc", "moving_mask.mrc"):
        with mrcfile.open(out / name) as m:
            assert m.data.shape == (48, 48, 48)
            assert m.voxel_size.x == pytest.approx(2.6, abs=1e-4)


def test_snr_is_what_was_asked(sim):
    out, _ = sim
    info = json.loads((out / "ground_truth.json").read_text())
    images = mrcfile.read(out / "particles.mrcs")
    total = images.var(axis=(1, 2)).mean()
    noise = info["noise_sigma"] ** 2
    assert (total - noise) / noise == pytest.approx(0.5, rel=0.15)


def test_motion_moves_only_the_moving_domain(sim):
    out, res = sim
    first = mrcfile.read(res.gt_maps[0])
    last = mrcfile.read(res.gt_maps[-1])
    moving = mrcfile.read(out / "moving_mask.mrc") > 0.5
    diff = np.abs(first - last)
    assert diff[moving].sum() > 0.95 * diff.sum()
    assert diff.sum() > 0.2 * np.abs(first).sum()  # a real motion, not a nudge


def test_same_seed_same_data(tmp_path):
    a = run_simulate(tmp_path / "a", n_particles=20, box=48, pixel_size_A=2.6, seed=11, n_gt_maps=3)
    b = run_simulate(tmp_path / "b", n_particles=20, box=48, pixel_size_A=2.6, seed=11, n_gt_maps=3)
    np.testing.assert_array_equal(mrcfile.read(tmp_path / "a" / "particles.mrcs"),
                                  mrcfile.read(tmp_path / "b" / "particles.mrcs"))
    assert (tmp_path / "a" / "particles.star").read_text() == \
        (tmp_path / "b" / "particles.star").read_text()
    assert a.summary["consensus_fsc0143_A"] == b.summary["consensus_fsc0143_A"]


def test_bad_sizes_are_refused_before_work(tmp_path):
    with pytest.raises(ConfigError, match="does not fit"):
        run_simulate(tmp_path, n_particles=10, box=24, pixel_size_A=1.0)
    with pytest.raises(ConfigError, match="n_motions"):
        run_simulate(tmp_path, n_particles=10, n_motions=3)
    assert not (tmp_path / "particles.star").exists()
