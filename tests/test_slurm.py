"""The tiny workflow through `--profile profiles/slurm` on a real one-node Slurm cluster.

The fixture starts munged, slurmctld and slurmd (Debian's slurm-wlm 22.05) on this machine
with a configuration under a temporary folder (``SLURM_CONF`` points at it), installing the
packages with apt-get first when they are missing and the test runs as root; it skips with
the reason (and the daemons' log tail) when that is not possible, and always stops the
daemons at the end. The node declares one GPU (a count-only GRES on /dev/null), so jobs
asking for ``--gpus=1`` schedule without a GPU.

(The slurm-jobstep plugin drops ``SLURM_CONF`` from the environment of the srun it runs
inside each job, so an ``srun`` wrapper on ``PATH`` sets it again; a cluster with its
configuration at the default path, or configless, needs no such thing.)

The test checks that every non-local rule ran as a Slurm job (the plugin's submission
lines, slurmctld's log, each job's Slurm log file), that the GPU stages asked for a GPU in
their sbatch command (``--gpus=1``) and that Slurm recorded it (``TresPerJob=gres/gpu:1``),
and that the memory and time asked for (``--mem``, ``-t``) are those sized from the data
(flexcore.core.resources). A dry run with the Slurm profile (no cluster needed) checks the
requests of a large dataset against a small one.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "workflow_config"))
from snakemake_cli import ROOT, run_snakemake, tail  # noqa: E402

from flexcore.core.resources import DatasetSize, fit_problems, memory_mb, runtime_min  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
DAEMONS = {"munged": "munge", "slurmctld": "slurmctld", "slurmd": "slurmd"}
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel")
REMOTE_RULES = {"simulate", "prep", "mesh", "train", "explore", "generate", "reconstruct",
                "evaluate", "select", "state_maps", "localres", "evaluate_reconstruction"}
GPU_RULES = {"train", "generate", "reconstruct", "state_maps", "localres"}
PARTITION = "flexcore"
# The node is declared larger than this machine (slurmd accepts it with config_overrides)
# so the profile's production requests (8 CPUs per GPU, 64 GB) schedule unchanged.
NODE_CPUS, NODE_MEMORY_MB = 16, 131072


def binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None)


def install_slurm() -> None:
    """apt-get install the Slurm and munge packages (root only), or skip saying why."""
    missing = [b for b in (*DAEMONS, *CLIENTS) if binary(b) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing) and cannot be "
                    f"installed here (needs root and apt-get): "
                    f"apt-get install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    try:
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300)
            done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip(f"apt-get install {' '.join(PACKAGES)} took longer than 10 minutes")
    if done.returncode != 0:
        pytest.skip(f"apt-get install {' '.join(PACKAGES)} failed:\n"
                    f"{tail(done.stdout + done.stderr, 15)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path, host: str) -> dict[str, Path]:
    """slurm.conf, gres.conf and a munge key under ``folder``; returns the paths used."""
    paths = {name: folder / name for name in ("state", "spool", "munge")}
    for p in paths.values():
        p.mkdir(mode=0o700)
    key = paths["munge"] / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    paths.update(conf=folder / "slurm.conf", key=key, socket=paths["munge"] / "munge.socket",
                 ctld_log=folder / "slurmctld.log", slurmd_log=folder / "slurmd.log")
    (folder / "gres.conf").write_text(f"NodeName={host} Name=gpu File=/dev/null\n")
    paths["conf"].write_text(f"""\
