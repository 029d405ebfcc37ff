"""Latent-quality metrics and the Bayes limit on cases with known answers, and the latent-quality
benchmark end to end at a tiny size (it checks the metric code and the pipeline, not quality)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flexcore.core.io import StackReader
from flexcore.core.latent_metrics import (
    amplitude_recovery,
    best_direction,
    best_spearman,
    knn_r2,
    match_coordinates,
    state_recovery,
)
from flexcore.core.train_config import TrainConfig
from flexcore.stages.simulate import run_simulate
from flexcore.stages.simulate.phantom import domain_rmsd_A, make_phantom
from flexcore.stages.simulate.truth import bayes_posterior, load_forward_model, render_clean

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- rank correlation and kNN R²

def test_latents_equal_to_the_coordinate_score_one_and_random_latents_about_zero():
    rng = np.random.default_rng(1)
    t = rng.uniform(-1, 1, 600)
    rho, per_dim = best_spearman(np.stack([rng.normal(size=600), t ** 3], axis=1), t)
    assert rho == pytest.approx(1.0) and per_dim[0] < 0.15  # monotone: rank correlation 1
    assert knn_r2(t, t) > 0.99
    assert knn_r2(np.stack([t, 0.01 * rng.normal(size=600)], axis=1), t) > 0.98
    noise = rng.normal(size=(600, 2))
    assert best_spearman(noise, t)[0] < 0.15
    assert abs(knn_r2(noise, t)) < 0.15
    # half the information: t seen through noise of its own spread gives R² well below 1
    noisy = t + rng.normal(0, 0.58, 600)
    assert 0.2 < knn_r2(noisy, t) < 0.7
    # seeded folds: the same answer twice, a different seed a slightly different one
    assert knn_r2(noisy, t, seed=3) == knn_r2(noisy, t, seed=3)


def test_best_direction_is_the_linear_predictor_of_the_coordinate():
    rng = np.random.default_rng(2)
    t = rng.uniform(-1, 1, 400)
    u = rng.normal(size=400)  # a nuisance mixed into both dimensions
    z = np.stack([t + u, u], axis=1) + 0.01 * rng.normal(size=(400, 2))
    # t = z1 − z2: the predictor is (1, −1)/√2, not the dimension most correlated with t
    assert np.allclose(best_direction(z, t), np.array([1.0, -1.0]) / np.sqrt(2), atol=0.02)
    assert best_direction(-t, t)[0] == pytest.approx(-1.0)


# ---------------------------------------------------------------- amplitude recovery

def _blob_maps(coords, box=20):
    """Maps of a Gaussian blob whose centre moves 6 px along x over coordinates [-1, 1]."""
    g = np.arange(box) - box // 2
    zz, yy, xx = np.meshgrid(g, g, g, indexing="ij")
    return np.stack([np.exp(-((xx - 3.0 * c) ** 2 + yy ** 2 + zz ** 2) / (2 * 1.5 ** 2))
                     for c in np.atleast_1d(coords)])


def test_amplitude_recovery_of_an_exact_generator_spans_the_whole_motion():
    rng = np.random.default_rng(3)
    t = rng.uniform(-1, 1, 500)
    true_coords = np.linspace(-1, 1, 21)
    true_maps = _blob_maps(true_coords)
    mask = np.ones(true_maps.shape[1:])
    # a second latent dimension carrying nothing must not disturb the direction
    z = np.stack([2.0 * t + 1.0, rng.normal(0, 0.05, 500)], axis=1)

    def exact(point):  # the model's motion is the true motion: latent → its coordinate
        return _blob_maps((point[0] - 1.0) / 2.0)[0]

    full = amplitude_recovery(exact, z, t, true_maps, true_coords, mask)
    assert full["fraction"] > 0.9
    assert max(full["end_errors"]) < 0.05  # within 5 % of the range of the true extremes
    assert np.all(np.diff(full["matched"]) >= 0)
    assert full["particles_t"][0] < -0.9 and full["particles_t"][-1] > 0.9

    def half(point):  # learned in the right order but at half the amplitude
        return _blob_maps(0.5 * (point[0] - 1.0) / 2.0)[0]

    part = amplitude_recovery(half, z, t, true_maps, true_coords, mask)
    assert 0.4 <= part["fraction"] <= 0.6
    assert min(part["end_errors"]) > 0.2

    # maps at the median latent of the particles near each true state
    states = state_recovery(exact, z, t, true_maps, true_coords, mask, n_states=10)
    assert np.allclose(states["matched"], states["centres"], atol=0.051)
    assert states["fraction"] > 0.9 and states["spearman"] == pytest.approx(1.0)
    shrunk = state_recovery(half, z, t, true_maps, true_coords, mask, n_states=10)
    assert 0.4 <= shrunk["fraction"] <= 0.6 and shrunk["spearman"] > 0.9


def test_matching_picks_the_true_state_whatever_the_density_scale():
    true_coords = np.linspace(-1, 1, 11)
    true_maps = _blob_maps(true_coords)
    maps = 7.0 * _blob_maps([-0.6, 0.2]) + 0.3
    matched, corr = match_coordinates(maps, true_maps, true_coords, np.ones(maps.shape[1:]))
    assert np.allclose(matched, [-0.6, 0.2])
    assert corr.shape == (2, 11) and corr.max() == pytest.approx(1.0)


# ---------------------------------------------------------------- simulator truth, Bayes limit

def test_domain_rmsd_is_the_rotation_chord_of_the_domain():
    ph = make_phantom(0)
    sel = ph.domain == 1
    p, a = ph.positions_A[sel] - ph.hinge_points_A[0], ph.hinge_axes[0]
    r_perp = np.linalg.norm(p - np.outer(p @ a, a), axis=1)
    for angle in (10.0, 25.0):  # end states ±angle apart: chord 2 r sin(angle)
        expected = 2 * np.sin(np.deg2rad(angle)) * np.sqrt(np.mean(r_perp ** 2))
        assert domain_rmsd_A(ph, 1, angle) == pytest.approx(expected, rel=1e-6)
    assert domain_rmsd_A(ph, 1, 25.0) > 12.0  # the benchmark's motion is ≥ 12 Å


@pytest.fixture(scope="module")
def clean_sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim_clean")
    run_simulate(out, n_particles=10, box=32, pixel_size_A=3.2, snr=200.0, n_gt_maps=3, seed=4)
    return out


def test_the_forward_model_reproduces_the_simulated_images(clean_sim):
    info = json.loads((clean_sim / "ground_truth.json").read_text())
    assert info["moving_domain_rmsd_A"][0] == pytest.approx(domain_rmsd_A(make_phantom(4), 1, 25.0))
    fm = load_forward_model(clean_sim)
    t = fm.true_coordinates()
    images = torch.from_numpy(StackReader(clean_sim / "particles.mrcs").read(np.arange(10)))
    resid = images - render_clean(fm, np.arange(10), t)
    # what is left at the true coordinate is the simulator's white noise, of its σ (the
    # signal's variance is 200 σ², so any difference in pose, shift, CTF or scale shows)
    assert resid.std().item() == pytest.approx(fm.noise_sigma, rel=0.03)
    assert abs(resid.mean().item()) < 0.05 * fm.noise_sigma
    wrong = images - render_clean(fm, np.arange(10), -t)
    assert wrong.std().item() > 1.5 * fm.noise_sigma


def test_bayes_posterior_mean_recovers_the_coordinate_at_high_snr(clean_sim):
    post = bayes_posterior(clean_sim, n_images=10, n_grid=21)
    assert len(post["posterior_mean"]) == 10
    # the posterior sits on the grid point nearest the truth (spacing 0.1)
    assert np.max(np.abs(post["posterior_mean"] - post["truth"])) < 0.06
    assert np.allclose(post["map_estimate"], post["posterior_mean"], atol=0.01)
    assert best_spearman(post["posterior_mean"], post["truth"])[0] > 0.95


def test_bayes_posterior_shrinks_towards_zero_when_the_noise_swamps_the_signal(clean_sim):
    sigma = load_forward_model(clean_sim).noise_sigma
    post = {s: bayes_posterior(clean_sim, n_images=10, n_grid=21, noise_sigma=s * sigma)
            for s in (30.0, 3000.0)}
    truth = post[30.0]["truth"]
    moderate, swamped = post[30.0]["posterior_mean"], post[3000.0]["posterior_mean"]
    # more noise, less information: estimates pulled towards the prior mean 0, the posterior
    # widening to the prior's spread (sd of 21 even points in [-1, 1]: 0.606)
    assert np.abs(moderate).mean() < np.abs(truth).mean()
    assert np.abs(swamped).max() < 0.02
    assert post[3000.0]["posterior_sd"] == pytest.approx(np.full(10, 0.6055), abs=0.01)


# ---------------------------------------------------------------- the benchmark

def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "bench_latent_quality", ROOT / "benchmarks" / "bench_latent_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_runs_end_to_end_at_a_minimal_size(tmp_path):
    """The CI version: a few dozen particles, one epoch, no reconstruction."""
    out = tmp_path / "lq.json"
    result = _benchmark().main(["--n", "96", "--box", "32", "--pixel-size", "3.2",
                                "--train-box", "16", "--epochs", "1", "--bayes-n", "12",
                                "--n-true-maps", "9", "--workdir", str(tmp_path / "work"),
                                "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert out.with_suffix(".png").stat().st_size > 0
    assert result["moving_domain_rmsd_A"] > 12.0
    assert result["bayes"]["n_images"] == 12 and result["bayes"]["grid"] == 21
    assert 0.0 <= result["bayes"]["spearman"] <= 1.0 and result["bayes"]["knn_r2"] <= 1.0
    assert [e["epoch"] for e in result["epochs"]] == [1]
    epoch = result["epochs"][0]
    assert len(epoch["spearman"]) == 2 and 0.0 <= epoch["spearman_best"] <= 1.0
    amp = epoch["amplitude"]
    assert len(amp["matched"]) == 9 and 0.0 <= amp["fraction"] <= 1.0
    assert set(amp["matched"]) <= set(np.round(np.linspace(-1, 1, 9), 6))
    assert len(epoch["states"]["matched"]) == len(epoch["states"]["centres"]) >= 2
    assert "per_state" not in result
    assert len(epoch["latent_sd"]) == 2 and min(epoch["latent_sd"]) > 0
    assert epoch["max_displacement_A"] >= 0 and epoch["val_gain_per_particle"] is not None
    # a tagged run (one factor of a study) reuses the data and the limit, trains beside it
    work = tmp_path / "work" / "box32_n96"
    sim_time = (work / "sim" / "particles.star").stat().st_mtime_ns
    again = _benchmark().main(["--n", "96", "--box", "32", "--pixel-size", "3.2",
                               "--train-box", "16", "--epochs", "1", "--bayes-n", "12",
                               "--n-true-maps", "9", "--workdir", str(tmp_path / "work"),
                               "--tag", "strongcentering",
                               "--train-config", '{"centering_lambda": 5.0}'])
    assert (work / "sim" / "particles.star").stat().st_mtime_ns == sim_time
    assert again["bayes"] == result["bayes"]
    assert again["train_config"]["centering_lambda"] == 5.0
    assert again["train_config"]["noise_sigma"] == TrainConfig().noise_sigma  # complete
    assert (work / "train_strongcentering" / "checkpoints" / "checkpoint_epoch001.pt").is_file()
    assert (work / "latent_quality_strongcentering.json").is_file()
    # the study's table: one row per run, the changed option named, ratios to the limit
    spec = importlib.util.spec_from_file_location(
        "latent_quality_study", ROOT / "benchmarks" / "latent_quality_study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    (work / "latent_quality.json").write_text(json.dumps(result))  # the untagged baseline
    rows = study.main([str(work), "--out", str(tmp_path / "study")])
    assert [r["tag"] for r in rows] == ["baseline", "strongcentering"]
    assert rows[1]["changed"] == "centering_lambda=5.0" and rows[0]["changed"] == "—"
    assert rows[0]["spearman_ratio"] == pytest.approx(
        result["epochs"][-1]["spearman_best"] / result["bayes"]["spearman"])
    assert "| strongcentering | centering_lambda=5.0 |" in (tmp_path / "study.md").read_text()
    assert (tmp_path / "study.png").stat().st_size > 0


def test_benchmark_tiny_mode_with_reconstruction(tmp_path):
    out = tmp_path / "lq.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_latent_quality.py"),
                           "--tiny", "--workdir", str(tmp_path / "work"), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [e["epoch"] for e in result["epochs"]] == [1, 2]
    states = result["per_state"]
    assert states["n_states"] == len(states["states"]) > 0
    assert {"flex_moving", "rigid_moving"} <= set(states["half_map_res0143_A"])
    assert "Bayes" in done.stdout and "per-state maps" in done.stdout
