"""benchmarks/bench_distributed.py at a tiny size on the CPU: one plain process and one
torchrun rank train and reconstruct the same data, and the record says how each went."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_compares_one_process_with_one_torchrun_rank(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_distributed.py"),
                           "--device", "cpu", "--box", "32", "--n", "96", "--epochs", "1",
                           "--recon-iterations", "1", "--workdir", str(tmp_path / "work"),
                           "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["runs"]) == {"plain", "torchrun_1"}
    plain, ranked = result["runs"]["plain"], result["runs"]["torchrun_1"]
    assert plain["ranks"] == 1 and ranked["ranks"] == 1 and result["train_box"] == 16
    for run in (plain, ranked):
        assert run["train_wall_s"] > run["train_epochs_s"] > 0
        assert run["recon_wall_s"] > run["recon_solves_s"] > 0
    assert set(ranked["overhead"]) == {"train_wall_s", "train_epochs_s", "recon_wall_s",
                                       "recon_solves_s"}
    assert "overhead: train wall" in done.stdout
    # the same seed and data: the torchrun rank learned the plain process's model
    first = tmp_path / "work" / "box32_n96"
    a = json.loads((first / "plain_0" / "train" / "history.json").read_text())
    b = json.loads((first / "torchrun1_0" / "train" / "history.json").read_text())
    assert len(a) == len(b) == 1
    assert abs(a[0]["train_nll"] - b[0]["train_nll"]) <= 1e-3 * abs(a[0]["train_nll"])
