"""The sweep comparison table: one row per point, numbers read from each point's outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flexcore.stages.sweep_summary.step import run_sweep_summary


def _point(folder, nll_flow, nll_rigid, sd, res_flex=None, res_rigid=None, rho=None):
    folder.mkdir(parents=True)
    final = {"epoch": 4, "val_nll_flow": nll_flow, "val_nll_rigid": nll_rigid}
    (folder / "train.json").write_text(json.dumps({"final": final}))
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 2)) * np.array(sd)
    np.save(folder / "latents.npy", z)
    files = {"train": folder / "train.json", "latents": folder / "latents.npy"}
    if res_flex is not None:
        (folder / "recon.json").write_text(json.dumps(
            {"resolution_0143_A": {"flex_masked": res_flex, "noflex_masked": res_rigid}}))
        files["recon"] = folder / "recon.json"
    if rho is not None:
        (folder / "evaluation.json").write_text(json.dumps(
            {"spearman_best": [rho], "generated_better_moving": 3, "n_maps": 5}))
        files["evaluation"] = folder / "evaluation.json"
    return files


def test_sweep_table_reads_every_point(tmp_path):
    a = _point(tmp_path / "a", 10.0, 12.5, [0.5, 0.1], 7.5, 8.0, 0.9)
    b = _point(tmp_path / "b", 11.0, 11.5, [0.2, 0.3], 7.9, 8.1, 0.4)
    points = [{"folder": "rigidity_lambda~1", "rigidity_lambda": 1.0},
              {"folder": "rigidity_lambda~4", "rigidity_lambda": 4.0}]
    files = {k: [a[k], b[k]] for k in ("train", "latents", "recon", "evaluation")}
    table = run_sweep_summary(points, files, tmp_path / "sweep.tsv", tmp_path / "sweep.png")
    assert list(table["rigidity_lambda"]) == [1.0, 4.0]
    assert table["val_nll_gain"].tolist() == pytest.approx([2.5, 0.5])
    assert table["latent_sd_z1"].iloc[0] == pytest.approx(0.5, rel=0.1)
    assert table["latent_sd_z2"].iloc[1] == pytest.approx(0.3, rel=0.1)
    assert table["fsc0143_flex_A"].tolist() == [7.5, 7.9]
    assert table["fsc0143_rigid_A"].tolist() == [8.0, 8.1]
    assert table["spearman_rho_motion1"].tolist() == [0.9, 0.4]
    assert table["gt_maps_generated_better_moving"].tolist() == ["3/5", "3/5"]
    written = (tmp_path / "sweep.tsv").read_text().splitlines()
    assert len(written) == 3 and written[0].split("\t")[:2] == ["folder", "rigidity_lambda"]
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*part*"))  # written atomically, nothing left behind


def test_sweep_without_reconstruction_or_ground_truth(tmp_path):
    a = _point(tmp_path / "a", 10.0, 11.0, [0.5, 0.5])
    table = run_sweep_summary([{"folder": "x", "epochs": 2}], {"train": [a["train"]],
                            "latents": [a["latents"]]}, tmp_path / "t.tsv", tmp_path / "p.png")
    assert "fsc0143_flex_A" not in table and not any(c.startswith("spearman") for c in table)
    assert table["val_nll_gain"].tolist() == [1.0]


def test_summary_names_every_swept_key(tmp_path):
    from flexcore.stages.sweep_summary.step import point_label, swept_keys

    a = _point(tmp_path / "a", 10.0, 11.0, [0.5, 0.5])
    b = _point(tmp_path / "b", 10.0, 12.0, [0.5, 0.5])
    points = [{"folder": "prep.train_box~32_train.latent_dim~1", "prep.train_box": 32,
               "train.latent_dim": 1},
              {"folder": "prep.train_box~40_train.latent_dim~2", "prep.train_box": 40,
               "train.latent_dim": 2}]
    files = {k: [a[k], b[k]] for k in ("train", "latents")}
    table = run_sweep_summary(points, files, tmp_path / "t.tsv", tmp_path / "p.png", mode="zip")
    assert swept_keys(points) == ["prep.train_box", "train.latent_dim"]
    header = (tmp_path / "t.tsv").read_text().splitlines()[0].split("\t")
    assert header[:3] == ["folder", "prep.train_box", "train.latent_dim"]
    assert point_label(table.iloc[1], swept_keys(points)) == "prep.train_box=40\ntrain.latent_dim=2"
    assert (tmp_path / "p.png").stat().st_size > 0
