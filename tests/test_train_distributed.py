"""Training on two ranks (torchrun, gloo, one thread each) learns what one process learns
from the same seed, writes the same outputs once, and checkpoints that resume on another
number of ranks with their latents in particle order."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from ranks import torchrun_flexcore
from scipy.stats import spearmanr

from flexcore.core.checkpoint import load_checkpoint, save_checkpoint
from flexcore.core.fsc import fsc_curve
from flexcore.core.io import read_particles
from flexcore.core.mesh import TetMesh
from flexcore.core.schedule import k_max_for_epoch
from flexcore.core.train_config import TrainConfig
from flexcore.stages.mesh.step import run_mesh
from flexcore.stages.prep.step import run_prep
from flexcore.stages.simulate import run_simulate
from flexcore.stages.train import run_train

BOX = 32
CONFIG = {"latent_dim": 1, "epochs": 6, "batch_size": 64, "device": "cpu"}
# latent inference that keeps every latent where it is: what a resumed run holds is visible
FROZEN = {"latent_dim": 1, "epochs": 2, "batch_size": 64, "device": "cpu", "n_candidates": 0,
          "grid_points": 1, "latent_steps": 0}


def sets(config: dict) -> list[str]:
    return [a for k, v in config.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def hinge(tmp_path_factory):
    """1000 simulated particles at box 32 (5 Å/px), SNR 0.1, one 25° hinge motion."""
    root = tmp_path_factory.mktemp("hinge_ddp")
    sim = run_simulate(root / "sim", n_particles=1000, box=BOX, pixel_size_A=160.0 / BOX, snr=0.1,
                       max_angle_deg=25.0, seed=1, n_gt_maps=2)
    run_prep(sim.particles, sim.consensus, root / "prep", train_box=BOX)
    run_mesh(root / "prep" / "consensus.mrc", root / "mesh", mask=sim.mask, n_cells=16)
    truth = np.loadtxt(root / "sim" / "ground_truth.csv", delimiter=",", skiprows=1)[:, 1]
    return root, root / "prep", root / "mesh" / "mesh.npz", truth


@pytest.fixture(scope="module")
def one_and_two(hinge):
    root, prep, mesh, _ = hinge
    run_train(prep, mesh, root / "one", CONFIG)
    done = torchrun_flexcore(2, ["train", prep, mesh, root / "two", *sets(CONFIG)],
                             root / "two.log")
    assert done.returncode == 0, (root / "two.log").read_text()[-3000:]
    return root / "one", root / "two", (root / "two.log").read_text()


def test_two_ranks_learn_what_one_rank_learns(hinge, one_and_two):
    root, _, mesh, truth = hinge
    one, two, log = one_and_two
    assert "data parallel on 2 ranks: this rank holds 500 particles, 32 per step of 64" in log
    rho = {}
    for name, folder in (("one", one), ("two", two)):
        z = np.load(folder / "latents.npy")
        assert z.shape == (1000, 1)
        rho[name] = abs(spearmanr(z[:, 0], truth)[0])  # latents in particle order
    assert rho["one"] > 0.8 and abs(rho["two"] - rho["one"]) <= 0.02, rho
    a = load_checkpoint(one / "model.pt")
    b = load_checkpoint(two / "model.pt")
    assert a["epoch"] == b["epoch"] == 6
    assert np.array_equal(a["train_idx"], b["train_idx"]) and np.array_equal(a["val_idx"], b["val_idx"])
    # the canonical maps, where the model uses them (the mesh's soft mask), up to the
    # training resolution (the last epoch's band limit)
    mask = TetMesh.load(mesh).mask_soft
    fsc = fsc_curve(a["volume"].numpy(), b["volume"].numpy(), mask=mask)
    k_max = k_max_for_epoch(TrainConfig(**CONFIG), 5, a["pixel_size_A"])
    shells = int(np.floor(k_max * BOX))
    assert shells == 12 and fsc[1:shells + 1].min() >= 0.99, np.round(fsc, 4)
    # validation NLL summed over both ranks' held-out particles, like one rank's
    va, vb = a["history"][-1], b["history"][-1]
    assert vb["val_nll_flow"] < vb["val_nll_rigid"]
    assert abs(vb["val_nll_flow"] - va["val_nll_flow"]) < 0.01 * abs(va["val_nll_flow"])


def test_two_ranks_write_one_set_of_outputs(one_and_two):
    one, two, log = one_and_two
    files = sorted(str(p.relative_to(two)) for p in two.rglob("*"))
    assert files == sorted(str(p.relative_to(one)) for p in one.rglob("*"))
    assert not [f for f in files if ".part" in f]
    z = np.load(two / "latents.npy")
    star = read_particles(two / "latents.star")
    np.testing.assert_allclose(np.asarray(star.raw["flexLatent1"]), z[:, 0], atol=1e-5)
    record = json.loads((two / "train.json").read_text())
    assert record["ranks"] == 2 and record["n_particles"] == 1000
    assert json.loads((one / "train.json").read_text())["ranks"] == 1
    assert log.count("wrote latents for 1000 particles") == 1  # rank 0 alone


def mark_latents(checkpoint) -> np.ndarray:
    """Replace a checkpoint's latents by a ramp over the particles (a marker of their order)."""
    state = load_checkpoint(checkpoint)
    n = state["latents"].shape[0]
    marker = np.linspace(-1.0, 1.0, n, dtype=np.float32)[:, None]
    state["latents"] = torch.from_numpy(marker.copy())
    save_checkpoint(checkpoint, state)
    return marker


