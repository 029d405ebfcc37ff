"""Runs that resume: an interrupted training continues from its last checkpoint to the same
result; the CLI refuses a folder holding a run and names --resume / --restart; a checkpoint
of a different run is a clear error, or (the workflow's mode) replaced with a log line and
no stale per-epoch files; an interrupted reconstruction reuses finished halves and
continues a solve at its last L-BFGS iteration, to the same maps."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

import flexcore.stages.reconstruct.halves as recon_step
import flexcore.stages.train.step as train_step
from flexcore.cli.main import main as cli_main
from flexcore.core.io import read_map
from flexcore.stages.mesh.step import run_mesh
from flexcore.stages.prep.step import run_prep
from flexcore.stages.reconstruct.outputs import OUTPUTS as RECON_OUTPUTS
from flexcore.stages.reconstruct.step import run_reconstruct
from flexcore.stages.simulate import run_simulate
from flexcore.stages.train import run_train

# On the CPU a resumed run repeats the uninterrupted one bit for bit (GPU atomics would not).
CONFIG = {"latent_dim": 1, "epochs": 2, "batch_size": 64, "n_candidates": 2, "grid_points": 3,
          "latent_steps": 1, "seed": 4, "device": "cpu"}
SETS = [a for k, v in CONFIG.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Prepared particles, a mesh, and a finished 2-epoch training ("full")."""
    root = tmp_path_factory.mktemp("resume")
    sim = run_simulate(root / "sim", n_particles=256, box=32, pixel_size_A=4.0, snr=0.5,
                       max_angle_deg=25.0, seed=4, n_gt_maps=2)
    run_prep(sim.particles, sim.consensus, root / "prep", train_box=32)
    run_mesh(root / "prep" / "consensus.mrc", root / "mesh", mask=sim.mask, n_cells=5)
    run_train(root / "prep", root / "mesh" / "mesh.npz", root / "full", CONFIG)
    return root


class Interrupt(BaseException):
    """Stands for the process being killed (nothing in flexcore catches it)."""


