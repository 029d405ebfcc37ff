"""Static checks of the workflow: `snakemake --lint`, snakefmt, dry runs with each profile
and with the sweep, the profiles' content, and the rules' layout (logs, benchmarks,
resources, conda envs, thin scripts)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent / "workflow_config"))
from snakemake_cli import ROOT, planned_jobs, run_snakemake  # noqa: E402

CONFIG = ROOT / "config" / "config.yaml"
SWEEP = ROOT / "config" / "sweeps" / "rigidity.yaml"
PROFILES = {name: ROOT / "profiles" / name for name in ("local", "slurm")}
RULES = ROOT / "workflow" / "rules"
SCRIPTS = ROOT / "workflow" / "scripts"
STAGES = ["simulate", "prep", "mesh", "train", "generate", "reconstruct", "select", "state_maps",
          "localres", "report"]
GPU_RULES = {"train", "generate", "reconstruct", "reconstruct_half", "state_maps", "localres"}
ONE_GPU_RULES = {"generate", "state_maps", "localres"}  # the others ask for train/reconstruct.gpus


@pytest.mark.parametrize("configfiles", [(CONFIG,), (CONFIG, SWEEP)], ids=["demo", "sweep"])
def test_snakemake_lint_passes(tmp_path, configfiles):
    result = run_snakemake(tmp_path, "--lint", configfiles=configfiles, check=False, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Congratulations, your workflow is in a good condition!" in result.stdout


def test_snakefmt_leaves_the_workflow_unchanged():
    snakefmt = shutil.which("snakefmt") or str(Path(sys.executable).with_name("snakefmt"))
    if not Path(snakefmt).exists():
        pytest.skip("snakefmt is not installed (pip install -e '.[dev]')")
    result = subprocess.run([snakefmt, "--check", str(ROOT / "workflow")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_dry_run_with_each_profile(tmp_path, profile):
    result = run_snakemake(tmp_path, "-n", "--profile", PROFILES[profile], configfiles=(CONFIG,),
                           timeout=120)
    jobs = planned_jobs(result.stdout)
    assert {"simulate", "prep", "mesh", "train", "generate", "reconstruct", "evaluate",
            "provenance"} <= set(jobs), result.stdout[-3000:]
    if profile == "slurm":  # memory and time from the demo's size, not fixed figures
        from flexcore.core.resources import DatasetSize, memory_mb, runtime_min

        cfg = yaml.safe_load(CONFIG.read_text())
        demo = DatasetSize(cfg["simulate"]["n_particles"], cfg["simulate"]["box"],
                           cfg["prep"]["train_box"])
        train = result.stdout.split("rule train:")[1].split("\n\n")[0]
        mem = memory_mb("train", demo, n_cells=cfg["mesh"]["n_cells"], ranks=cfg["train"].get("gpus", 1))
        assert "gpu=1" in train and f"mem_mb={mem}," in train, train
        epochs = cfg["train"]["epochs"]
        assert f"runtime={runtime_min('train', demo, epochs=epochs)}," in train, train
        assert "slurm_partition=CHANGE_ME_gpu_partition" in train


def test_slurm_dry_run_works_without_slurm_installed(tmp_path):
    """-n with the Slurm profile needs no sbatch/squeue (e.g. on a laptop)."""
    tools = tmp_path / "bin"  # a PATH with the basic tools but no Slurm commands
    tools.mkdir()
    for tool in ("which", "sh", "bash", "uname"):
        if shutil.which(tool):
            (tools / tool).symlink_to(shutil.which(tool))
    env = {"PATH": f"{tools}:{Path(sys.executable).parent}", "HOME": str(tmp_path)}
    assert shutil.which("sbatch", path=env["PATH"]) is None
    result = run_snakemake(tmp_path, "-n", "--profile", PROFILES["slurm"],
                           configfiles=(CONFIG,), timeout=120, env=env)
    assert planned_jobs(result.stdout)["train"] == 1


def test_sweep_dry_run_plans_one_training_per_point(tmp_path):
    result = run_snakemake(tmp_path, "-n", configfiles=(CONFIG, SWEEP), timeout=120)
    jobs = planned_jobs(result.stdout)
    assert jobs["sweep_train"] == 3 and jobs["sweep_reconstruct"] == 3
    assert jobs["sweep_evaluate"] == 3 and jobs["sweep_summary"] == 1
    assert "sweep_mesh" not in jobs  # only training parameters swept: one shared mesh
    for value in ("0.2", "0.5", "2.0"):
        point = f"results/demo/sweep/rigidity/rigidity_lambda~{value}"
        assert f"{point}/train/train.json" in result.stdout


def profile(name: str) -> dict:
    return yaml.safe_load((PROFILES[name] / "config.v8+.yaml").read_text())


def test_every_profile_key_is_commented():
    for name, folder in PROFILES.items():
        lines = (folder / "config.v8+.yaml").read_text().splitlines()
        for i, line in enumerate(lines):
            if re.match(r"^[a-z-]+:", line):
                above = lines[i - 1].strip() if i else ""
                assert above.startswith("#"), f"profiles/{name}: key '{line}' has no comment"


def test_local_profile_runs_one_gpu_job_at_a_time():
    p = profile("local")
    assert p["resources"] == {"gpu": 1}
    assert p["cores"] == "all"


def test_slurm_profile_uses_the_plugin_and_gpu_resources():
    p = profile("slurm")
    assert p["executor"] == "slurm"
    text = (PROFILES["slurm"] / "config.v8+.yaml").read_text()
    assert "slurm_extra" not in re.sub(r"#.*", "", text), "GPUs must not go through slurm_extra"
    assert "CHANGE_ME" in p["default-resources"]["slurm_partition"]
    assert "CHANGE_ME" in p["default-resources"]["slurm_account"]
    assert re.search(r"^# slurm-status-command: squeue", text, re.M)
    res = p["set-resources"]
    # one block for every GPU job: the GPU partition set once; memory, time and the GPU
    # count come from the rules (sized from the data), so the profile sets none of them
    gpu_block = res["train"]
    assert "CHANGE_ME" in gpu_block["slurm_partition"] and gpu_block["cpus_per_gpu"] > 0
    for rule in GPU_RULES | {"sweep_train", "sweep_reconstruct"}:
        assert res[rule] == gpu_block, rule
    for rule, block in res.items():
        assert not {"mem_mb", "runtime", "gpu"} & set(block), f"{rule}: would override the rule's"
    assert not {"mem_mb", "runtime"} & set(p["default-resources"])


def rule_blocks() -> dict[str, str]:
    blocks = {}
    for smk in RULES.glob("*.smk"):
        for part in re.split(r"\n(?=\s*(?:rule|use rule) )", smk.read_text()):
            m = re.match(r"\s*rule (\w+):", part)
            if m:
                blocks[m.group(1)] = part
    return blocks


def test_snakefile_is_a_table_of_contents():
    text = (ROOT / "workflow" / "Snakefile").read_text()
    assert 'configfile: "config/config.yaml"' in text
    for stage in STAGES:
        assert f'include: "rules/{stage}.smk"' in text
    assert re.search(r"rule all:\n(    default_target: True\n)?    input:\n"
                     r"        final_outputs\(\),", text)
    assert "validate(config" in (RULES / "common.smk").read_text()


def test_every_rule_has_log_benchmark_resources_conda_and_a_script():
    blocks = rule_blocks()
    assert {"simulate", "prep", "mesh", "train", "generate", "reconstruct", "evaluate",
            "provenance"} <= set(blocks)
    for name, block in blocks.items():
        assert "log:" in block, f"rule {name} has no log"
        assert re.search(r'script:\n\s+"\.\./scripts/\w+\.py"', block), f"rule {name}: no script"
        assert re.search(r'conda:\n\s+"\.\./\.\./envs/flexcore-(cpu|cuda)\.yaml"', block)
        if name in ("provenance", "sweep_summary"):
            continue  # local bookkeeping rules
        assert "benchmark:" in block, f"rule {name} has no benchmark"
        # memory and time sized from the data (workflow/rules/resources.smk)
        assert f'mem_mb=job_memory("{name}")' in block, name
        assert f'runtime=job_runtime("{name}")' in block, name
        assert (f'gpu_mem_mb=job_gpu_memory("{name}")' in block) == (name in GPU_RULES), name
        gpu = {**{rule: "gpu=1" for rule in ONE_GPU_RULES}, "train": 'gpu=job_gpus("train")',
               "reconstruct_half": 'gpu=job_gpus("reconstruct")',
               "reconstruct": 'gpu=job_gpus("reconstruct")'}.get(name)
        assert (gpu in block) if gpu else "gpu=" not in block, f"rule {name}: gpu resource"


def test_scripts_are_thin_and_log_stderr_first():
    for script in SCRIPTS.glob("*.py"):
        text = script.read_text()
        code = [line for line in text.splitlines() if line.strip()]
        assert len(text.splitlines()) <= 40, f"{script.name} is longer than 40 lines"
        first = next(i for i, line in enumerate(code) if line.startswith(("import", "from")))
        assert code[first] == "import sys"
        assert code[first + 1] == 'sys.stderr = open(snakemake.log[0], "w", buffering=1)', \
            f"{script.name} must send stderr to the log before anything else"
