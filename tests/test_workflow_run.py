"""The whole workflow run for real at CI size (tests/workflow_config/tiny.yaml).

One completed run is shared by the module: its outputs are checked, the report is built
from it, re-running it does nothing, deleting a training output re-runs only what depends
on it, a training job killed after its first checkpoint resumes when snakemake runs again
(to the uninterrupted run's latents), and a sweep of two values runs on top of it (in a
copy). Separately: a rule that fails leaves its log and no outputs, the same config and
seeds give byte-identical simulation and prep outputs, and particles inside a RELION
project (image paths relative to the project folder) run through prep.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent / "workflow_config"))
from snakemake_cli import SNAKEFILE, TINY_CONFIG, planned_jobs, run_snakemake  # noqa: E402

pytestmark = pytest.mark.workflow

TINY = yaml.safe_load(TINY_CONFIG.read_text())
BOX = TINY["simulate"]["box"]
N = TINY["simulate"]["n_particles"]
RULES = ["simulate", "prep", "mesh", "train", "generate", "reconstruct", "evaluate", "provenance",
         "select", "state_maps", "localres", "evaluate_reconstruction", "explore", "report_pages"]
FINAL = {
    "simulate": ["particles.star", "particles.mrcs", "consensus.mrc", "mask.mrc",
                 "moving_mask.mrc", "ground_truth.json", "ground_truth.csv", "gt/map_00.mrc"],
    "prep": ["particles.star", "particles.mrcs", "consensus.mrc", "prep.json"],
    "mesh": ["mesh.npz", "mask.mrc", "mask_soft.mrc", "mesh_slices.png", "mesh.pdb", "mesh.cxc",
             "mesh_summary.json"],
    "train": ["model.pt", "checkpoints/checkpoint_last.pt", "latents.npy", "latents.star",
              "latents.cs", "latents.csg", "history.json", "loss.png", "latents.png",
              "examples.png", "train.json", "explorer.html"],
    "generate": ["series_z1.gif", "series_z1.png", "series_z1.cxc", "strain.mrc", "strain.png",
                 "generate.json"],
    "reconstruct": ["flex_map.mrc", "flex_map_half_A.mrc", "flex_map_half_B.mrc",
                    "flex_map_sharp.mrc", "noflex_map.mrc", "noflex_map_half_A.mrc",
                    "noflex_map_half_B.mrc", "fsc.tsv", "fsc.png", "lbfgs.tsv", "recon.json"],
    "evaluation": ["evaluation.json", "evaluation.tsv", "reconstruction.json",
                   "reconstruction.tsv", "moving_fsc.png"],
    "select": ["cluster1.star", "cluster2.star", "cluster3.star", "selection.png", "select.json"],
    "states": ["states.tsv", "states_fsc.tsv", "states_fsc.png", "states.cxc", "states.json"]
    + [f"maps/state_cluster{i}{s}.mrc" for i in (1, 2, 3) for s in ("", "_half_A", "_half_B",
                                                                       "_sharp")],
    "localres": ["regions.tsv", "regions_fsc.tsv", "fsc_regions.png", "regions.mrc",
                 "localres_flex.mrc", "localres_noflex.mrc", "localres.png", "localres.cxc",
                 "localres.json"],
    "report": [f"{page}.html" for page in ("motion_z1", "fsc", "regions", "states", "evaluation",
                                           "evaluation_reconstruction", "provenance")],
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny workflow run to completion once (about 2 minutes on 2 cores)."""
    work = tmp_path_factory.mktemp("tiny_run")
    t0 = time.time()
    result = run_snakemake(work, "--cores", "2", timeout=1200)
    return SimpleNamespace(work=work, results=work / "results" / "tiny", output=result.stdout,
                           seconds=time.time() - t0)


def copy_run(run, destination: Path) -> Path:
    """A copy of a finished run's working directory (results and .snakemake metadata, with
    their modification times)."""
    shutil.copytree(run.work, destination, symlinks=True)
    return destination


def read_map(path):
    from flexcore.core.io import read_map as read

    return read(path)[0]


