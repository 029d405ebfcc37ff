"""Training learns the motion of simulated data, invents none, resumes, and refuses bad input.

The first test is the CI-size version of the demo: one hinge motion, SNR 0.1.
"""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from flexcore.cli.main import main
from flexcore.core.errors import ConfigError, InputFileError
from flexcore.core.io import read_particles
from flexcore.core.trained import load_trained_model
from flexcore.stages.mesh.step import run_mesh
from flexcore.stages.prep.step import run_prep
from flexcore.stages.simulate import run_simulate
from flexcore.stages.train import run_train


def make_dataset(root, n, box, max_angle, seed, snr=0.1):
    sim = run_simulate(root / "sim", n_particles=n, box=box, pixel_size_A=160.0 / box, snr=snr,
                       max_angle_deg=max_angle, seed=seed, n_gt_maps=9)
    run_prep(sim.particles, sim.consensus, root / "prep", train_box=box)
    run_mesh(root / "prep" / "consensus.mrc", root / "mesh", mask=sim.mask)
    return root / "sim", root / "prep", root / "mesh" / "mesh.npz"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("hinge")
    return (root,) + make_dataset(root, 1500, 48, 25.0, seed=1)


@pytest.fixture(scope="module")
def hinge(dataset):
    root, sim, prep, mesh = dataset
    run_train(prep, mesh, root / "train", {"latent_dim": 1, "epochs": 6, "batch_size": 64})
    return sim, prep, mesh, root / "train"


def max_motion(checkpoint, limit=1.5):
    model = load_trained_model(checkpoint)
    z = np.linspace(-limit, limit, 7)[:, None].astype(np.float32)
    d = model.displacements(z)
    return float((d - d[3:4]).norm(dim=-1).max())


def test_learns_the_hinge_motion(hinge):
    sim, prep, _, train = hinge
    # scored through the `evaluate` command, which writes the record and one row per map
    out = train.parent / "evaluation"
    assert main(["evaluate", str(sim), str(prep), str(train / "checkpoints" / "checkpoint_last.pt"),
                 str(out)]) == 0
    result = json.loads((out / "evaluation.json").read_text())
    rows = (out / "evaluation.tsv").read_text().splitlines()
    assert len(rows) == 1 + result["n_maps"] and rows[0].startswith("gt_map\t")
    assert result["spearman_best"][0] >= 0.9, result["spearman_best"]
    # generated maps at the ground-truth conformations beat the consensus map, in the
    # moving domain (every map) and in the whole solvent mask (most maps)
    assert result["generated_better_moving"] == result["n_maps"] == 9, result["maps"]
    assert result["generated_better_solvent"] >= 7, result["maps"]
    last = json.loads((train / "history.json").read_text())[-1]
    assert last["val_nll_flow"] < last["val_nll_rigid"] - 1.0
    assert max_motion(train / "checkpoints" / "checkpoint_last.pt") > 1.0  # voxels


def test_exports_latents_for_relion_and_cryosparc(hinge):
    _, prep, _, train = hinge
    z = np.load(train / "latents.npy")
    star = read_particles(train / "latents.star")
    np.testing.assert_allclose(np.asarray(star.raw["flexLatent1"]), z[:, 0], atol=1e-5)
    assert "flexTrueCoord1" in star.raw.columns  # the input's own columns are carried
    cs = np.load(train / "latents.cs")
    np.testing.assert_allclose(cs["components_mode_0/value"], z[:, 0], atol=1e-6)
    assert (cs["components_mode_0/component"] == 0).all()
    for name in ("loss.png", "latents.png", "examples.png", "latents_epoch006.png", "train.json"):
        assert (train / name).stat().st_size > 0
    history = json.loads((train / "history.json").read_text())
    coeff = [h["band_coefficients"] for h in history]
    assert coeff == sorted(coeff) and coeff[-1] > coeff[0]  # the band grows
    per_coeff = [h["train_nll"] / h["band_coefficients"] for h in history]
    assert 0.45 < per_coeff[-1] < 0.6  # ≈ ½ per coefficient at the noise level
    strain = json.loads((train / "train.json").read_text())["strain"]
    assert strain["n_cells"] > 0 and strain["max_stretch"] >= 1.0 and strain["threshold"] == 1.5