ClusterName=flexcoretest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={paths['socket']}
StateSaveLocation={paths['state']}
SlurmdSpoolDir={paths['spool']}
SlurmctldPidFile={folder / 'slurmctld.pid'}
SlurmdPidFile={folder / 'slurmd.pid'}
SlurmctldLogFile={paths['ctld_log']}
SlurmdLogFile={paths['slurmd_log']}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=900
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB} \
Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    return paths


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running one-node Slurm cluster; yields the environment for its client commands."""
    install_slurm()
    folder = tmp_path_factory.mktemp("slurm")
    host = socket.gethostname().split(".")[0]
    paths = write_config(folder, host)
    env = {**os.environ, "SLURM_CONF": str(paths["conf"])}
    commands = [
        [binary("munged"), "--foreground", "--force", f"--key-file={paths['key']}",
         f"--socket={paths['socket']}", f"--pid-file={folder / 'munged.pid'}",
         f"--log-file={folder / 'munged.log'}", f"--seed-file={folder / 'munged.seed'}"],
        [binary("slurmctld"), "-D", "-i", "-f", str(paths["conf"])],
        [binary("slurmd"), "-D", "-f", str(paths["conf"])],
    ]
    daemons: list[subprocess.Popen] = []

    def log_tails() -> str:
        logs = [folder / "munged.log", paths["ctld_log"], paths["slurmd_log"],
                *folder.glob("*.out")]
        return "\n".join(f"--- {p.name}\n{tail(p.read_text(errors='replace'), 15)}"
                         for p in logs if p.exists())

    try:
        for cmd in commands:
            out = open(folder / f"{Path(cmd[0]).name}.out", "w")
            daemons.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True))
            time.sleep(1.0)
            if daemons[-1].poll() is not None:
                pytest.skip(f"{Path(cmd[0]).name} exited at start:\n{log_tails()}")
        state = ""
        for _ in range(60):
            info = subprocess.run([binary("sinfo"), "-h", "-o", "%T %G"], env=env,
                                  capture_output=True, text=True, timeout=30)
            state = (info.stdout + info.stderr).strip()
            if state.startswith("idle"):
                break
            time.sleep(1.0)
        else:
            pytest.skip(f"the Slurm node did not become idle (sinfo: {state!r}):\n{log_tails()}")
        # The slurm-jobstep plugin removes SLURM_CONF (with every SLURM_* variable but the
        # job's identity) from the environment of the srun it starts inside each job, so
        # srun cannot find a configuration outside /etc/slurm; put it back with a wrapper.
        wrappers = folder / "bin"
        wrappers.mkdir()
        srun = wrappers / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF={paths["conf"]} exec {binary("srun")} "$@"\n')
        srun.chmod(0o755)
        env["PATH"] = f"{wrappers}{os.pathsep}{env.get('PATH', '')}"
        yield {"env": env, "folder": folder, "ctld_log": paths["ctld_log"], "logs": log_tails}
    finally:
        for proc in reversed(daemons):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=20)


# The Slurm executor polls every 2 s, then 10 s longer after each poll that finds no job
# finished, so each job costs ~15 s of waiting: CI runs the chain up to training (four jobs,
# one of them a GPU job); every rule through Slurm is the slow case (~3.5 min).
SCOPES = {"to-training": ({"simulate", "prep", "mesh", "train"}, "results/tiny/train/model.pt"),
          "every-rule": (REMOTE_RULES, "results/tiny/reconstruct/flex_map.mrc")}


@pytest.mark.parametrize("scope", [pytest.param("to-training"),
                                   pytest.param("every-rule", marks=pytest.mark.slow)])
def test_tiny_workflow_runs_through_slurm_with_gpus_for_gpu_stages(slurm_cluster, tmp_path, scope):
    env = slurm_cluster["env"]
    remote, target = SCOPES[scope]
    gpu_rules = GPU_RULES & remote
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile"),
           "-d", str(tmp_path), "--configfile", str(ROOT / "tests/workflow_config/tiny.yaml"),
           "--profile", str(ROOT / "profiles" / "slurm"),
           "--slurm-status-command", "squeue", "--slurm-no-account",
           "--slurm-init-seconds-before-status-checks", "2",
           # poll every 2 s, not the default 10 s backing off: jobs of seconds, test minutes
           "--seconds-between-status-checks", "2",
           # the profile's partitions and account are placeholders: use this cluster's
           "--default-resources", f"slurm_partition={PARTITION}",
           "--set-resources", *(f"{rule}:slurm_partition={PARTITION}"
                                for rule in sorted(GPU_RULES | {"reconstruct_half"})),
           "--verbose", *([target] if scope != "every-rule" else [])]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=1500)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        subprocess.run([binary("scancel"), "--partition", PARTITION], env=env, timeout=30,
                       check=False)
        pytest.fail(f"snakemake did not finish through Slurm in 25 min:\n{tail(out)}\n"
                    f"{slurm_cluster['logs']()}")
    assert proc.returncode == 0, f"{tail(out, 80)}\n{slurm_cluster['logs']()}"
    assert (tmp_path / target).is_file()

    # every non-local rule was submitted, and only those
    submitted = {}
    for m in re.finditer(r"sbatch call: (.*)", out):
        call = m.group(1)
        rule = re.search(r"--comment '?rule_(\w+?)(_wildcards_\S*)?'? ", call).group(1)
        submitted[rule] = call
    assert set(submitted) == remote, sorted(submitted)
    job_ids = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out))
    assert len(job_ids) == len(remote)

    # GPU stages asked for a GPU (and through --gpus, not slurm_extra); the others did not
    for rule, call in submitted.items():
        assert ("--gpus=1" in call) == (rule in gpu_rules), f"{rule}: {call}"
        assert f"-p {PARTITION}" in call or f"--partition {PARTITION}" in call, call
    # memory and time sized from the tiny dataset (600 particles, box 32, training box 32)
    tiny = DatasetSize(n_particles=600, box=32, train_box=32)
    for rule in remote:
        options = {"n_cells": 10} if rule == "train" else {}
        assert f"--mem {memory_mb(rule, tiny, **options)}" in submitted[rule], submitted[rule]
    assert f"-t {runtime_min('train', tiny, epochs=2)}" in submitted["train"], submitted["train"]

    # Slurm itself ran them: slurmctld logged each job, Slurm kept each job's log, and
    # recorded the GPU request of the GPU jobs
    ctld = slurm_cluster["ctld_log"].read_text(errors="replace")
    for slurm_id in job_ids.values():
        assert re.search(rf"JobId={slurm_id}\b.*(WEXITSTATUS 0|done)", ctld), \
            f"slurmctld did not log job {slurm_id} ending well:\n{tail(ctld, 30)}"
    logs = list((tmp_path / "logs" / "slurm").rglob("*.log"))
    assert {p.stem for p in logs} >= set(job_ids.values()), logs
    gpu_ids = []
    for slurm_id in job_ids.values():
        show = subprocess.run([binary("scontrol"), "show", "job", slurm_id], env=env,
                              capture_output=True, text=True, timeout=30).stdout
        rule = re.search(r"Comment=rule_(\w+?)(_wildcards_\S*)?\s", show).group(1)
        assert "JobState=COMPLETED" in show, show
        if rule in gpu_rules:
            assert "gres/gpu:1" in show or "gres:gpu:1" in show, show
            gpu_ids.append(slurm_id)
    assert len(gpu_ids) == len(gpu_rules) >= 1


def requested(output: str, rule: str, resource: str) -> int:
    """A resource of a rule's job in a dry run's job listing."""
    block = output.split(f"rule {rule}:")[1].split("\n\n")[0]
    return int(re.search(rf"\b{resource}=(\d+)", block).group(1))


def test_requested_memory_follows_the_dataset_size(tmp_path):
    """Dry runs with the Slurm profile (no cluster needed): the tiny dataset and a large
    one (300 000 particles in a STAR file, a 384 px consensus map) ask for what the resource
    model gives for their size, and the large one is told what will not fit."""
    data = tmp_path / "data"
    data.mkdir()
    rows = "".join(f"{i % 1000 + 1:06d}@stacks/s{i // 1000}.mrcs\t1\n" for i in range(300_000))
    (data / "particles.star").write_text(
        "data_optics\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n1 1.0\n\n"
        "data_particles\nloop_\n_rlnImageName\n_rlnOpticsGroup\n" + rows)
    import mrcfile

    with mrcfile.new_mmap(data / "map.mrc", shape=(384, 384, 384), mrc_mode=2) as m:
        m.voxel_size = 1.0  # a sparse file: only the header is written
    (tmp_path / "large.yaml").write_text(
        "dataset: large\ninput:\n  source: files\n"
        f"  particles: {data / 'particles.star'}\n  consensus_map: {data / 'map.mrc'}\n"
        "prep:\n  train_box: 128\n")
    runs = {}
    for name, configs in (("tiny", (ROOT / "tests/workflow_config/tiny.yaml",)),
                          ("large", (ROOT / "config/config.yaml", tmp_path / "large.yaml"))):
        (tmp_path / name).mkdir()
        result = run_snakemake(tmp_path / name, "-n", "--profile", ROOT / "profiles" / "slurm",
                               configfiles=configs, timeout=180)
        runs[name] = result.stdout
    large = DatasetSize(n_particles=300_000, box=384, train_box=128)
    tiny = DatasetSize(n_particles=600, box=32, train_box=32)
    for rule in ("prep", "reconstruct"):
        assert requested(runs["large"], rule, "mem_mb") == memory_mb(rule, large)
        assert requested(runs["tiny"], rule, "mem_mb") == memory_mb(rule, tiny)
    import yaml

    n_cells = yaml.safe_load((ROOT / "config/config.yaml").read_text())["mesh"]["n_cells"]
    assert requested(runs["large"], "train", "mem_mb") == memory_mb("train", large, n_cells=n_cells)
    assert requested(runs["large"], "train", "mem_mb") > 5 * requested(runs["tiny"], "train", "mem_mb")
    assert requested(runs["large"], "reconstruct", "runtime") > \
        requested(runs["tiny"], "reconstruct", "runtime")
    assert fit_problems("reconstruct", large)[0] in runs["large"]  # said before any job
    assert "flexcore resources:" not in runs["tiny"]
