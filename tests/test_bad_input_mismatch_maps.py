"""Inputs from different runs, in one clear line naming the file: state-maps and localres
with half maps of two boxes, localres with a window larger than the box, evaluate with
another simulation, another dataset's prep or a folder that is not a simulation."""

from __future__ import annotations

import numpy as np
import pytest

from flexcore.cli.main import main as cli_main
from flexcore.core.io import write_map
from flexcore.stages.mesh.step import run_mesh
from flexcore.stages.prep.step import run_prep
from flexcore.stages.simulate import run_simulate
from flexcore.stages.train import run_train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """sim (120 particles, 24 px, 5 Å) → prep (16 px) → mesh → one epoch of training; and a
    second simulation (another seed, 100 particles) with its prep."""
    root = tmp_path_factory.mktemp("mismatch")
    run_simulate(root / "sim", n_particles=120, box=24, pixel_size_A=5.0, seed=1, n_gt_maps=3)
    run_prep(root / "sim/particles.star", root / "sim/consensus.mrc", root / "prep", train_box=16)
    run_mesh(root / "prep/consensus.mrc", root / "mesh", mask=root / "sim/mask.mrc", n_cells=6)
    run_train(root / "prep", root / "mesh/mesh.npz", root / "train",
              {"latent_dim": 2, "epochs": 1, "batch_size": 60, "n_candidates": 2})
    run_simulate(root / "sim2", n_particles=100, box=24, pixel_size_A=5.0, seed=2, n_gt_maps=3)
    run_prep(root / "sim2/particles.star", root / "sim2/consensus.mrc", root / "prep2",
             train_box=16)
    return root


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def halves_of_two_boxes(run, tmp_path):
    """A reconstruction folder whose half B is another box (same extent: 24 px at 5 Å and
    20 px at 6 Å)."""
    rng = np.random.default_rng(0)
    for kind in ("flex", "noflex"):
        write_map(tmp_path / f"{kind}_map_half_A.mrc", rng.normal(size=(24,) * 3), 5.0)
        write_map(tmp_path / f"{kind}_map_half_B.mrc", rng.normal(size=(20,) * 3), 6.0)
    return tmp_path


def test_state_maps_with_half_maps_of_two_boxes(run, halves_of_two_boxes, tmp_path, capsys):
    np.savetxt(tmp_path / "points.txt", [[0.0, 0.0]])
    assert cli_main(["state-maps", str(run / "train/model.pt"), str(halves_of_two_boxes),
                     str(tmp_path / "out"), "--states", str(tmp_path / "points.txt"),
                     "--device", "cpu"]) == 1
    err = one_line_error(capsys)
    assert "flex_map_half_B.mrc: half map is 20 px at 6 Å/px but its other half" in err
    assert "both halves must come from one reconstruction" in err


def test_localres_with_half_maps_of_two_boxes(run, halves_of_two_boxes, tmp_path, capsys):
    assert cli_main(["localres", str(run / "train/model.pt"), str(halves_of_two_boxes),
                     str(tmp_path / "out"), "--device", "cpu"]) == 1
    assert "flex_map_half_B.mrc: half map is 20 px" in one_line_error(capsys)


def test_localres_window_larger_than_the_box(run, tmp_path, capsys):
    rng = np.random.default_rng(0)
    for half in "AB":
        write_map(tmp_path / f"flex_map_half_{half}.mrc", rng.normal(size=(24,) * 3), 5.0)
    assert cli_main(["localres", str(run / "train/model.pt"), str(tmp_path),
                     str(tmp_path / "out"), "--window-px", "64", "--device", "cpu"]) == 1
    err = one_line_error(capsys)
    assert "localres.window_px = 64: the window must fit in half the reconstruction's 24 px " \
           "box (at most 12 px)" in err


def test_evaluate_with_inputs_of_other_runs(run, tmp_path, capsys):
    ck = str(run / "train/model.pt")
    # another simulation's ground truth (fewer particles than prep links to)
    assert cli_main(["evaluate", str(run / "sim2"), str(run / "prep"), ck,
                     str(tmp_path / "a")]) == 1
    err = one_line_error(capsys)
    assert f"{run / 'prep' / 'particles.star'}: was not prepared from the simulation" in err
    # another dataset's prep (from the second simulation) with this model
    assert cli_main(["evaluate", str(run / "sim2"), str(run / "prep2"), ck,
                     str(tmp_path / "b")]) == 1
    err = one_line_error(capsys)
    assert "model.pt: holds latents for 120 particles but" in err
    assert "the model was trained on another prep" in err
    # a folder that is not a simulation
    assert cli_main(["evaluate", str(run / "prep"), str(run / "prep"), ck,
                     str(tmp_path / "c")]) == 1
    assert "is not a `flexcore simulate` folder" in one_line_error(capsys)


def test_evaluate_reconstruction_with_inputs_of_other_runs(run, halves_of_two_boxes, tmp_path):
    from flexcore.core.errors import InputFileError
    from flexcore.stages.evaluate_reconstruction.step import run_evaluate_reconstruction

    ck, recon = run / "train/model.pt", halves_of_two_boxes
    for name in ("flex_map", "noflex_map"):
        write_map(recon / f"{name}.mrc", np.zeros((24,) * 3), 5.0)
    with pytest.raises(InputFileError, match="is not a `flexcore simulate` folder"):
        run_evaluate_reconstruction(run / "prep", run / "prep", ck, recon, tmp_path / "a")
    with pytest.raises(InputFileError, match="was not prepared from the simulation"):
        run_evaluate_reconstruction(run / "sim2", run / "prep", ck, recon, tmp_path / "b")
    with pytest.raises(InputFileError, match="flex_map_half_B.mrc: map is 20 px but "
                                             "flex_map_half_A.mrc is 24 px"):
        run_evaluate_reconstruction(run / "sim", run / "prep", ck, recon, tmp_path / "c")