def check_resumed(folder, marker, history) -> None:
    state = load_checkpoint(folder / "model.pt")
    assert state["epoch"] == 3 and len(state["history"]) == 3
    assert state["history"][:2] == history  # the epochs before the resume are carried
    assert (folder / "checkpoints" / "checkpoint_epoch003.pt").is_file()
    np.testing.assert_array_equal(state["latents"].numpy(), marker)  # in particle order
    np.testing.assert_array_equal(np.load(folder / "latents.npy"), marker)


def test_a_two_rank_checkpoint_resumes_on_one_rank(hinge, tmp_path, caplog):
    _, prep, mesh, _ = hinge
    out = tmp_path / "run"
    done = torchrun_flexcore(2, ["train", prep, mesh, out, *sets(FROZEN)], tmp_path / "log")
    assert done.returncode == 0, (tmp_path / "log").read_text()[-3000:]
    history = load_checkpoint(out / "model.pt")["history"]
    marker = mark_latents(out / "checkpoints" / "checkpoint_last.pt")
    with caplog.at_level(logging.INFO, logger="flexcore"):
        run_train(prep, mesh, out, {**FROZEN, "extra_epochs": 1}, on_existing="resume")
    assert "(epoch 2 of 3 done)" in caplog.text
    check_resumed(out, marker, history)


def test_a_one_rank_checkpoint_resumes_on_two_ranks(hinge, tmp_path):
    _, prep, mesh, _ = hinge
    out = tmp_path / "run"
    run_train(prep, mesh, out, FROZEN)
    history = load_checkpoint(out / "model.pt")["history"]
    marker = mark_latents(out / "checkpoints" / "checkpoint_last.pt")
    done = torchrun_flexcore(2, ["train", prep, mesh, out, *sets({**FROZEN, "extra_epochs": 1}),
                                 "--resume"], tmp_path / "log")
    log = (tmp_path / "log").read_text()
    assert done.returncode == 0, log[-3000:]
    assert "(epoch 2 of 3 done)" in log
    check_resumed(out, marker, history)


def test_a_two_rank_run_resumed_on_two_ranks_repeats_itself_bit_for_bit(hinge, tmp_path):
    _, prep, mesh, _ = hinge
    config = {**FROZEN, "n_candidates": 2, "grid_points": 3, "latent_steps": 1}
    whole = tmp_path / "whole"
    done = torchrun_flexcore(2, ["train", prep, mesh, whole, *sets(config)], tmp_path / "log")
    assert done.returncode == 0, (tmp_path / "log").read_text()[-3000:]
    cut = tmp_path / "cut"  # the same run, as if killed after its first epoch
    shutil.copytree(whole, cut)
    ck = cut / "checkpoints"
    shutil.copy(ck / "checkpoint_epoch001.pt", ck / "checkpoint_last.pt")
    (ck / "checkpoint_epoch002.pt").unlink()
    (cut / "model.pt").unlink()
    done = torchrun_flexcore(2, ["train", prep, mesh, cut, *sets(config), "--resume"],
                             tmp_path / "log_cut")
    log = (tmp_path / "log_cut").read_text()
    assert done.returncode == 0 and "(epoch 1 of 2 done)" in log, log[-3000:]
    a, b = load_checkpoint(whole / "model.pt"), load_checkpoint(cut / "model.pt")
    assert torch.equal(a["volume"], b["volume"]) and torch.equal(a["latents"], b["latents"])
    assert all(torch.equal(a["flow"][k], b["flow"][k]) for k in a["flow"])
    assert a["history"][1]["train_nll"] == b["history"][1]["train_nll"]


def test_a_refused_folder_stops_every_rank_with_one_message(hinge, tmp_path):
    _, prep, mesh, _ = hinge
    out = tmp_path / "run"
    run_train(prep, mesh, out, {**FROZEN, "epochs": 1})
    done = torchrun_flexcore(2, ["train", prep, mesh, out, *sets({**FROZEN, "epochs": 1})],
                             tmp_path / "log")
    log = (tmp_path / "log").read_text()
    assert done.returncode != 0
    assert log.count("flexcore train: error:") == 1 and "a compatible checkpoint is here" in log
