"""The workflow's configuration: schema, shipped config files, and errors before any job.

The schema must describe every key with a default, agree with the step functions it feeds
(names and defaults of their keyword arguments, TrainConfig's fields), and be documented
in config/README.md. Bad configurations stop `snakemake -n` with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent / "workflow_config"))
from snakemake_cli import ROOT, run_snakemake  # noqa: E402

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
CONFIG = ROOT / "config" / "config.yaml"


def schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def schema_keys(node: dict, prefix: str = ""):
    """(dotted key, property schema) for every key, depth first."""
    for name, prop in node.get("properties", {}).items():
        key = f"{prefix}{name}"
        yield key, prop
        if prop.get("type") == "object":
            yield from schema_keys(prop, key + ".")


def section_defaults(section: str) -> dict:
    return {k: v["default"] for k, v in schema()["properties"][section]["properties"].items()}


def function_defaults(func) -> dict:
    return {name: p.default for name, p in inspect.signature(func).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_schema_is_draft_2020_12_and_every_key_has_description_and_default():
    s = schema()
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    keys = list(schema_keys(s))
    assert len(keys) > 80
    for key, prop in keys:
        assert prop.get("description"), f"{key} has no description"
        assert "default" in prop, f"{key} has no default"
        if prop.get("type") == "object" and key != "sweep.parameters":
            assert prop.get("additionalProperties") is False, f"{key} accepts unknown keys"


def test_schema_accepts_its_own_defaults_and_the_shipped_configs():
    import jsonschema

    s = schema()
    validator = jsonschema.Draft202012Validator(s)
    for path in [CONFIG, ROOT / "config" / "sweeps" / "rigidity.yaml",
                 ROOT / "tests" / "workflow_config" / "tiny.yaml"]:
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, f"{path}: {errors[0].message}"
    for key, prop in schema_keys(s):
        sub = jsonschema.Draft202012Validator(prop)
        assert sub.is_valid(prop["default"]), f"{key}: default {prop['default']!r} fails its schema"


def test_train_section_is_trainconfig():
    from flexcore.core.train_config import TrainConfig

    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    launch = {"gpus"}  # how many ranks train, not how (the fingerprint must not depend on it)
    assert not launch & set(fields)
    assert {k: v for k, v in section_defaults("train").items() if k not in launch} == fields


@pytest.mark.parametrize("section, function, not_arguments", [
    ("simulate", "flexcore.stages.simulate:run_simulate", {"use_mask"}),
    ("prep", "flexcore.stages.prep.step:run_prep", set()),
    ("mesh", "flexcore.stages.mesh.step:run_mesh", set()),
    ("explore", "flexcore.stages.explore:run_explore", {"enabled"}),
    ("generate", "flexcore.stages.generate.step:run_generate", {"from_reconstruction"}),
    ("reconstruct", "flexcore.stages.reconstruct.step:run_reconstruct", {"enabled", "gpus", "split_jobs"}),
    ("select", "flexcore.stages.select:run_select", {"enabled"}),
    ("states", "flexcore.stages.state_maps.step:run_state_maps", {"enabled", "source"}),
    ("localres", "flexcore.stages.localres:run_localres", {"enabled"}),
])
def test_sections_match_the_step_functions_they_feed(section, function, not_arguments):
    import importlib

    module, name = function.split(":")
    func = getattr(importlib.import_module(module), name)
    given = function_defaults(func)
    for key, default in section_defaults(section).items():
        if key in not_arguments:
            continue
        assert key in given, f"{section}.{key} is not an argument of {function}"
        # the schema writes "no file" as "" where the function takes None
        expected = given[key]
        assert default == expected or (default == "" and expected is None), (
            f"{section}.{key}: schema default {default!r}, {function} default {expected!r}")


def test_config_readme_documents_every_key():
    text = (ROOT / "config" / "README.md").read_text()
    missing = [key for key, _ in schema_keys(schema()) if f"`{key}`" not in text]
    assert not missing, f"config/README.md does not document {missing}"


def test_shipped_config_sets_every_section_and_runs_the_demo():
    cfg = yaml.safe_load(CONFIG.read_text())
    assert cfg["input"]["source"] == "simulate"
    assert set(cfg) == set(schema()["properties"])


def dry_run(tmp_path, config: dict, *args):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return run_snakemake(tmp_path, "-n", *args, configfiles=(CONFIG, path), check=False,
                         timeout=120)


@pytest.mark.parametrize("config, message", [
    ({"train": {"epochs": "many"}}, ["'many' is not of type 'integer'", "['train']['epochs']"]),
    ({"train": {"epoch": 3}}, ["'epoch' was unexpected"]),
    ({"mesh": {"threshold_mode": "median"}},
     ["'median' is not one of", "['mesh']['threshold_mode']"]),
    ({"input": {"source": "files", "particles": "no/such/particles.star",
                "consensus_map": "no/such/map.mrc"}},
     ["config key input.particles: file 'no/such/particles.star' does not exist"]),
    ({"input": {"source": "files"}}, ["config key input.particles: required"]),
    ({"input": {"source": "cryodrgn", "particles": "p.txt", "consensus_map": "m.mrc"}},
     ["config key input.poses: required when input.source is 'cryodrgn'"]),
    ({"input": {"poses": "poses.pkl"}}, ["config key input.poses: is for input.source: cryodrgn"]),
    ({"input": {"mask": "missing_mask.mrc"}},
     ["config key input.mask: file 'missing_mask.mrc' does not exist"]),
    ({"prep": {"crop_box": 40}}, ["config key simulate.use_mask"]),
    ({"sweep": {"name": "s", "parameters": {"learning_rate": [1, 2]}}},
     ["config key sweep.parameters.learning_rate"]),
    ({"sweep": {"name": "s", "parameters": {"gpus": [1, 2]}}},
     ["config key sweep.parameters.gpus: is how many GPUs a job uses"]),
    ({"sweep": {"name": "s", "parameters": {"prep.train_box": [40, 41]}}},
     ["config key sweep.parameters.prep.train_box: value 41 does not fit prep.train_box"]),
    ({"sweep": {"name": "s", "parameters": {"train.epochs": [2, "many"]}}},
     ["config key sweep.parameters.train.epochs: value 'many' does not fit"]),
    ({"sweep": {"name": "s", "parameters": {"simulate.box": [32]}}},
     ["config key sweep.parameters.simulate.box: not a key of prep, mesh, train"]),
    ({"sweep": {"name": "s", "mode": "zip",
                "parameters": {"n_cells": [12, 16], "rigidity_lambda": [1.0]}}},
     ["config key sweep.parameters: mode zip pairs the i-th values"]),
    ({"sweep": {"name": "s", "parameters": {"reconstruct.scratch_dir": ["a/b", "a b"]}}},
     ["share the folder name reconstruct.scratch_dir~a-b"]),
    ({"generate": {"from_reconstruction": True}, "reconstruct": {"enabled": False}},
     ["config key generate.from_reconstruction"]),
    ({"select": {"enabled": False}}, ["config key states.source"]),
    ({"select": {"method": "lasso"}}, ["'lasso' is not one of", "['select']['method']"]),
    ({"select": {"method": "file"}}, ["config key select.selection_file: required"]),
    ({"localres": {"window_px": 15}}, ["15 is not a multiple of 2"]),
])
def test_bad_configuration_fails_before_any_job_naming_the_key(tmp_path, config, message):
    result = dry_run(tmp_path, config)
    assert result.returncode != 0
    for part in message:
        assert part in result.stdout, result.stdout[-3000:]
    assert "Job stats" not in result.stdout


@pytest.mark.parametrize("config, message", [
    ({"select": {"method": "box"}},
     "config key select.center is required for this selection method"),
    ({"select": {"method": "box", "center": [0.0, 0.0], "half_widths": [0.2]}},
     "config key select.center = [0.0, 0.0]: expected 1 finite number(s)"),
    ({"select": {"method": "percentile", "axis": 2}}, "config key select.axis = 2"),
    ({"select": {"n_clusters": 2000}},
     "config key select.n_clusters = 2000: must be an integer 1…1500"),
    ({"select": {"method": "points", "points": [[0.5, 0.5]]}},
     "config key select.points[0] = [0.5, 0.5]: expected 1 finite number(s)"),
    ({"localres": {"window_px": 64}},
     "config key localres.window_px = 64: the window must fit in half the reconstruction's "
     "56 px box (at most 28 px)"),
    ({"select": {"method": "percentile", "percentile_low": 80, "percentile_high": 20}},
     "config key select.percentile_low/high = 80, 20: need 0 ≤ low < high ≤ 100"),
])
def test_stage_parameters_fail_before_any_job(tmp_path, config, message):
    """What select and localres would refuse after training fails the dry run, in the
    steps' own words (their check functions; the schema covers states and the rest)."""
    result = dry_run(tmp_path, config)
    assert result.returncode != 0 and "Job stats" not in result.stdout
    assert message in result.stdout, result.stdout[-3000:]


