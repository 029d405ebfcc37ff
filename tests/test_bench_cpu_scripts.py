"""The CPU speed scripts (benchmarks/bench_wiener.py, bench_latent_search.py, profile_cpu.py,
bench_cpu.py) run at a tiny size on the CPU and write what they measure (timings are never asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def run(script: str, *args) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def test_wiener_benchmark(tmp_path):
    out = tmp_path / "wiener.json"
    run("bench_wiener.py", "--box", 16, "--particles", 20, "--batch-size", 8, "--repeats", 1,
        "--out", out)
    r = json.loads(out.read_text())
    assert r["box"] == 16 and r["particles"] == 20
    assert r["wall_s_per_10000"] > 0 and r["cpu_s_per_10000"] > 0


def test_latent_search_benchmark(tmp_path):
    out = tmp_path / "search.json"
    run("bench_latent_search.py", "--box", 24, "--particles", 16, "--repeats", 1,
        "--workdir", tmp_path / "work", "--out", out)
    r = json.loads(out.read_text())
    assert set(r["seconds"]) == {"full grid", "coarse to fine", "low-res grid", "no grid"}
    assert r["mask_voxels"] > 0 and r["particles"] == 16
    assert r["grid_box"] <= r["box"] and 0 < r["grid_mask_voxels"] <= r["mask_voxels"]


def test_cpu_profile(tmp_path):
    out = tmp_path / "profile.json"
    done = run("profile_cpu.py", "--box", 24, "--particles", 24, "--batch-size", 8,
               "--iterations", 1, "--workdir", tmp_path / "work", "--out", out)
    r = json.loads(out.read_text())
    assert [e["grid"] for e in r["epochs"]] == [True, True, False]
    for record in [*r["epochs"], r["reconstruct"]]:
        parts = {p["part"]: p["s"] for p in record["parts"]}
        assert "operator forward" in parts and "other (Python, bookkeeping)" in parts
        # the rows add up to the total (each rounded to 0.01 s)
        assert abs(sum(parts.values()) - record["seconds"]) <= 0.01 * len(parts) + 0.06
    assert set(r["reconstruct"]["passes_particles_per_s"]) == {"gradient", "curvature"}
    assert "reconstruct (1 iterations" in done.stdout


def test_bench_cpu_one_run(tmp_path):
    """bench_cpu.py times every part in one run; without cryoDRGN that part says why."""
    out = tmp_path / "cpu.json"
    done = run("bench_cpu.py", "--box", 24, "--pixel-size", 5, "--particles", 32, "--epochs", 4,
               "--batch-size", 16, "--recon-iterations", 1, "--op-size", 16, "--op-batch", 4,
               "--op-repeat", 1, "--threads", 1, "--cryodrgn", tmp_path / "no-cryodrgn",
               "--workdir", tmp_path / "work", "--out", out)
    r = json.loads(out.read_text())
    assert r["operator"]["reference"]["images_per_s"] > 0
    assert [e["kind"] for e in r["training"]["epochs"]] == [
        "start (no inference)", "grid", "grid", "no grid"]
    assert all(e["box"] == 24 and e["particles_per_s"] > 0 for e in r["training"]["epochs"])
    rc = r["reconstruction"]
    assert rc["wiener_s_per_10k"] > 0 and rc["gradient_particles_per_s"] > 0
    assert sum(rc["half_counts"]) == 32
    assert "not found" in r["cryodrgn"]["skipped"]
    assert "| cryoDRGN train_vae | skipped |" in done.stdout
    again = run("bench_cpu.py", "--summary", out)
    assert "Wiener start" in again.stdout and again.stdout.strip() in done.stdout