def test_every_final_output_exists(tiny_run):
    missing = [f"{stage}/{name}" for stage, names in FINAL.items() for name in names
               if not (tiny_run.results / stage / name).is_file()
               or (tiny_run.results / stage / name).stat().st_size == 0]
    assert not missing, f"missing or empty: {missing}"
    for rule in RULES:
        assert (tiny_run.results / "logs" / f"{rule}.log").is_file(), rule
    for rule in set(RULES) - {"provenance"}:
        bench = (tiny_run.results / "benchmarks" / f"{rule}.tsv").read_text().splitlines()
        assert bench[0].startswith("s\th:m:s\tmax_rss") and len(bench) == 2, rule


def test_maps_are_finite_and_at_the_right_box(tiny_run):
    r = tiny_run.results
    for path in [r / "prep/consensus.mrc", r / "reconstruct/flex_map.mrc",
                 r / "reconstruct/noflex_map.mrc", r / "generate/series_z1/frame_002.mrc"]:
        vol = read_map(path)
        assert vol.shape == (BOX,) * 3, path
        assert np.isfinite(vol).all() and vol.std() > 0, path


def test_training_outputs_are_sensible(tiny_run):
    r = tiny_run.results / "train"
    history = json.loads((r / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, TINY["train"]["epochs"] + 1))
    final = history[-1]
    assert np.isfinite(final["val_nll_flow"]) and np.isfinite(final["val_nll_rigid"])
    z = np.load(r / "latents.npy")
    assert z.shape == (N, TINY["train"]["latent_dim"])
    assert np.isfinite(z).all() and np.abs(z).max() < 1.5 and z.std() > 0
    frames = sorted((tiny_run.results / "generate" / "series_z1").glob("frame_*.mrc"))
    assert len(frames) == TINY["generate"]["n_frames"]
    from PIL import Image

    with Image.open(tiny_run.results / "generate" / "series_z1.gif") as gif:
        assert gif.n_frames > 1


def test_reconstruction_and_evaluation_are_sensible(tiny_run):
    recon = json.loads((tiny_run.results / "reconstruct" / "recon.json").read_text())
    nyquist = 2 * TINY["simulate"]["pixel_size_A"]
    for kind in ("flex_masked", "noflex_masked"):
        res = recon["resolution_0143_A"][kind]
        assert nyquist <= res < 4 * nyquist, f"{kind} FSC 0.143 at {res} Å"
    assert recon["parameters"]["iterations"] == TINY["reconstruct"]["iterations"]
    table = (tiny_run.results / "evaluation" / "evaluation.tsv").read_text().splitlines()
    header = table[0].split("\t")
    assert {"gt_map", "n_particles", "spearman_best"} <= set(header)
    generated = [c for c in header if c.startswith("fsc_") and c.endswith("_generated")]
    assert generated and all(c.replace("_generated", "_consensus") in header for c in generated)
    assert 1 <= len(table) - 1 <= TINY["simulate"]["n_gt_maps"]
    rho = float(table[1].split("\t")[header.index("spearman_best")])
    assert 0 <= rho <= 1


