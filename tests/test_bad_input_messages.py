"""Mistakes users make are one-line messages naming the key or the file, not tracebacks:
training parameters of the wrong type (from --set or a --config file), a .cs without
shifts (a warning that they are taken as zero), a map whose header has voxel size 0."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from flexcore.cli.main import main as cli_main
from flexcore.core.errors import InputFileError
from flexcore.core.io import read_map, read_particles, write_cs, write_map
from flexcore.stages.prep.step import run_prep
from flexcore.stages.simulate import run_simulate


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("messages")
    run_simulate(out, n_particles=32, box=32, pixel_size_A=4.0, snr=0.5, seed=7, n_gt_maps=2)
    return out


def train_cli(tmp_path, *args):
    # The configuration is checked before any file is read: no prepared data are needed.
    return cli_main(["train", str(tmp_path / "prep"), str(tmp_path / "mesh.npz"),
                     str(tmp_path / "train"), *args])


@pytest.mark.parametrize("args, message", [
    (["--set", "epochs=two"], "train.epochs = 'two': must be an integer, got str 'two'"),
    (["--set", "rigidity_lambda=[1, 2]"], "train.rigidity_lambda = [1, 2]: must be a number, "
                                          "got a list"),
    (["--set", "multires=1"], "train.multires = 1: must be true or false, got int 1"),
    (["--set", "epochs=[1,"], "--set epochs=[1,: the value is not valid YAML (expected the node "
                              "content, but found '<stream end>' at line 1, column 4)"),
])
def test_training_parameter_of_the_wrong_type_is_one_line(tmp_path, capsys, args, message):
    assert train_cli(tmp_path, *args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "train").exists()


def test_list_values_in_a_config_file_are_one_line(tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text("latent_dim: 2\nepochs:\n  - 8\n  - 16\n")
    assert train_cli(tmp_path, "--config", str(config)) == 1
    err = capsys.readouterr().err.strip()
    assert err == "flexcore train: error: train.epochs = [8, 16]: must be an integer, got a list"
    config.write_text("epochs: [8\n")
    assert train_cli(tmp_path, "--config", str(config)) == 1
    assert f"{config}: not valid YAML" in capsys.readouterr().err


def test_cs_without_shifts_warns_that_they_are_zero(sim, tmp_path, caplog):
    table = read_particles(sim / "particles.star")
    write_cs(table, tmp_path / "full.cs")
    arr = np.load(tmp_path / "full.cs")
    keep = [n for n in arr.dtype.names if n != "alignments3D/shift"]
    with open(tmp_path / "noshift.cs", "wb") as f:
        np.save(f, arr[keep])
    with caplog.at_level(logging.WARNING, logger="flexcore"):
        noshift = read_particles(tmp_path / "noshift.cs")
    assert "noshift.cs: has alignments3D/pose but no alignments3D/shift; the particles' shifts " \
           "are taken as zero" in caplog.text
    assert (noshift.shifts_A == 0).all() and noshift.rotations is not None
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flexcore"):
        read_particles(tmp_path / "full.cs")
    assert "alignments3D/shift" not in caplog.text


def test_a_map_with_voxel_size_zero_is_refused(sim, tmp_path):
    volume, _ = read_map(sim / "consensus.mrc")
    write_map(tmp_path / "nosize.mrc", volume, 0.0)
    assert read_map(tmp_path / "nosize.mrc")[1] == 0.0
    with pytest.raises(InputFileError, match=r"nosize\.mrc: voxel size is 0 in the map's header.*"
                                             r"--angpix 4"):
        run_prep(sim / "particles.star", tmp_path / "nosize.mrc", tmp_path / "out", train_box=32)
    assert not (tmp_path / "out").exists()


def test_pixel_size_option_must_be_positive_and_is_said_to_be_unused(sim, tmp_path, capsys,
                                                                    caplog):
    args = ["prep", str(sim / "particles.star"), str(sim / "consensus.mrc"),
            str(tmp_path / "prep"), "--train-box", "16"]
    assert cli_main(args + ["--pixel-size", "-1"]) == 1
    assert "pixel_size_A (--pixel-size) must be a positive size in Å, got -1" in \
        capsys.readouterr().err
    with caplog.at_level(logging.WARNING, logger="flexcore"):
        assert cli_main(args + ["--pixel-size", "2.5"]) == 0
    assert "carries its own pixel size (4 Å), which is used; --pixel-size 2.5" in caplog.text


def test_weak_map_agreement_says_what_it_usually_means(caplog):
    from flexcore.stages.prep.step import check_agreement

    with caplog.at_level(logging.WARNING, logger="flexcore"):
        sign = check_agreement({"correlation": 0.05, "score": 3.3}, "p.star", "map.mrc", True)
    assert sign == 1.0
    assert "only weakly (correlation +0.050" in caplog.text
    assert "random poses score about 2" in caplog.text
    assert "a map of the wrong hand (a mirrored map scores about 3: flip it" in caplog.text