def interrupt_on_call(monkeypatch, module, name, n):
    """Make ``module.name`` raise :class:`Interrupt` on its ``n``-th call."""
    original = getattr(module, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise Interrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_interrupted_training_resumes_to_the_same_result(run, tmp_path, monkeypatch, capsys,
                                                         caplog):
    cut = tmp_path / "cut"
    # killed right after epoch 1's checkpoint was written (its loss plot is next)
    interrupt_on_call(monkeypatch, train_step, "plot_losses", 1)
    with pytest.raises(Interrupt):
        run_train(run / "prep", run / "mesh" / "mesh.npz", cut, CONFIG)
    monkeypatch.undo()
    assert (cut / "checkpoints" / "checkpoint_epoch001.pt").is_file()
    assert not (cut / "model.pt").exists()

    cli = ["train", str(run / "prep"), str(run / "mesh" / "mesh.npz"), str(cut), *SETS]
    assert cli_main(cli) == 1  # a folder holding a run is refused ...
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "checkpoint_last.pt: a compatible checkpoint is here (1 of 2 epochs done): continue " \
           "it with --resume, or start afresh with --restart" in err
    with caplog.at_level(logging.INFO, logger="flexcore"):
        assert cli_main(cli + ["--resume"]) == 0  # ... and continued with --resume
    assert "(epoch 1 of 2 done)" in caplog.text and "resumed from" in caplog.text
    assert (cut / "latents.npy").read_bytes() == (run / "full" / "latents.npy").read_bytes()
    a = torch.load(run / "full" / "model.pt", weights_only=True)
    b = torch.load(cut / "model.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    assert torch.equal(a["volume"], b["volume"]) and torch.equal(a["latents"], b["latents"])
    assert [h["train_nll"] for h in a["history"]] == [h["train_nll"] for h in b["history"]]


def test_resume_with_another_mesh_names_the_difference(run, tmp_path, capsys):
    run_mesh(run / "prep" / "consensus.mrc", tmp_path / "mesh6", n_cells=6)
    folder = tmp_path / "full"
    shutil.copytree(run / "full", folder)
    rc = cli_main(["train", str(run / "prep"), str(tmp_path / "mesh6" / "mesh.npz"), str(folder),
                   *SETS, "--set", "rigidity_lambda=4.0", "--resume"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert "cannot resume" in err and "the mesh differs (SHA-256)" in err
    assert "train.rigidity_lambda is 0.5 there, 4.0 now" in err and "size mismatch" not in err


def test_a_different_run_starts_afresh_without_stale_epoch_files(run, tmp_path, capsys, caplog):
    folder = tmp_path / "full"
    shutil.copytree(run / "full", folder)
    args = (run / "prep", run / "mesh" / "mesh.npz", folder)
    one_epoch = {**CONFIG, "epochs": 1}
    rc = cli_main(["train", *map(str, args), *SETS, "--set", "epochs=1"])
    err = capsys.readouterr().err
    assert rc == 1 and "train.epochs is 2 there, 1 now (to train a run longer, raise " \
                       "extra_epochs instead)" in err and "--restart" in err
    with caplog.at_level(logging.INFO, logger="flexcore"):
        run_train(*args, one_epoch, on_existing="auto")  # the workflow's mode
    assert "starting afresh" in caplog.text and "train.epochs is 2 there, 1 now" in caplog.text
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == [
        "checkpoint_epoch001.pt", "checkpoint_last.pt"]
    assert sorted(p.name for p in folder.glob("latents_epoch*.png")) == ["latents_epoch001.png"]
    assert torch.load(folder / "model.pt", weights_only=True)["epoch"] == 1
    # the same configuration again: "auto" resumes the finished run (no epoch is trained)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="flexcore"):
        summary = run_train(*args, one_epoch, on_existing="auto")
    assert summary["resumed_from_epoch"] == 1 and "epoch 1/1" not in caplog.text


def test_interrupted_reconstruction_continues_to_the_same_maps(run, tmp_path, monkeypatch,
                                                               caplog):
    model, prep = run / "full" / "model.pt", run / "prep"
    kwargs = {"iterations": 2, "batch_size": 128, "device": "cpu"}
    monkeypatch.setattr("flexcore.stages.reconstruct.resume.PROGRESS_INTERVAL_S", 0.0)  # save every iteration
    run_reconstruct(model, prep, tmp_path / "whole", **kwargs)
    # killed in half B's flex solve, after its start map and first L-BFGS iteration:
    # each solve evaluates the gradient 3 times (start + 2 iterations), halves A then B
    out = tmp_path / "cut"
    original_value_and_grad = recon_step.HalfObjective.value_and_grad
    interrupt_on_call(monkeypatch, recon_step.HalfObjective, "value_and_grad", 3 + 3 + 2 + 1)
    with pytest.raises(Interrupt):
        run_reconstruct(model, prep, out, **kwargs)
    monkeypatch.setattr(recon_step.HalfObjective, "value_and_grad", original_value_and_grad)
    assert {p.name for p in (out / "partial").iterdir()} >= {"start_A.pt", "flex_A.pt",
                                                             "noflex_A.pt", "start_B.pt",
                                                             "flex_B.pt"}
    gradients = interrupt_on_call(monkeypatch, recon_step.HalfObjective, "value_and_grad", 0)
    starts = interrupt_on_call(monkeypatch, recon_step, "wiener_start", 0)
    with caplog.at_level(logging.INFO, logger="flexcore"):
        run_reconstruct(model, prep, out, **kwargs)
    assert len(gradients) == 1 + 3 and not starts  # half A reused; B's flex continues
    assert "half A: reusing the flex and noflex solve(s)" in caplog.text
    assert "continuing an interrupted solve at iteration 1" in caplog.text
    for name in RECON_OUTPUTS:
        if name.endswith(".mrc"):
            np.testing.assert_array_equal(read_map(out / name)[0],
                                          read_map(tmp_path / "whole" / name)[0], err_msg=name)
    strip = [line.split("\t")[:6] for line in (out / "lbfgs.tsv").read_text().splitlines()]
    again = [line.split("\t")[:6] for line in (tmp_path / "whole" / "lbfgs.tsv").read_text()
             .splitlines()]
    assert strip == again  # the same iterations, objectives and steps (times aside)
    assert not (out / "partial").exists()