def test_selection_by_latent_region_recovers_the_true_motion_range(hinge, tmp_path):
    """The top quartile of the learned latent (oriented like the motion) selects the particles
    whose true coordinate is in the top quartile; k-means clusters are ordered along it."""
    from scipy.stats import spearmanr

    from flexcore.stages.select import run_select

    sim, prep, _, train = hinge
    z = np.load(train / "latents.npy")[:, 0]
    src = np.asarray(read_particles(prep / "particles.star").raw["flexSourceIndex"])
    truth = np.asarray(read_particles(sim / "particles.star").raw["flexTrueCoord1"])
    sign = np.sign(spearmanr(z, truth[src]).statistic)
    low, high = (75.0, 100.0) if sign > 0 else (0.0, 25.0)
    run_select(train / "latents.npy", prep, tmp_path, method="percentile", axis=1,
               percentile_low=low, percentile_high=high)
    chosen = np.asarray(read_particles(tmp_path / "region.star").raw["flexTrueCoord1"])
    top = truth >= np.percentile(truth, 75)  # the matching range of the true coordinate
    precision = float(np.mean(chosen >= np.percentile(truth, 75)))
    recall = float(np.isin(truth[top], chosen).mean())
    print(f"latent top quartile vs true top quartile: precision {precision:.3f}, "
          f"recall {recall:.3f} ({len(chosen)} selected, {int(top.sum())} true)")
    assert precision >= 0.8 and recall >= 0.8
    summary = run_select(train / "latents.npy", prep, tmp_path / "km", method="kmeans",
                         n_clusters=3)
    medians = [np.median(np.asarray(read_particles(tmp_path / "km" / r["file"])
                                    .raw["flexTrueCoord1"])) for r in summary["subsets"]]
    assert np.all(np.diff(medians) * sign > 0.3), medians


