"""Run the workflow with snakemake in a subprocess, for the workflow tests.

Every run has a timeout after which snakemake and everything it started are killed, so a
test can fail but never hang.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
TINY_CONFIG = Path(__file__).with_name("tiny.yaml")


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run_snakemake(workdir, *args, configfiles=(TINY_CONFIG,), timeout: float = 600,
                  check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """``snakemake -s workflow/Snakefile -d workdir --configfile ... args``; stdout and stderr
    together in ``.stdout``. Raises AssertionError (with the output's tail) on a timeout, or
    on a non-zero exit when ``check``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir)]
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    cmd += [str(a) for a in args]
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, env=env)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"snakemake did not finish in {timeout:.0f} s: {' '.join(cmd)}\n"
                             f"{tail(out)}") from None
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake exited with {proc.returncode}: {' '.join(cmd)}\n"
                             f"{tail(out)}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def planned_jobs(output: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run: rule → number of jobs."""
    jobs, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("Job stats:"):
            in_table, jobs = True, {}
            continue
        if in_table:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
                jobs[parts[0]] = int(parts[1])
            elif parts and parts[0] == "total":
                in_table = False
    return jobs
