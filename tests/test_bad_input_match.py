"""Particles that do not match the consensus map are refused by prep, naming the likely
causes, instead of being flipped on a correlation that is chance: shifts off by 100 Å,
shifts in pixels read as Å. Matching particles pass and prep.json records their score;
origins beyond half the box are counted in a warning."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from flexcore.core.errors import InputFileError
from flexcore.core.io import read_particles, write_star
from flexcore.stages.prep.step import MIN_MATCH_SCORE, run_prep
from flexcore.stages.simulate import run_simulate

PSIZE = 4.0


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """256 particles, 32 px at 4 Å, SNR 0.1, origins of SD 5 px (20 Å)."""
    out = tmp_path_factory.mktemp("match")
    run_simulate(out, n_particles=256, box=32, pixel_size_A=PSIZE, snr=0.1, seed=0,
                 n_gt_maps=2, shift_sigma_px=5.0)
    return out


def with_shifts(sim, name, change):
    """A copy of the particle file (beside its stack) with ``change(shifts_A)`` as origins."""
    table = read_particles(sim / "particles.star")
    table.shifts_A = change(table.shifts_A.copy())
    write_star(table, sim / name)
    return sim / name


CAUSES = ["shifts in pixels read as Å", "a wrong pixel size", "another refinement"]


@pytest.mark.parametrize("name, change", [
    ("off_by_100.star", lambda s: s + np.array([100.0, 0.0])),
    ("pixels_as_angstrom.star", lambda s: s / PSIZE),  # origins in px written as Å
])
def test_particles_that_do_not_match_the_map_are_refused(sim, tmp_path, name, change):
    star = with_shifts(sim, name, change)
    with pytest.raises(InputFileError) as err:
        run_prep(star, sim / "consensus.mrc", tmp_path / "out", train_box=32)
    msg = str(err.value)
    assert msg.startswith(str(star)) and "do not match the consensus map" in msg
    assert all(cause in msg for cause in CAUSES), msg
    score = float(msg.split(", ")[1].split("×")[0])
    assert score < MIN_MATCH_SCORE
    assert not (tmp_path / "out" / "particles.mrcs").exists()


def test_without_auto_sign_a_mismatch_is_not_called_inverted_contrast(sim, tmp_path):
    star = with_shifts(sim, "off_by_100_b.star", lambda s: s + np.array([100.0, 0.0]))
    with pytest.raises(InputFileError) as err:
        run_prep(star, sim / "consensus.mrc", tmp_path / "out", train_box=32, auto_sign=False)
    assert "do not match" in str(err.value) and "auto_sign" not in str(err.value)


def test_matching_particles_pass_and_prep_records_their_score(sim, tmp_path):
    info = run_prep(sim / "particles.star", sim / "consensus.mrc", tmp_path, train_box=32)
    assert info.image_sign == 1.0
    assert info.map_match_score > 2 * MIN_MATCH_SCORE and info.map_correlation > 0.3
    record = json.loads((tmp_path / "prep.json").read_text())
    assert record["map_match_score"] == pytest.approx(info.map_match_score)


def test_origins_beyond_half_the_box_are_counted_in_a_warning(sim, tmp_path, caplog):
    def move_some(s):
        s[:20] = [70.0, 0.0]  # 70 Å > half the 128 Å box
        return s

    star = with_shifts(sim, "some_far.star", move_some)
    with caplog.at_level(logging.WARNING, logger="flexcore"):
        run_prep(star, sim / "consensus.mrc", tmp_path, train_box=32)
    assert "20 of 256 particles have origin shifts larger than half the box (64 Å)" in caplog.text
