"""Half sets: complete, two-sided and no image in both halves, everywhere a half-map FSC is
computed (prep, reconstruct-rigid). Each image listed twice, once in each half set, must not
inflate the reported resolution; one-sided or missing splits are re-drawn; nothing writes a
NaN map and exits 0.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
import starfile

from flexcore.cli.main import main as cli_main
from flexcore.core.errors import InputFileError
from flexcore.core.half_sets import assign_half_sets, join_copies, random_split
from flexcore.core.io import read_map, read_particles
from flexcore.stages.prep.step import run_prep
from flexcore.stages.reconstruct.step import run_reconstruct_rigid
from flexcore.stages.simulate import run_simulate

N = 300


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("halves")
    s = run_simulate(root / "sim", n_particles=N, box=24, pixel_size_A=5.0, snr=0.05, seed=2)
    return root, s


def rewrite(src, dst, particles: pd.DataFrame) -> None:
    """``src`` STAR with its particle block replaced (optics kept)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        blocks = starfile.read(src, always_dict=True)
    blocks["particles"] = particles.reset_index(drop=True)
    starfile.write(blocks, dst, overwrite=True)


def particle_block(path) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return starfile.read(path, always_dict=True)["particles"]


def test_split_rules_on_image_ids():
    groups = np.array([0, 1, 2, 0, 1, 2, 3])  # images 0-2 listed twice
    half = np.array([0, 0, 0, 1, 1, 1, 1], dtype=np.int8)
    joined, n = join_copies(half, groups)
    assert n == 3
    for g in range(4):  # every image's copies in one half; the halves stay balanced
        assert len(set(joined[groups == g])) == 1
    assert abs(int((joined == 0).sum()) - int((joined == 1).sum())) <= 1
    np.testing.assert_array_equal(  # without copies: the permutation prep always drew
        random_split(np.arange(9), 4),
        np.random.default_rng(4).permutation(np.arange(9) % 2).astype(np.int8))
    got, origin = assign_half_sets(np.ones(6, np.int8), np.arange(6), resplit=False, seed=0,
                                   where="p.star")  # one-sided: re-drawn
    assert origin == "random (seed 0)" and sorted(np.bincount(got)) == [3, 3]
    with pytest.raises(InputFileError, match="half set B has no particles .* 1 distinct"):
        assign_half_sets(np.array([0, 1]), np.array([0, 0]), resplit=False, seed=0,
                         where="p.star")


def test_duplicated_particles_do_not_inflate_the_resolution(sim, tmp_path, caplog):
    """Each particle twice, once in each half set (the second copy through a symlink to
    the same stack): the copies are joined in one half set, with a warning giving the
    count, and the resolution is that of the set without copies, not Nyquist."""
    root, s = sim
    df = particle_block(s.particles)
    (s.particles.parent / "link.mrcs").symlink_to(s.particles.parent / "particles.mrcs")
    second = df.assign(rlnRandomSubset=2, rlnImageName=df["rlnImageName"].str.replace(
        "particles.mrcs", "link.mrcs"))
    dup = s.particles.parent / "duplicated.star"
    rewrite(s.particles, dup, pd.concat([df.assign(rlnRandomSubset=1), second]))
    single = run_reconstruct_rigid(s.particles, tmp_path / "single")
    with caplog.at_level(logging.WARNING, logger="flexcore"):
        double = run_reconstruct_rigid(dup, tmp_path / "double")
    assert f"{N} images are listed more than once and had copies in both half sets" \
        in caplog.text
    nyquist = 2 * 5.0
    assert single["resolution_0143_A"] > 1.3 * nyquist  # the data do not reach Nyquist ...
    # ... and neither do the same data listed twice (before: FSC ≈ 1 everywhere, Nyquist)
    assert double["resolution_0143_A"] > 0.85 * single["resolution_0143_A"]
    fsc = pd.read_csv(tmp_path / "double" / "fsc.tsv", sep="\t")
    assert fsc.iloc[-1, -1] < 0.5  # the last shell's FSC: no shared noise between halves


def test_prep_joins_copies_and_redraws_one_sided_splits(sim, tmp_path, caplog):
    root, s = sim
    df = particle_block(s.particles)
    dup = tmp_path / "dup.star"
    rewrite(s.particles, dup, pd.concat([df.assign(rlnRandomSubset=1),
                                         df.assign(rlnRandomSubset=2)]))
    (tmp_path / "particles.mrcs").symlink_to(s.particles.parent / "particles.mrcs")
    with caplog.at_level(logging.WARNING, logger="flexcore"):
        info = run_prep(dup, s.consensus, tmp_path / "prep", train_box=16)
    assert f"{N} images are listed more than once" in caplog.text
    prepared = read_particles(tmp_path / "prep" / "particles.star")
    np.testing.assert_array_equal(prepared.half_set[:N], prepared.half_set[N:])
    assert info.half_counts == (N, N) and "joined" in info.half_sets

    one = tmp_path / "one.star"
    rewrite(s.particles, one, df.assign(rlnRandomSubset=1))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flexcore"):
        info = run_prep(one, s.consensus, tmp_path / "prep1", train_box=16)
    assert "input half sets are incomplete (A 300, B 0" in caplog.text
    assert info.half_sets == "random (seed 0)" and info.half_counts == (N // 2, N // 2)


def test_rigid_reconstruction_of_a_one_sided_split_is_finite(sim, tmp_path, capsys):
    root, s = sim
    one = s.particles.parent / "one_sided.star"
    rewrite(s.particles, one, particle_block(s.particles).assign(rlnRandomSubset=2))
    assert cli_main(["reconstruct-rigid", str(one), str(tmp_path / "r")]) == 0
    for name in ("map.mrc", "map_half_A.mrc", "map_half_B.mrc"):
        assert np.isfinite(read_map(tmp_path / "r" / name)[0]).all()
    two = s.particles.parent / "two_images.star"
    rewrite(s.particles, two, particle_block(s.particles).iloc[[0, 0, 0]])
    assert cli_main(["reconstruct-rigid", str(two), str(tmp_path / "r2")]) == 1
    assert "half set B has no particles" in capsys.readouterr().err
    assert not (tmp_path / "r2" / "map.mrc").exists()


def test_reconstruction_resplit_keeps_copies_together():
    from flexcore.stages.reconstruct.inputs import choose_halves

    ids = np.array([0, 1, 2, 3, 0, 1, 2, 3, 4, 5])  # the source rows of images 0-3 twice
    for seed in range(5):
        half, origin = choose_halves(np.zeros(10, np.int8), True, seed, ids)
        assert origin == f"random (seed {seed})"
        for image in range(6):
            assert len(set(half[ids == image])) == 1
        assert sorted(np.bincount(half, minlength=2)) in ([4, 6], [5, 5])
    np.testing.assert_array_equal(  # no copies: the split drawn before image ids existed
        choose_halves(np.zeros(8, np.int8), True, 1, np.arange(8))[0],
        choose_halves(np.zeros(8, np.int8), True, 1)[0])