def test_user_files_and_sweep_points_appear_as_inputs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("p.star", "map.mrc", "mask.mrc", "z.npy"):
        (data / name).write_text("placeholder")
    config = {"dataset": "mine",
              "input": {"source": "files", "particles": str(data / "p.star"),
                        "consensus_map": str(data / "map.mrc"), "mask": str(data / "mask.mrc"),
                        "init_latents": str(data / "z.npy")},
              "train": {"latent_dim": 2},
              "sweep": {"name": "grid", "parameters": {"n_cells": [12, 16],
                                                       "rigidity_lambda": [1.0, 4.0]}}}
    result = dry_run(tmp_path, config, "--printshellcmds")
    assert result.returncode == 0, result.stdout[-3000:]
    out = result.stdout
    assert "rule simulate" not in out and "rule evaluate" not in out
    for k in (1, 2):
        assert f"results/mine/generate/series_z{k}.gif" in out
    for n_cells in (12, 16):
        for lam in ("1.0", "4.0"):
            point = f"results/mine/sweep/grid/n_cells~{n_cells}_rigidity_lambda~{lam}"
            assert f"{point}/mesh/mesh.npz" in out  # mesh parameters swept: own mesh
            assert f"{point}/train/train.json" in out
    assert str(data / "mask.mrc") in out and str(data / "z.npy") in out


