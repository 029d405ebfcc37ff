"""``run_reconstruct`` end to end on a tiny dataset: zero flow equals the rigid baseline,
outputs and provenance, options (in RAM, scratch copies, resplit), more iterations never
worse, bad input, the CLI, and the generator on the high-resolution map."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flexcore.cli.main import main as cli_main
from flexcore.core.checkpoint import load_checkpoint, save_checkpoint
from flexcore.core.errors import ConfigError, InputFileError
from flexcore.core.fourier import fourier_crop
from flexcore.core.io import read_map, write_map
from flexcore.stages.generate.step import run_generate
from flexcore.stages.mesh.step import run_mesh
from flexcore.stages.prep.step import run_prep
from flexcore.stages.reconstruct.step import run_reconstruct
from flexcore.stages.simulate import run_simulate
from flexcore.stages.train import run_train

OUTPUTS = ["flex_map.mrc", "flex_map_half_A.mrc", "flex_map_half_B.mrc", "flex_map_sharp.mrc",
           "noflex_map.mrc", "noflex_map_half_A.mrc", "noflex_map_half_B.mrc", "fsc.tsv",
           "fsc.png", "lbfgs.tsv", "recon.json"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("recon_step")
    run_simulate(root / "sim", n_particles=300, box=32, pixel_size_A=3.5, snr=0.5,
                 max_angle_deg=30.0, seed=2)
    run_prep(root / "sim/particles.star", root / "sim/consensus.mrc", root / "prep", train_box=16)
    mask, psize = read_map(root / "sim/mask.mrc")
    write_map(root / "mask16.mrc", fourier_crop(torch.from_numpy(mask), 16, 3).numpy().clip(0, 1),
              psize * 2)
    run_mesh(root / "prep/consensus.mrc", root / "mesh", mask=root / "mask16.mrc", n_cells=5)
    truth = np.loadtxt(root / "sim/ground_truth.csv", delimiter=",", skiprows=1)[:, 1:]
    np.save(root / "truth.npy", truth)
    run_train(root / "prep", root / "mesh/mesh.npz", root / "train",
              {"latent_dim": 1, "epochs": 2, "freeze_latents": True, "batch_size": 32},
              init_latents=root / "truth.npy")
    ck = root / "train/checkpoints/checkpoint_last.pt"
    state = load_checkpoint(ck)  # the same model with its flow's output layer zeroed
    state["flow"] = {k: (torch.zeros_like(v) if k.startswith("out.") else v)
                     for k, v in state["flow"].items()}
    zero_ck = root / "zero_flow.pt"
    save_checkpoint(zero_ck, state)
    zero = run_reconstruct(zero_ck, root / "prep", root / "zero", iterations=3, batch_size=50)
    return {"root": root, "checkpoint": ck, "zero_checkpoint": zero_ck, "zero": zero}


def test_zero_flow_equals_the_rigid_baseline(data):
    out = data["root"] / "zero"
    for suffix in ("half_A", "half_B", ""):
        name = f"map_{suffix}" if suffix else "map"
        flex, _ = read_map(out / f"flex_{name}.mrc")
        rigid, _ = read_map(out / f"noflex_{name}.mrc")
        assert np.abs(flex).max() > 0
        np.testing.assert_array_equal(flex, rigid)  # same code path, bit for bit
    obj = data["zero"]["objective"]
    for h in ("A", "B"):
        assert obj[f"flex_{h}"] == obj[f"noflex_{h}"]


def test_outputs_voxel_size_and_provenance(data):
    out = data["root"] / "zero"
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    for name in OUTPUTS[:7]:
        vol, voxel = read_map(out / name)
        assert vol.shape == (32, 32, 32) and voxel == pytest.approx(3.5, rel=1e-5), name
    rec = json.loads((out / "recon.json").read_text())
    assert rec["step"] == "reconstruct" and rec["parameters"]["iterations"] == 3
    assert rec["summary"].startswith("flex 0.143: ") and ", rigid: " in rec["summary"]
    assert set(rec["resolution_0143_A"]) == {"flex", "flex_masked", "noflex", "noflex_masked"}
    assert rec["memory"]["peak_rss_GiB"] > 0 and rec["timings"]["total_s"] > 0
    assert rec["box"] == 32 and rec["scale"] == 2.0 and rec["half_sets"] == "input"
    assert (out / "fsc.png").read_bytes()[:4] == b"\x89PNG"
    header, *rows = (out / "fsc.tsv").read_text().splitlines()
    assert header.split("\t")[:3] == ["shell", "frequency_1/A", "resolution_A"]
    assert len(rows) == 17
    table = [r.split("\t") for r in (out / "lbfgs.tsv").read_text().splitlines()[1:]]
    for solve in ("flex_A", "flex_B", "noflex_A", "noflex_B"):
        objective = [float(r[2]) for r in table if r[0] == solve]
        assert len(objective) == 4 and all(b <= a for a, b in zip(objective, objective[1:]))


@pytest.fixture(scope="module")
def streamed(data, tmp_path_factory):
    """The trained model, 2 iterations, images streamed from disk (no rigid baseline)."""
    out = tmp_path_factory.mktemp("streamed")
    summary = run_reconstruct(data["checkpoint"], data["root"] / "prep", out, iterations=2,
                              rigid_baseline=False, batch_size=40)
    return {"out": out, "summary": summary}


def test_in_ram_and_scratch_copies_give_the_streamed_result(data, streamed, tmp_path):
    scratch = tmp_path / "scratch"
    cached = run_reconstruct(data["checkpoint"], data["root"] / "prep", tmp_path / "cached",
                             iterations=2, in_ram=True, scratch_dir=scratch, rigid_baseline=False,
                             batch_size=40)
    for name in ("flex_map_half_A.mrc", "flex_map_half_B.mrc"):
        np.testing.assert_array_equal(read_map(streamed["out"] / name)[0],
                                      read_map(tmp_path / "cached" / name)[0])
    assert scratch.is_dir() and not any(scratch.iterdir())  # the copies are gone
    assert cached["objective"] == streamed["summary"]["objective"]
    assert "noflex" not in cached["resolution_0143_A"]
    assert not (tmp_path / "cached" / "noflex_map.mrc").exists()


def test_resplit_draws_a_seeded_random_split(data, tmp_path):
    s = run_reconstruct(data["checkpoint"], data["root"] / "prep", tmp_path, iterations=0,
                        resplit=True, seed=3, rigid_baseline=False, bfactor=0.0)
    assert s["half_sets"] == "random (seed 3)" and sum(s["half_counts"]) == 300
    assert s["sharpening"]["bfactor_source"] == "given"


@pytest.mark.parametrize("kwargs, word", [
    ({"iterations": -1}, "iterations"), ({"ridge": -1e-3}, "ridge"),
    ({"batch_size": 0}, "batch_size"),
    ({"bfactor": float("nan")}, "bfactor"), ({"device": "tpu"}, "device"),
    ({"iterations": 2.5}, "iterations"),
])
def test_bad_parameters_fail_before_any_work(data, tmp_path, kwargs, word):
    with pytest.raises(ConfigError, match=word):
        run_reconstruct(data["checkpoint"], data["root"] / "prep", tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("prep_kw, word", [({"train_box": 20}, "box"),
                                           ({"train_box": 16, "crop_box": 28}, "pixel size")])
def test_checkpoint_for_another_prep_is_rejected(data, tmp_path, prep_kw, word):
    root = data["root"]
    run_prep(root / "sim/particles.star", root / "sim/consensus.mrc", tmp_path / "prep", **prep_kw)
    with pytest.raises(InputFileError, match=word) as err:
        run_reconstruct(data["checkpoint"], tmp_path / "prep", tmp_path / "out")
    assert str(data["checkpoint"]) in str(err.value)


def test_cli_runs_and_more_iterations_never_give_a_worse_objective(data, streamed, tmp_path,
                                                                    capsys):
    root = data["root"]
    args = ["reconstruct", str(data["checkpoint"]), str(root / "prep")]
    assert cli_main(args + [str(tmp_path / "cli"), "--iterations", "1", "--no-rigid-baseline",
                            "--bfactor", "50", "--batch-size", "40"]) == 0
    rec = json.loads((tmp_path / "cli/recon.json").read_text())
    assert rec["sharpening"]["bfactor_A2"] == 50.0 and rec["parameters"]["iterations"] == 1
    two = streamed["summary"]["objective"]
    for h in ("A", "B"):
        one = rec["objective"][f"flex_{h}"]
        assert one["start"] == two[f"flex_{h}"]["start"]
        assert two[f"flex_{h}"]["final"] < one["final"] < one["start"]
    assert cli_main(args + [str(tmp_path / "bad"), "--ridge", "-1"]) == 1
    assert "ridge" in capsys.readouterr().err


def test_generator_runs_on_the_high_resolution_map(data, tmp_path):
    highres = data["root"] / "zero" / "flex_map.mrc"
    s = run_generate(data["checkpoint"], tmp_path, highres_map=highres, n_frames=3, supersample=1)
    assert s["box"] == 32 and s["pixel_size_A"] == pytest.approx(3.5, rel=1e-5)
    frames = sorted((tmp_path / "series_z1").glob("frame_*.mrc"))
    assert len(frames) == 3
    for f in frames:
        vol, voxel = read_map(f)
        assert vol.shape == (32, 32, 32) and voxel == pytest.approx(3.5, rel=1e-5)


def test_state_maps_deform_each_half_and_have_their_own_fsc(data, streamed, tmp_path, capsys):
    """Per-state maps from select.json: each state map is the reconstruction deformed to the
    state (deforming is linear, so the average of the deformed halves equals the deformed
    average), with its half maps, FSC and ChimeraX script."""
    from flexcore.core.deform import VolumeDeformer
    from flexcore.core.trained import load_trained_model
    from flexcore.stages.select import run_select
    from flexcore.stages.state_maps.step import run_state_maps

    root = data["root"]
    sel = run_select(root / "train/latents.npy", root / "prep", tmp_path / "select",
                     method="points", points=[[-0.6], [0.6]], radius=0.2)
    s = run_state_maps(data["checkpoint"], streamed["out"], tmp_path / "states",
                       states=tmp_path / "select/select.json")
    assert [r["state"] for r in s["states"]] == ["point1", "point2"]
    assert [r["n_particles"] for r in s["states"]] == [x["n_particles"] for x in sel["subsets"]]
    model = load_trained_model(data["checkpoint"])
    full, psize = read_map(streamed["out"] / "flex_map.mrc")
    deformer = VolumeDeformer(model, torch.from_numpy(full), psize, supersample=2, device="cpu")
    maps = []
    for name, z in (("point1", -0.6), ("point2", 0.6)):
        state, voxel = read_map(tmp_path / f"states/maps/state_{name}.mrc")
        assert voxel == pytest.approx(3.5, rel=1e-5) and state.shape == (32, 32, 32)
        np.testing.assert_allclose(state, deformer.frame(np.array([z], np.float32)), atol=1e-4)
        for suffix in ("_half_A", "_half_B", "_sharp"):
            assert (tmp_path / f"states/maps/state_{name}{suffix}.mrc").is_file()
        maps.append(state)
    assert np.abs(maps[0] - maps[1]).max() > 0.05 * np.abs(maps[0]).max()  # states differ
    for r in s["states"]:
        assert 7.0 <= r["fsc0143_A"] < 40.0 and r["fsc05_A"] >= r["fsc0143_A"]
    cxc = (tmp_path / "states/states.cxc").read_text()
    assert "open maps/state_point1_sharp.mrc" in cxc and "tile" in cxc
    assert (tmp_path / "states/states_fsc.png").read_bytes()[:4] == b"\x89PNG"
    # generate.json (every frame of a series) works as a source of states too
    gen = run_generate(data["checkpoint"], tmp_path / "gen", n_frames=3, supersample=1)
    assert gen["strain"]["n_cells"] == model.mesh.n_cells
    s2 = run_state_maps(data["checkpoint"], streamed["out"], tmp_path / "series",
                        states=tmp_path / "gen/generate.json", supersample=1)
    assert [r["state"] for r in s2["states"]] == ["z1_000", "z1_001", "z1_002"]
    with pytest.raises(InputFileError, match="half map not found"):
        run_state_maps(data["checkpoint"], tmp_path, tmp_path / "bad",
                       states=tmp_path / "select/select.json")
    assert cli_main(["state-maps", str(data["checkpoint"]), str(streamed["out"]),
                     str(tmp_path / "cli"), "--states", str(tmp_path / "nope.json")]) == 1
    assert "nope.json" in capsys.readouterr().err


def test_local_resolution_without_a_rigid_baseline(data, streamed, tmp_path, capsys):
    """localres on a reconstruction without noflex maps: flexible columns only."""
    from flexcore.stages.localres import run_localres

    s = run_localres(data["checkpoint"], streamed["out"], tmp_path, window_px=8)
    assert [r["region"] for r in s["regions"]] == ["whole", "core", "middle", "moving"]
    assert "fsc0143_noflex_A" not in s["regions"][0] and "gain_A" not in s["regions"][0]
    assert (tmp_path / "localres_flex.mrc").is_file()
    assert not (tmp_path / "localres_noflex.mrc").exists()
    cxc = (tmp_path / "localres.cxc").read_text()
    assert "color sample #1 map #2 palette" in cxc and "flex_map.mrc" in cxc
    args = ["localres", str(data["checkpoint"]), str(streamed["out"])]
    assert cli_main(args + [str(tmp_path / "cli"), "--window-px", "8", "--stride", "4"]) == 0
    assert (tmp_path / "cli" / "regions.tsv").is_file()
    assert cli_main(args + [str(tmp_path / "bad"), "--window-px", "7"]) == 1
    assert "localres.window_px" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before any work
