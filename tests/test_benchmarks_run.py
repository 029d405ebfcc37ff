"""Every script in ``benchmarks/`` runs here at a tiny size on the CPU, so that a broken one
shows up in the test suite and not in the first minutes of a lent GPU. What needs a GPU
(``run_gpu_ops.sh``, SASS from ``nvcc``) is checked as far as a CPU allows: shell syntax, the
Python it embeds, and that its benchmark command lines parse. Timings are not asserted."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

# script -> the test that runs it (some scripts have their own test file)
COVERED = {
    "bench_ops.py": "test_bench_ops_times_reference_and_native_cpu",
    "bench_mesh.py": "test_bench_mesh_writes_its_rows",
    "bench_train.py": "test_bench_train_records_epochs",
    "bench_reconstruct.py": "test_bench_reconstruct_quick_mode",
    "bench_distributed.py": "tests/test_bench_distributed.py",
    "bench_latent_quality.py": "tests/test_latent_quality.py",
    "latent_quality_study.py": "tests/test_latent_quality.py",
    "bench_wiener.py": "tests/test_bench_cpu_scripts.py",
    "bench_latent_search.py": "tests/test_bench_cpu_scripts.py",
    "profile_cpu.py": "tests/test_bench_cpu_scripts.py",
    "bench_cpu.py": "tests/test_bench_cpu_scripts.py",
    "run_gpu_ops.sh": "test_run_gpu_ops_script_is_sound_on_the_cpu",
    "sass_loop_count.py": "test_sass_loop_count_on_a_synthetic_listing",
}


def run(script: str, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=timeout,
                          check=False, cwd=ROOT)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def test_every_benchmark_script_is_run_by_a_test():
    scripts = sorted(p.name for p in BENCH.iterdir() if p.suffix in (".py", ".sh"))
    missing = [s for s in scripts if s not in COVERED]
    assert not missing, f"benchmark scripts without a test in {Path(__file__).name}: {missing}"
    own = {n for n in COVERED.values() if n.startswith("test_")}
    assert own <= set(globals()), "COVERED names a test that does not exist"
    files = [ROOT / n for n in COVERED.values() if n.startswith("tests/")]
    assert all(f.is_file() and f.name.startswith("test_") for f in files), files


def test_bench_ops_times_reference_and_native_cpu(tmp_path):
    from flexcore.core.ops import cpu as cpu_backend

    impls = ["reference", "native"] if cpu_backend.load_extension() is not None else ["reference"]
    out = tmp_path / "ops.json"
    done = run("bench_ops.py", "--device", "all", "--cpu-sizes", "16", "--cpu-batch", "5",
               "--cpu-repeat", "1", "--threads", "1", "--cpu-impls", *impls, "--out", out)
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [r["impl"] for r in rows] == impls
    for r in rows:
        assert "error" not in r, r
        assert r["device"] == "cpu" and r["D"] == 16 and r["B"] == 5 and r["M"] > 0
        assert r["stat"] == "best" and r["threads"] == 1
        assert 0 < r["fwd_ms"] and 0 < r["fwdbwd_ms"]
        assert r["fwdbwd_img_per_s"] == pytest.approx(5 / (r["fwdbwd_ms"] * 1e-3))
    assert result["meta"]["date"] and "bench_ops.py" in result["meta"]["command"]
    assert "x f+b" in done.stdout  # the CPU summary table
    summary = run("bench_ops.py", "--summary", out)
    assert summary.stdout.strip().splitlines()[-1].split()[:2] == ["16", "5"]


def test_bench_mesh_writes_its_rows(tmp_path):
    out = tmp_path / "mesh.json"
    run("bench_mesh.py", "--boxes", "24", "--cells", "4", "--out", out)
    (row,) = json.loads(out.read_text())["rows"]
    assert row["box"] == 24 and row["n_cells"] == 4 and row["mask_voxels"] > 0
    assert row["tets"] > 0 and row["total_s"] >= row["mask_s"] >= 0


def test_bench_train_records_epochs(tmp_path):
    out = tmp_path / "train.json"
    run("bench_train.py", "--box", "32", "--n", "48", "--epochs", "1", "--batch", "16",
        "--device", "cpu", "--workdir", tmp_path / "work", "--out", out)
    result = json.loads(out.read_text())
    assert result["box"] == 32 and result["n_particles"] == 48
    (epoch,) = result["epochs_detail"]
    assert epoch["epoch"] == 1 and epoch["seconds"] > 0 and epoch["particles_per_s"] > 0
    assert result["extrapolated_train_minutes"] > 0


def test_bench_reconstruct_quick_mode(tmp_path):
    out = tmp_path / "recon.json"
    run("bench_reconstruct.py", "--quick", "--boxes", "32", "--quick-particles", "16",
        "--quick-iterations", "1", "--particles", "100", "--iterations", "2", "--device", "cpu",
        "--out", out)
    report = json.loads(out.read_text())
    (row,) = report["results"]
    assert row["box"] == 32 and row["particles"] == 16 and row["device"] == "cpu"
    assert row["measured_s"] > 0 and row["mask_voxels"] > 0
    extrapolated = row["extrapolated"]
    assert extrapolated["particles"] == 100 and extrapolated["total_s"] > 0
    assert extrapolated["per_pass_cost"]["flex"]["gradient_ms_per_particle"] > 0


def test_run_gpu_ops_script_is_sound_on_the_cpu(tmp_path):
    script = BENCH / "run_gpu_ops.sh"
    text = script.read_text()
    subprocess.run(["bash", "-n", str(script)], check=True)
    # the Python it writes and runs: syntax of every here-document
    docs = re.findall(r"<< 'EOF'\n(.*?)\nEOF\n", text, flags=re.S)
    assert len(docs) >= 2
    for doc in docs:
        compile(doc, "run_gpu_ops.sh here-document", "exec")
    # the build step's snippet imports what it names; without a GPU it reports no extension
    snippet = re.search(r'"\$PY" -c "\n(.*?)"\nBUILD_OK', text, flags=re.S).group(1)
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True,
                          env=ENV, timeout=300, check=False)
    assert "build directory" in done.stdout, done.stderr[-2000:]
    # every bench_ops.py command line parses with the script's own parser
    sys.path.insert(0, str(BENCH))
    try:
        import bench_ops
    finally:
        sys.path.remove(str(BENCH))
    joined = text.replace("\\\n", " ")
    lines = [ln for ln in joined.splitlines() if "benchmarks/bench_ops.py" in ln]
    assert len(lines) >= 3
    for line in lines:
        words = shlex.split(line.split("benchmarks/bench_ops.py", 1)[1])
        words = [w.replace("$OUT", str(tmp_path)).replace("$j", "bench_ops") for w in words]
        words = words[:words.index("|")] if "|" in words else words
        bench_ops.build_parser().parse_args(words)
    import torch

    if not torch.cuda.is_available():
        pytest.skip("the rest of run_gpu_ops.sh (build, SASS, sanitizer, GPU benchmark) needs a "
                    "CUDA GPU and nvcc")
    pytest.skip("run_gpu_ops.sh is run by hand on the GPU machine (about 10 minutes)")


SASS = """
        Function : _ZN8flexcore12_GLOBAL__N_120splat_forward_kernelILi2ELb1ELb1ELb1EEEvNS0_10KernelArgsE
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0020*/                   FFMA R2, R3, R4, R5 ;
        /*0030*/                   F2I.FLOOR.NTZ R6, R2 ;
""" + "".join(f"        /*{0x40 + 16 * i:04x}*/                   ATOMS.ADD RZ, [R7+0x{4 * i:x}], R8 ;\n"
              for i in range(8)) + """\
        /*00c0*/                   BRA 0x20 ;
        /*00d0*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*00e0*/                   EXIT ;
"""


def test_sass_loop_count_on_a_synthetic_listing(tmp_path):
    """A loop of 11 instructions holding 8 shared atomics (2 voxel-images): 5.5 per
    voxel-image, 1 conversion per 2 voxel-images."""
    listing = tmp_path / "splat.sass"
    listing.write_text(SASS)
    done = run("sass_loop_count.py", listing)
    assert done.stdout.strip() == ("G=2 fixed planes, displacements=1:   5.5 instructions per "
                                   "voxel-image, 0.5 conversions, ATOMS.ADD")