def test_cryodrgn_source_feeds_prep_its_pickles(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("particles.txt", "poses.pkl", "ctf.pkl", "map.mrc"):
        (data / name).write_text("placeholder")
    config = {"dataset": "bench",
              "input": {"source": "cryodrgn", "particles": str(data / "particles.txt"),
                        "poses": str(data / "poses.pkl"), "ctf": str(data / "ctf.pkl"),
                        "consensus_map": str(data / "map.mrc")}}
    result = dry_run(tmp_path, config, "--printshellcmds", "--forcerun", "prep")
    assert result.returncode == 0, result.stdout[-3000:]
    out = result.stdout
    assert "rule simulate" not in out and "rule evaluate" not in out
    assert str(data / "poses.pkl") in out and str(data / "ctf.pkl") in out
    assert "results/bench/prep/source.star" in out and "results/bench/train/z.pkl" in out
    assert "results/bench/select/cluster1.star" in out  # subsets of the converted STAR


def test_zip_sweep_and_sweeps_of_prep_reconstruct_and_select_keys(tmp_path):
    from snakemake_cli import planned_jobs

    sweeps = ROOT / "config" / "sweeps"
    paired = yaml.safe_load((sweeps / "paired.yaml").read_text())
    result = dry_run(tmp_path, paired)
    assert result.returncode == 0, result.stdout[-3000:]
    jobs = planned_jobs(result.stdout)
    assert jobs["sweep_prep"] == jobs["sweep_mesh"] == jobs["sweep_train"] == 3  # zip: 3, not 27
    point = "results/demo/sweep/paired/prep.train_box~40_train.latent_dim~1_train.rigidity_lambda~2.0"
    assert f"{point}/prep/particles.star" in result.stdout
    grid = yaml.safe_load((sweeps / "mesh_and_rigidity.yaml").read_text())
    result = dry_run(tmp_path, grid)
    assert result.returncode == 0, result.stdout[-3000:]
    assert planned_jobs(result.stdout)["sweep_train"] == 4 and "sweep_prep" not in result.stdout
    # reconstruct and select keys alone reuse the main training; odd values get safe folders
    later = {"sweep": {"name": "later", "mode": "zip",
                       "parameters": {"reconstruct.scratch_dir": ["/tmp/a b", "../up"],
                                      "select.n_clusters": [2, 4]}}}
    result = dry_run(tmp_path, later)
    assert result.returncode == 0, result.stdout[-3000:]
    jobs = planned_jobs(result.stdout)
    assert jobs["sweep_reconstruct"] == jobs["sweep_select"] == 2 and "sweep_train" not in jobs
    root = "results/demo/sweep/later"
    assert f"{root}/reconstruct.scratch_dir~tmp-a-b_select.n_clusters~2/select/select.json" \
        in result.stdout
    assert f"{root}/reconstruct.scratch_dir~up_select.n_clusters~4/reconstruct/recon.json" \
        in result.stdout
    assert "sweep/later/.." not in result.stdout and " b_select" not in result.stdout
