"""Reconstruction past one process: two ranks (torchrun, gloo) give the half maps of one
rank to float tolerance (the objective is a sum over particles); the four solves run as
separate jobs and combined give the one-job outputs bit for bit; combining refuses solves
that do not belong together; a step started with ``gpus=N`` hands its ranks exactly the
arguments it was given."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from ranks import torchrun_flexcore

from flexcore.cli.main import main as cli_main
from flexcore.core.errors import ConfigError, InputFileError
from flexcore.core.io import read_map
from flexcore.core.utils import launch
from flexcore.stages.mesh.step import run_mesh
from flexcore.stages.prep.step import run_prep
from flexcore.stages.reconstruct.outputs import OUTPUTS
from flexcore.stages.reconstruct.params import SOLVES
from flexcore.stages.reconstruct.step import run_reconstruct, run_reconstruct_combine
from flexcore.stages.simulate import run_simulate
from flexcore.stages.train import run_train

KWARGS = {"iterations": 3, "batch_size": 50, "device": "cpu"}
MAPS = [n for n in OUTPUTS if n.endswith(".mrc")]


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    """A model trained on the true motion coordinate, and its one-process reconstruction."""
    root = tmp_path_factory.mktemp("recon_parallel")
    sim = run_simulate(root / "sim", n_particles=256, box=32, pixel_size_A=4.0, snr=0.5,
                       max_angle_deg=25.0, seed=4, n_gt_maps=2)
    run_prep(sim.particles, sim.consensus, root / "prep", train_box=32)
    run_mesh(root / "prep" / "consensus.mrc", root / "mesh", mask=sim.mask, n_cells=5)
    truth = np.loadtxt(root / "sim" / "ground_truth.csv", delimiter=",", skiprows=1)[:, 1:]
    np.save(root / "truth.npy", truth)
    run_train(root / "prep", root / "mesh" / "mesh.npz", root / "train",
              {"latent_dim": 1, "epochs": 2, "freeze_latents": True, "device": "cpu"},
              init_latents=root / "truth.npy")
    summary = run_reconstruct(root / "train" / "model.pt", root / "prep", root / "one", **KWARGS)
    return root, summary


def lbfgs_rows(folder) -> list[list[str]]:
    """solve, iteration, objective, grad_norm, step, step_norm, direction (no times)."""
    return [r.split("\t")[:7] for r in (folder / "lbfgs.tsv").read_text().splitlines()]


def test_two_ranks_reconstruct_what_one_rank_does(one, tmp_path, monkeypatch):
    root, summary = one
    # the step starts its own two ranks (what the workflow's script does with gpu: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with open(tmp_path / "log", "w") as log_file:
        monkeypatch.setattr("sys.stderr", log_file)
        rec = run_reconstruct(root / "train" / "model.pt", root / "prep", tmp_path / "two",
                              gpus=2, **KWARGS)
    log = (tmp_path / "log").read_text()
    assert "on 2 ranks" in log and log.count("wrote maps, fsc.tsv/png and lbfgs.tsv") == 1
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(OUTPUTS)  # no partial/
    for name in MAPS:
        a, b = read_map(root / "one" / name)[0], read_map(tmp_path / "two" / name)[0]
        assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max(), name
    written = json.loads((tmp_path / "two" / "recon.json").read_text())
    assert {k: written[k] for k in rec} == json.loads(json.dumps(rec))  # rank 0's return value
    assert rec["ranks"] == 2 and summary["ranks"] == 1
    for solve, objective in summary["objective"].items():
        assert rec["objective"][solve]["iterations"] == objective["iterations"] == 3
        for key in ("start", "final"):
            assert rec["objective"][solve][key] == pytest.approx(objective[key], rel=1e-7)
    # one solve on two ranks, started under torchrun by hand (as on several nodes)
    args = ["reconstruct", root / "train" / "model.pt", root / "prep", tmp_path / "halves",
            "--solve", "noflex_B", "--iterations", "3", "--batch-size", "50", "--device", "cpu"]
    solve = torchrun_flexcore(2, args, tmp_path / "log_half")
    assert solve.returncode == 0, (tmp_path / "log_half").read_text()[-3000:]
    a = read_map(root / "one" / "noflex_map_half_B.mrc")[0]
    b = read_map(tmp_path / "halves" / "noflex_map_half_B.mrc")[0]
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()


@pytest.fixture(scope="module")
def halves(one, tmp_path_factory):
    """The four solves, each run on its own."""
    root, _ = one
    folder = tmp_path_factory.mktemp("halves")
    records = {s: run_reconstruct(root / "train" / "model.pt", root / "prep", folder,
                                  solve=s, **KWARGS) for s in SOLVES}
    return folder, records


def test_separate_solves_combine_to_the_one_job_outputs(one, halves, tmp_path):
    root, summary = one
    folder, records = halves
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{s.split('_')[0]}_{kind}{s.split('_')[1]}{ext}" for s in SOLVES
        for kind, ext in (("map_half_", ".mrc"), ("half_", ".json")))  # no partial_* left
    assert cli_main(["reconstruct-combine", str(folder), str(tmp_path / "combined")]) == 0
    out = tmp_path / "combined"
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
    for name in MAPS:
        np.testing.assert_array_equal(read_map(out / name)[0], read_map(root / "one" / name)[0],
                                      err_msg=name)
    assert (out / "fsc.tsv").read_bytes() == (root / "one" / "fsc.tsv").read_bytes()
    assert lbfgs_rows(out) == lbfgs_rows(root / "one")
    rec = json.loads((out / "recon.json").read_text())
    assert rec["summary"] == summary["summary"] and rec["parameters"]["iterations"] == 3
    assert rec["parameters"]["rigid_baseline"] is True and rec["half_counts"] == summary["half_counts"]
    assert set(rec["passes"]) == set(SOLVES) and rec["solved_in"].startswith("separate jobs")


def test_combine_refuses_solves_that_do_not_belong_together(one, halves, tmp_path):
    root, _ = one
    folder, _ = halves
    mixed = tmp_path / "mixed"
    shutil.copytree(folder, mixed)
    run_reconstruct(root / "train" / "model.pt", root / "prep", tmp_path / "other",
                    solve="noflex_B", **{**KWARGS, "iterations": 2})
    for name in ("noflex_map_half_B.mrc", "noflex_half_B.json"):
        shutil.copy(tmp_path / "other" / name, mixed / name)
    with pytest.raises(InputFileError, match=r"noflex_half_B.json: was solved with other inputs "
                                             r"or parameters than flex_half_A.json \(they differ "
                                             r"in: parameters\)"):
        run_reconstruct_combine(mixed, tmp_path / "out")
    (mixed / "noflex_half_A.json").unlink()
    with pytest.raises(InputFileError, match="noflex_half_A.json: not found: the rigid baseline"):
        run_reconstruct_combine(mixed, tmp_path / "out")
    (mixed / "flex_half_B.json").unlink()
    with pytest.raises(InputFileError, match="flex_half_B.json: not found: combining needs the "
                                             "flex_B solve"):
        run_reconstruct_combine(mixed, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_step_on_ranks_hands_them_every_argument(tmp_path, monkeypatch, capsys):
    """run_reconstruct / run_train with gpus > 1 start torchrun on one JSON request holding
    every keyword argument (no command line round trip); the ranks' result comes back."""
    seen = {}

    def fake_run(cmd, **kwargs):
        request = json.loads(open(cmd[-1]).read())
        seen[request["function"]] = request["kwargs"]
        assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3",
                            "-m"] and cmd[6] == "flexcore.core.utils.launch"
        with open(request["result"], "w") as f:
            json.dump({"ok": True}, f)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(launch.subprocess, "run", fake_run)
    kwargs = dict(mesh="m.npz", iterations=7, batch_size=33, ridge=2.5e-05, resplit=True, seed=4,
                  in_ram=True, scratch_dir=str(tmp_path), rigid_baseline=False, bfactor=-12.5,
                  aberrations=True, device="cpu")
    assert run_reconstruct("ck.pt", "prep", "out", gpus=3, **kwargs) == {"ok": True}
    sent = seen["flexcore.stages.reconstruct.step:run_reconstruct"]
    assert sent == {**kwargs, "solve": None, "checkpoint": "ck.pt", "prep_dir": "prep",
                    "out_dir": "out", "gpus": 3}
    config = {"latent_dim": 2, "lr_flow_start": 1e-05, "multires": False, "convection": "pull",
              "device": "cpu", "seed": 3}
    assert run_train("prep", "mesh.npz", "out", config, init_latents="z.npy",
                     on_existing="auto", gpus=3) == {"ok": True}
    sent = seen["flexcore.stages.train.step:run_train"]
    assert {k: sent["config"][k] for k in config} == config
    assert (sent["init_latents"], sent["on_existing"], sent["gpus"]) == ("z.npy", "auto", 3)
    # what one solve cannot use is refused, not ignored
    with pytest.raises(ConfigError, match="rigid_baseline and bfactor belong to reconstruct-combine"):
        run_reconstruct("ck.pt", "prep", "out", solve="flex_A", bfactor=10.0)
    assert cli_main(["reconstruct", "ck.pt", "prep", str(tmp_path / "o"), "--solve", "flex_A",
                     "--bfactor", "10"]) == 1
    assert "belong to reconstruct-combine" in capsys.readouterr().err