def test_checkpoint_loads_in_a_fresh_process(hinge):
    _, _, _, train = hinge
    code = ("from flexcore.core.trained import load_trained_model; import sys; "
            f"m = load_trained_model(r'{train / 'checkpoints' / 'checkpoint_last.pt'}'); "
            "print(m.epoch, m.latent_dim, m.box, m.latents.shape[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["6", "1", "48", "1500"]


def test_no_motion_in_the_data_means_little_learned_motion(tmp_path, hinge):
    _, _, _, moving_train = hinge
    sim, prep, mesh = make_dataset(tmp_path, 1500, 48, 0.0, seed=1)
    run_train(prep, mesh, tmp_path / "train", {"latent_dim": 1, "epochs": 6, "batch_size": 64})
    still = max_motion(tmp_path / "train" / "checkpoints" / "checkpoint_last.pt")
    moved = max_motion(moving_train / "checkpoints" / "checkpoint_last.pt")
    assert still < 0.25 * moved, (still, moved)
    last = json.loads((tmp_path / "train" / "history.json").read_text())[-1]
    assert last["val_nll_rigid"] - last["val_nll_flow"] < 1.0


def test_killed_and_resumed_run_matches_an_uninterrupted_one(tmp_path, dataset):
    _, _, prep, mesh = dataset
    sets = ["latent_dim=1", "epochs=3", "batch_size=128", "n_candidates=2", "latent_steps=1"]
    cmd = [sys.executable, "-m", "flexcore", "train", str(prep), str(mesh)]
    args = [a for s in sets for a in ("--set", s)]
    subprocess.run(cmd + [str(tmp_path / "full")] + args, check=True, capture_output=True)
    # the same run, killed (SIGKILL) once its first checkpoint exists, then resumed
    cut = tmp_path / "cut"
    proc = subprocess.Popen(cmd + [str(cut)] + args, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first = cut / "checkpoints" / "checkpoint_epoch001.pt"
    deadline = time.time() + 600
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert first.exists()
    subprocess.run(cmd + [str(cut)] + args + ["--resume"], check=True, capture_output=True)
    a = torch.load(tmp_path / "full" / "checkpoints" / "checkpoint_last.pt", weights_only=True)
    b = torch.load(cut / "checkpoints" / "checkpoint_last.pt", weights_only=True)
    assert b["epoch"] == a["epoch"] == 3
    torch.testing.assert_close(b["latents"], a["latents"], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(b["volume"], a["volume"], atol=1e-3, rtol=1e-3)


def test_loss_plot_is_redrawn_at_most_every_interval_and_at_the_end(tmp_path, dataset,
                                                                    monkeypatch):
    """loss.png is drawn after the first epoch, then only once LOSS_PLOT_EVERY_S have passed,
    and always for the finished run (the latents of every epoch are still plotted)."""
    import flexcore.stages.train.step as step

    _, _, prep, mesh = dataset
    drawn = []
    real = step.plot_losses
    monkeypatch.setattr(step, "plot_losses",
                        lambda history, path: (drawn.append(len(history)), real(history, path)))
    monkeypatch.setattr(step, "LOSS_PLOT_EVERY_S", 1e9)
    out = tmp_path / "train"
    run_train(prep, mesh, out, {"latent_dim": 1, "epochs": 3, "batch_size": 128,
                                "n_candidates": 2, "latent_steps": 1})
    assert drawn == [1, 3]
    assert (out / "loss.png").stat().st_size > 10_000
    assert sorted(p.name for p in out.glob("latents_epoch*.png")) == [
        f"latents_epoch{e:03d}.png" for e in (1, 2, 3)]


def test_bad_configuration_fails_before_any_work(tmp_path, dataset):
    _, _, prep, mesh = dataset
    for bad, name in (({"latent_dim": 0}, "latent_dim"), ({"rigidity_lambda": -1.0},
                      "rigidity_lambda"), ({"epochs": 0}, "epochs"), ({"lr_flow_start": 0}, "lr")):
        with pytest.raises(ConfigError, match=name):
            run_train(prep, mesh, tmp_path / "out", bad)
    with pytest.raises(ConfigError, match="unknown"):
        run_train(prep, mesh, tmp_path / "out", {"latentdim": 2})
    other = tmp_path / "other"
    run_mesh(prep / "consensus.mrc", other, n_cells=10)
    from flexcore.core.mesh import TetMesh

    m = TetMesh.load(other / "mesh.npz").upscale(64)
    m.save(tmp_path / "mesh64.npz")
    with pytest.raises(InputFileError, match="mesh64.npz.*64 px box"):
        run_train(prep, tmp_path / "mesh64.npz", tmp_path / "out", {})
    assert not (tmp_path / "out").exists()


def test_z_pkl_and_per_conformation_fsc_auc(hinge, tmp_path):
    from flexcore.core.io.cryodrgn import load_array_pickle

    sim, prep, _, train = hinge
    z = load_array_pickle(train / "z.pkl")  # cryoDRGN's latents file, read without unpickling code
    assert z.dtype == np.float32 and np.array_equal(z, np.load(train / "latents.npy"))
    truth = json.loads((sim / "ground_truth.json").read_text())
    coords = np.asarray(truth["gt_coordinates"], dtype=np.float64)[:, 0]
    true = np.asarray(read_particles(sim / "particles.star").raw["flexTrueCoord1"], dtype=float)
    labels = np.abs(true[:, None] - coords[None]).argmin(axis=1)
    np.save(tmp_path / "labels.npy", labels)
    np.save(tmp_path / "shuffled.npy", np.random.default_rng(0).permutation(labels))
    maps = [str(sim / p) for p in truth["gt_maps"]]
    scores = {}
    for name in ("labels", "shuffled"):
        out = tmp_path / name
        assert main(["evaluate-conformations", str(prep), str(train / "model.pt"), str(out), *maps,
                     "--labels", str(tmp_path / f"{name}.npy"),
                     "--mask", str(sim / "moving_mask.mrc")]) == 0
        scores[name] = json.loads((out / "conformations.json").read_text())
    record = scores["labels"]
    assert record["n_maps"] == 9 and len(record["fsc_curves"]) == 9
    assert (tmp_path / "labels" / "conformations.tsv").read_text().count("\n") == 10
    # each conformation's own particles give its map better than particles of any conformation
    assert record["mean_fsc_auc"] > scores["shuffled"]["mean_fsc_auc"] + 0.01, \
        (record["mean_fsc_auc"], scores["shuffled"]["mean_fsc_auc"])
    assert 0.0 < record["mean_fsc_auc"] < 0.5


def test_grid_searched_at_low_resolution_finds_what_the_full_band_finds(hinge, tmp_path):
    """From latents all at 0, on the trained hinge model at its full 48 px box: the grid
    searched at the schedule's starting band on a 24 px box, its best then decided at the full
    band against the current latent and the random candidates (``grid_low_res``), recovers the
    true coordinate as well as the grid searched at the full band."""
    from scipy.stats import spearmanr

    from flexcore.core.checkpoint import load_checkpoint
    from flexcore.core.mesh import TetMesh
    from flexcore.core.train_config import TrainConfig
    from flexcore.stages.train.data import TrainingData
    from flexcore.stages.train.latents import LatentInference
    from flexcore.stages.train.trainer import Trainer

    sim, prep, mesh, train = hinge
    state = load_checkpoint(train / "checkpoints" / "checkpoint_last.pt")
    cfg = TrainConfig.from_dict({**state["config"], "multires": False, "device": "cpu"})
    data = TrainingData.load(prep)
    trainer = Trainer(data, TetMesh.load(mesh), cfg, tmp_path, resuming=True)
    trainer.load_state_dict(state)
    plan = trainer.epoch_plan(cfg.epochs - 1)
    r = trainer.renderer(plan["box"])
    band, noise_var = r.model.band(plan["k_max"] / r.scale), r.noise_var(trainer.noise_var)
    inference = LatentInference(trainer.flow, r, cfg.centering_lambda, cfg.centering_power,
                                cfg.latent_limit)
    idx = np.arange(384)
    truth = np.asarray(data.table.raw["flexTrueCoord1"], dtype=float)[idx]
    found, boxes = {}, {}
    trainer.flow.requires_grad_(False)
    for low in (False, True):
        trainer.cfg.grid_low_res = low
        grid = trainer.grid_plan(plan)
        boxes[low] = None if grid is None else grid["box"]
        z = []
        for s in range(0, len(idx), 64):
            i = idx[s:s + 64]
            images, rot, shifts, ctf = data.batch(i, "cpu", r.box)
            with torch.no_grad():
                canon = r.canonical(trainer.volume, plan["k_max"])
            z.append(trainer._infer(inference, i, torch.zeros(len(i), 1), canon,
                                    r.observed(images), rot, ctf, shifts, band, noise_var, True,
                                    torch.Generator().manual_seed(s),
                                    coarse=trainer.coarse_search(grid, i, images)))
        found[low] = torch.cat(z)[:, 0].numpy()
    assert plan["box"] == 48 and boxes == {False: None, True: 24}
    rho = {low: abs(spearmanr(found[low], truth)[0]) for low in found}
    assert rho[True] >= 0.85 and rho[True] >= rho[False] - 0.02, rho
    assert np.median(np.abs(found[True] - found[False])) < 0.1