def test_selection_writes_the_original_rows_and_states_get_maps(tiny_run):
    """Every cluster file holds exactly the simulated particles' rows (all columns, optics
    table), the clusters partition the particles in latent order, and each cluster's state
    map has an FSC."""
    import warnings

    import pandas as pd
    import starfile

    r = tiny_run.results
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = starfile.read(r / "simulate/particles.star", always_dict=True)
        clusters = [starfile.read(r / f"select/cluster{i}.star", always_dict=True) for i in (1, 2, 3)]
    z = np.load(r / "train/latents.npy")[:, 0]
    select = json.loads((r / "select/select.json").read_text())
    rows = []
    for c, record in zip(clusters, select["subsets"]):
        pd.testing.assert_frame_equal(c["optics"], original["optics"])
        merged = c["particles"].merge(original["particles"].reset_index(), how="left")
        assert merged["index"].notna().all() and len(merged) == record["n_particles"]
        rows.append(merged["index"].to_numpy())
    assert sorted(np.concatenate(rows).tolist()) == list(range(N))
    states = [s["state"][0] for s in select["subsets"]]
    assert states == sorted(states)
    for idx, state in zip(rows, states):  # prep keeps the order, so row i is latent i
        assert abs(np.mean(z[idx]) - state) < 1e-4
    table = (r / "states/states.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in table[1:]] == ["cluster1", "cluster2", "cluster3"]
    nyquist = 2 * TINY["simulate"]["pixel_size_A"]
    for line in table[1:]:
        assert nyquist <= float(line.split("\t")[3]) < 6 * nyquist
    vol = read_map(r / "states/maps/state_cluster1.mrc")
    assert vol.shape == (BOX,) * 3 and np.isfinite(vol).all() and vol.std() > 0


def test_local_resolution_and_strain_outputs_are_sensible(tiny_run):
    r = tiny_run.results
    regions = (r / "localres/regions.tsv").read_text().splitlines()
    header = regions[0].split("\t")
    names = [line.split("\t")[0] for line in regions[1:]]
    assert names == ["whole", "core", "middle", "moving"]
    for col in ("fsc0143_flex_A", "fsc0143_noflex_A", "gain_A", "localres_median_flex_A"):
        assert col in header
    local = read_map(r / "localres/localres_flex.mrc")
    labels = read_map(r / "localres/regions.mrc")
    assert ((local > 0) == (labels > 0)).all()
    assert local[labels > 0].min() >= 2 * TINY["simulate"]["pixel_size_A"] - 1e-4
    generated = json.loads((r / "generate/generate.json").read_text())
    trained = json.loads((r / "train/train.json").read_text())
    for record in (generated["strain"], trained["strain"]):
        assert record["threshold"] == 1.5 and record["max_stretch"] >= 1.0
        assert 0 <= record["n_flagged"] <= record["n_cells"]
    evaluation = json.loads((r / "evaluation/reconstruction.json").read_text())
    assert {"flex_moving", "rigid_moving", "flex_core", "rigid_whole"} <= set(
        evaluation["half_map_res0143_A"])
    assert evaluation["n_maps"] >= 1


def test_provenance_records_config_seeds_and_versions(tiny_run):
    prov = yaml.safe_load((tiny_run.results / "provenance.yaml").read_text())
    assert prov["config"]["dataset"] == "tiny"
    assert prov["config"]["train"]["epochs"] == TINY["train"]["epochs"]
    assert prov["config"]["train"]["lr_flow_start"] == 0.005  # schema default filled in
    assert prov["seeds"] == {"simulate": 0, "prep": 0, "train": 0, "reconstruct": 0}
    for key in ("flexcore", "torch", "snakemake", "python", "git_commit", "time"):
        assert key in prov, key
    assert prov["snakemake"].startswith("9.")


def test_report_has_every_result_with_captions(tiny_run):
    report = tiny_run.work / "report.html"
    run_snakemake(tiny_run.work, "--report", report, timeout=300)
    html = report.read_text(errors="replace")
    assert len(html) > 100_000
    for name in ["fsc.png", "loss.png", "latents.png", "examples.png", "mesh_slices.png",
                 "series_z1.gif", "series_z1.png", "evaluation.tsv", "provenance.yaml",
                 "selection.png", "states.tsv", "states_fsc.png", "regions.tsv",
                 "fsc_regions.png", "localres.png", "strain.png", "reconstruction.tsv",
                 "moving_fsc.png"]:
        assert name in html, f"{name} is not in the report"
    for caption in ["Gold-standard Fourier shell correlation", "Ground-truth evaluation",
                    "validation NLL of held-out", "Motion along one latent dimension",
                    "per Fourier coefficient in the band", "Particles selected by latent region",
                    "Per-state maps", "Where flexible reconstruction helped",
                    "Local resolution by windowed FSC", "Strain of the learned motion",
                    "The reconstructions against the ground truth", "The latent explorer"]:
        assert caption in html, f"caption '{caption}' is not in the report"
    # the GIF, the tables and the provenance as pages shown inline, with readable labels
    for page in FINAL["report"] + ["explorer.html"]:
        assert page in html, f"{page} is not in the report"
    for label in ["motion along z1", "per-state maps", "resolution per region", "provenance",
                  "latent explorer"]:
        assert label in html, f"label '{label}' is not in the report"
    check_report_in_a_browser(report, tiny_run.results)


def check_report_in_a_browser(report: Path, results: Path) -> None:
    """With headless Chromium (skipped without it): the report and its pages load without a
    script error, the motion page shows its GIF, and the K = 1 explorer page loads and shows
    a structure image."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium executable on PATH (apt-get install chromium)")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args, headless=True)
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        for category in ("3. Motion", "6. Selection and states", "7. Provenance"):
            assert category in page.content(), category
        page.goto((results / "report" / "motion_z1.html").as_uri())
        width = page.evaluate("document.querySelector('img').naturalWidth")
        assert width > 0, "the motion GIF is not shown"
        page.goto((results / "train" / "explorer.html").as_uri())
        page.wait_for_function("window.flexExplorer !== undefined")
        assert page.evaluate("document.getElementById('structure-image').naturalWidth") > 0
        assert page.evaluate("document.getElementById('view').options[0].value") == "z1"
        browser.close()
    assert errors == [], errors


def test_rerun_after_completion_does_nothing(tiny_run):
    result = run_snakemake(tiny_run.work, "--cores", "2", timeout=300)
    assert "Nothing to be done" in result.stdout, result.stdout[-2000:]


def test_deleting_a_training_output_reruns_only_its_dependents(tiny_run, tmp_path):
    work = copy_run(tiny_run, tmp_path / "copy")
    (work / "results" / "tiny" / "train" / "latents.npy").unlink()
    result = run_snakemake(work, "-n", "--cores", "2", timeout=300)
    assert planned_jobs(result.stdout) == {"train": 1, "explore": 1, "generate": 1,
                                           "reconstruct": 1, "evaluate": 1, "select": 1,
                                           "state_maps": 1, "localres": 1,
                                           "evaluate_reconstruction": 1, "report_pages": 1,
                                           "all": 1}, result.stdout[-3000:]


def job_processes(snakemake_pid: int, script: str) -> list:
    """The processes snakemake started that run the rule script ``script`` (e.g. train.py)."""
    import psutil  # a dependency of snakemake

    try:
        children = psutil.Process(snakemake_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if any(arg.endswith(f".{script}") for arg in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def test_killed_training_job_resumes_when_snakemake_runs_again(tiny_run, tmp_path):
    """SIGKILL the train job once its first checkpoint exists; snakemake removes the job's
    declared outputs but not train/checkpoints/, and the next `snakemake` resumes there."""
    work = copy_run(tiny_run, tmp_path / "killed")
    train = work / "results" / "tiny" / "train"
    shutil.rmtree(train)
    target = "results/tiny/train/latents.npy"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(work),
           "--configfile", str(TINY_CONFIG), "--cores", "2", target]
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    last = train / "checkpoints" / "checkpoint_last.pt"  # written atomically after epoch 1
    deadline = time.time() + 900
    try:
        while not last.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        jobs = job_processes(proc.pid, "train.py")
        for job in jobs:
            job.kill()
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert jobs and last.exists(), out[-3000:]
    assert proc.returncode != 0 and "Error in rule train" in out
    assert not (train / "model.pt").exists() and not (train / "latents.npy").exists()
    assert (train / "checkpoints" / "checkpoint_epoch001.pt").exists()  # kept by snakemake

    run_snakemake(work, "--cores", "2", target, timeout=900)
    log = (work / "results" / "tiny" / "logs" / "train.log").read_text()
    assert "resumed from results/tiny/train/checkpoints/checkpoint_last.pt (epoch 1 of 2 done)" \
        in log, log[-3000:]
    assert "epoch 1/2" not in log  # epoch 1 was not trained again
    resumed = np.load(train / "latents.npy")
    uninterrupted = np.load(tiny_run.results / "train" / "latents.npy")
    import torch

    if torch.cuda.is_available():  # the splat kernel's atomic sums are not bit-reproducible
        np.testing.assert_allclose(resumed, uninterrupted, atol=1e-3)
    else:
        np.testing.assert_array_equal(resumed, uninterrupted)


def test_particles_in_a_relion_project_run_through_prep(tiny_run, tmp_path):
    """run_data.star in Refine3D/job009 names its stack Extract/job005/... (relative to the
    project folder, as RELION writes it); snakemake runs elsewhere."""
    from flexcore.core.io import read_particles, write_star

    project = tmp_path / "project"
    (project / "Extract" / "job005").mkdir(parents=True)
    (project / "Refine3D" / "job009").mkdir(parents=True)
    (project / "default_pipeline.star").write_text("data_pipeline_general\n")
    sim = tiny_run.results / "simulate"
    shutil.copy(sim / "particles.mrcs", project / "Extract" / "job005" / "stack_001.mrcs")
    shutil.copy(sim / "consensus.mrc", project / "Refine3D" / "job009" / "run_class001.mrc")
    table = read_particles(sim / "particles.star")
    table.image_paths = np.array(["Extract/job005/stack_001.mrcs"] * len(table), dtype=object)
    write_star(table, project / "Refine3D" / "job009" / "run_data.star")
    config = tmp_path / "relion.yaml"
    config.write_text(yaml.safe_dump({"dataset": "relion", "input": {
        "source": "files", "particles": str(project / "Refine3D" / "job009" / "run_data.star"),
        "consensus_map": str(project / "Refine3D" / "job009" / "run_class001.mrc")}}))
    work = tmp_path / "work"
    work.mkdir()
    run_snakemake(work, "--cores", "2", "results/relion/prep/prep.json",
                  configfiles=(TINY_CONFIG, config), timeout=600)
    info = json.loads((work / "results" / "relion" / "prep" / "prep.json").read_text())
    assert info["n_particles"] == N and info["project_dir"] is None


def test_failing_rule_leaves_its_log_and_no_outputs(tiny_run, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("particles.star", "particles.mrcs"):
        shutil.copy(tiny_run.results / "simulate" / name, data / name)
    broken = data / "consensus.mrc"
    broken.write_bytes(b"this is not an MRC file\n" * 64)
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump({
        "dataset": "broken",
        "input": {"source": "files", "particles": str(data / "particles.star"),
                  "consensus_map": str(broken)},
    }))
    result = run_snakemake(tmp_path, "--cores", "2", "results/broken/prep/prep.json",
                           configfiles=(TINY_CONFIG, config), check=False, timeout=300)
    assert result.returncode != 0
    assert "Error in rule prep" in result.stdout
    log = tmp_path / "results" / "broken" / "logs" / "prep.log"
    assert log.is_file()
    text = log.read_text()
    assert str(broken) in text or "consensus.mrc" in text, text[-2000:]
    assert "Error" in text or "error" in text
    prep = tmp_path / "results" / "broken" / "prep"
    left = sorted(p.name for p in prep.rglob("*")) if prep.exists() else []
    assert not left, f"prep left files behind: {left}"


def test_same_config_and_seeds_give_identical_simulation_and_prep(tiny_run, tmp_path):
    """Byte for byte (MRC files included: flexcore writes a fixed header label), except the
    time and path fields of the JSON records."""
    run_snakemake(tmp_path, "--cores", "2", "results/tiny/prep/prep.json", timeout=600)
    again = tmp_path / "results" / "tiny"
    volatile = {"time", "seconds", "command", "source_particles", "source_map"}
    compared = 0
    for stage in ("simulate", "prep"):
        for first in sorted((tiny_run.results / stage).rglob("*")):
            if not first.is_file() or first.name.startswith(".snakemake"):
                continue
            second = again / stage / first.relative_to(tiny_run.results / stage)
            if first.suffix == ".json":
                a, b = (json.loads(p.read_text()) for p in (first, second))
                for record in (a, b):
                    for key in volatile & set(record):
                        record.pop(key)
                assert a == b, f"{stage}/{first.name} differs"
            else:
                a, b = first.read_bytes(), second.read_bytes()
                assert a == b, f"{stage}/{first.relative_to(tiny_run.results / stage)} differs"
            compared += 1
    assert compared >= 16


def test_split_reconstruction_with_two_ranks_per_job_gives_the_one_job_maps(tiny_run, tmp_path):
    work = copy_run(tiny_run, tmp_path / "split")
    split = tmp_path / "split.yaml"
    split.write_text(yaml.safe_dump({"train": {"gpus": 2},
                                     "reconstruct": {"split_jobs": True, "gpus": 2}}))
    # the reconstruction's own record as target: the stages after it (localres, state maps,
    # report) are the one-job run's and are tested there
    result = run_snakemake(work, "--cores", "2", "results/tiny/reconstruct/recon.json",
                           configfiles=(TINY_CONFIG, split), timeout=1200)
    jobs = planned_jobs(result.stdout)
    # one job per solve, then one that combines them; the GPU count is no training parameter
    assert jobs.get("reconstruct_half") == 4 and jobs.get("reconstruct_combine") == 1, jobs
    assert "reconstruct" not in jobs, jobs
    assert "train" not in jobs, jobs
    results = work / "results" / "tiny"
    for name in FINAL["reconstruct"]:
        if name.endswith(".mrc"):
            a = read_map(tiny_run.results / "reconstruct" / name)
            b = read_map(results / "reconstruct" / name)
            assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max(), name
    log = (results / "logs" / "reconstruct_noflex_half_B.log").read_text()
    assert "starting 2 ranks" in log and "on 2 ranks" in log
    assert not list((results / "reconstruct" / "halves").glob("*"))  # temporary, removed
    recon = json.loads((results / "reconstruct" / "recon.json").read_text())
    assert recon["solved_in"].startswith("separate jobs")
    assert recon["ranks"] == {s: 2 for s in ("flex_A", "noflex_A", "flex_B", "noflex_B")}


def test_sweep_of_two_values_runs_and_compares_the_points(tiny_run, tmp_path):
    work = copy_run(tiny_run, tmp_path / "sweep")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"sweep": {
        "name": "ci", "parameters": {"rigidity_lambda": [0.5, 8.0]}, "reconstruct": True}}))
    result = run_snakemake(work, "--cores", "2", configfiles=(TINY_CONFIG, sweep), timeout=1200)
    jobs = planned_jobs(result.stdout)
    assert jobs.get("sweep_train") == 2 and jobs.get("sweep_reconstruct") == 2
    assert not {"simulate", "prep", "mesh", "train"} & set(jobs), jobs  # main run reused
    root = work / "results" / "tiny" / "sweep" / "ci"
    for value in ("0.5", "8.0"):
        point = root / f"rigidity_lambda~{value}"
        assert (point / "train" / "train.json").is_file()
        assert (point / "reconstruct" / "recon.json").is_file()
        trained = json.loads((point / "train" / "train.json").read_text())
        assert trained["parameters"]["rigidity_lambda"] == float(value)
    import pandas as pd

    table = pd.read_csv(root / "summary.tsv", sep="\t")
    assert table["rigidity_lambda"].tolist() == [0.5, 8.0]
    for column in ("val_nll_flow", "val_nll_rigid", "val_nll_gain", "latent_sd_z1",
                   "fsc0143_flex_A", "fsc0143_rigid_A", "spearman_rho_motion1"):
        assert column in table and table[column].notna().all(), column
    assert (root / "summary.png").stat().st_size > 10_000
    prov = yaml.safe_load((root / "provenance.yaml").read_text())
    assert [p["rigidity_lambda"] for p in prov["sweep_points"]] == [0.5, 8.0]
    report = work / "report.html"
    run_snakemake(work, "--report", report, configfiles=(TINY_CONFIG, sweep), timeout=300)
    assert "summary.tsv" in report.read_text(errors="replace")
