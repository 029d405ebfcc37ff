"""Benchmark ``flexcore reconstruct``: time and peak memory at box 128 and 256.

For each box: simulate particles with ``run_simulate`` (pixel size ``160 Å / box``, so the
phantom fits), prepare them at half the box, build a mesh over the simulation's mask and
write an untrained checkpoint (K = 2; the cost does not depend on the flow's values), then
run ``flexcore reconstruct`` (flex + rigid baseline, both halves) in a fresh process and
read its ``recon.json`` (timings, passes, peak RSS, peak GPU memory).

* Full mode: ``--particles`` (20000) rows and ``--iterations`` (20). Simulating 20k images
  at box 256 takes hours on a CPU, so ``--pool`` unique images (default 2000) are simulated
  and the particle file lists them repeatedly (same cost per particle; the page cache may
  make reads cheaper than on a real dataset — reported as ``unique_images``).
* ``--quick``: a few particles and iterations are run, and the cost of 20k particles × 20
  iterations is **extrapolated** from the measured per-particle cost of each pass kind
  (start map, gradient pass, curvature pass); such rows are labelled ``extrapolated``.
  Memory is measured: it does not grow with the particle count when streaming.

Example::

    python benchmarks/bench_reconstruct.py --quick --out bench_reconstruct.json
    python benchmarks/bench_reconstruct.py --device cuda --out bench_reconstruct_gpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from flexcore.core.fourier import fourier_crop
from flexcore.core.io import read_map, read_particles, write_map, write_star
from flexcore.core.train_config import TrainConfig
from flexcore.stages.mesh.step import run_mesh
from flexcore.stages.prep.step import run_prep
from flexcore.stages.simulate import run_simulate
from flexcore.stages.train.data import TrainingData
from flexcore.stages.train.trainer import Trainer

BOX_EXTENT_A = 160.0
QUICK_PARTICLES = {128: 128, 256: 32}


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}
    if hasattr(os, "getloadavg"):  # other jobs on the machine inflate the times
        info["load_average_1min"] = os.getloadavg()[0]
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_GiB"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def prepare(box: int, n_particles: int, pool: int, work: Path, device: str) -> dict:
    """Simulated dataset, prep, mesh and an untrained checkpoint for ``box``."""
    psize = BOX_EXTENT_A / box
    n_sim = min(pool, n_particles)
    t0 = time.time()
    sim = run_simulate(work / "sim", n_particles=n_sim, box=box, pixel_size_A=psize, snr=0.05,
                       max_angle_deg=25.0, seed=0, device=device)
    star = sim.particles
    if n_particles > n_sim:  # list the simulated images repeatedly
        table = read_particles(star)
        star = work / "sim" / "particles_tiled.star"
        write_star(table.subset(np.arange(n_particles) % n_sim), star)
    t_sim = time.time() - t0
    train_box = box // 2
    run_prep(star, sim.consensus, work / "prep", train_box=train_box)
    mask, _ = read_map(sim.mask)
    small = fourier_crop(torch.from_numpy(mask), train_box, 3).numpy().clip(0, 1)
    write_map(work / "mask_train.mrc", small, psize * box / train_box)
    mesh_info = run_mesh(work / "prep/consensus.mrc", work / "mesh", mask=work / "mask_train.mrc",
                         n_cells=min(20, train_box // 2))
    data = TrainingData.load(work / "prep")
    consensus, _ = read_map(work / "prep/consensus.mrc")
    from flexcore.core.mesh import TetMesh

    cfg = TrainConfig(latent_dim=2, init_latents="random", device=device).validate()
    trainer = Trainer(data, TetMesh.load(work / "mesh/mesh.npz"), cfg, work / "train",
                      mesh_path=work / "mesh/mesh.npz", init_volume=consensus)
    ck = trainer.save().parent / "checkpoint_last.pt"
    del data, trainer
    return {"checkpoint": ck, "prep": work / "prep", "pixel_size_A": psize, "unique_images": n_sim,
            "train_box": train_box, "train_mask_voxels": mesh_info["mask_voxels"],
            "simulate_s": round(t_sim, 1)}


def pick_batch(box: int, train_box: int, train_voxels: int, device: str, given: int | None) -> int:
    """Batch size: given, 64 on a GPU, else bounded so one (B, M, 3) float tensor of the
    reference splat stays near 400 MB."""
    if given:
        return given
    if device != "cpu" and torch.cuda.is_available():
        return 64
    m = train_voxels * (box / train_box) ** 3
    return int(np.clip(4e8 / (m * 12), 4, 64))


def run_reconstruct_process(ck, prep, out: Path, iterations: int, batch: int, device: str) -> dict:
    cmd = [sys.executable, "-m", "flexcore", "reconstruct", str(ck), str(prep), str(out),
           "--iterations", str(iterations), "--batch-size", str(batch), "--device", device]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"reconstruct failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rec = json.loads((out / "recon.json").read_text())
    rec["wall_s"] = round(time.time() - t0, 1)
    return rec


def extrapolate(rec: dict, n_target: int, iters_target: int) -> dict:
    """Time for ``n_target`` particles × ``iters_target`` iterations from measured passes."""
    n = rec["n_particles"]
    t = rec["timings"]
    start = sum(v for k, v in t.items() if k.startswith("start_half_"))
    per_particle_start = start / n
    total = per_particle_start * n_target
    per_iter = {}
    solves = 0.0
    for kind in ("flex", "noflex"):
        runs = [v for k, v in rec["passes"].items() if k.startswith(kind + "_")]
        if not runs:
            continue
        counts = rec["half_counts"]
        g = sum(r["gradient"]["seconds"] for r in runs) / sum(
            r["gradient"]["count"] * c for r, c in zip(runs, counts))
        c = sum(r["curvature"]["seconds"] for r in runs) / max(1, sum(
            r["curvature"]["count"] * c for r, c in zip(runs, counts)))
        per_iter[kind] = {"gradient_ms_per_particle": 1e3 * g, "curvature_ms_per_particle": 1e3 * c}
        total += n_target * ((1 + iters_target) * g + iters_target * c)
        solves += sum(t[f"{kind}_half_{h}_s"] for h in ("A", "B"))
    fixed = max(0.0, t["total_s"] - start - solves)  # loading, FSC, sharpening, writing
    return {"total_s": round(total + fixed, 1), "per_pass_cost": per_iter,
            "start_ms_per_particle": 1e3 * per_particle_start, "fixed_s": round(fixed, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--boxes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--particles", type=int, default=20000)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--pool", type=int, default=2000, help="unique simulated images (full mode)")
    p.add_argument("--quick", action="store_true", help="few particles/iterations, extrapolated")
    p.add_argument("--quick-iterations", type=int, default=2)
    p.add_argument("--quick-particles", type=int, default=None,
                   help=f"particles in quick mode (default {QUICK_PARTICLES})")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--workdir", default=None, help="keep intermediate files here")
    p.add_argument("--out", default="bench_reconstruct.json")
    args = p.parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    work_root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_recon_"))
    results = []
    try:
        for box in args.boxes:
            n = (args.quick_particles or QUICK_PARTICLES.get(box, 64)) if args.quick else args.particles
            iters = args.quick_iterations if args.quick else args.iterations
            work = work_root / f"box{box}"
            print(f"[box {box}] preparing {n} particles ...", flush=True)
            data = prepare(box, n, n if args.quick else args.pool, work, device)
            batch = pick_batch(box, data["train_box"], data["train_mask_voxels"], device,
                               args.batch_size)
            print(f"[box {box}] reconstructing ({iters} iterations, batch {batch}, {device}) ...",
                  flush=True)
            rec = run_reconstruct_process(data["checkpoint"], data["prep"], work / "recon", iters,
                                          batch, device)
            row = {"box": box, "pixel_size_A": data["pixel_size_A"], "particles": n,
                   "unique_images": data["unique_images"], "iterations": iters,
                   "batch_size": batch, "device": rec["device"], "mask_voxels": rec["mask_voxels"],
                   "measured_s": rec["timings"]["total_s"], "timings": rec["timings"],
                   "passes": rec["passes"], "memory": rec["memory"], "summary": rec["summary"],
                   "simulate_s": data["simulate_s"]}
            if args.quick:
                ex = extrapolate(rec, args.particles, args.iterations)
                row["extrapolated"] = {"particles": args.particles, "iterations": args.iterations,
                                       **ex}
            results.append(row)
            if not args.workdir:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work_root, ignore_errors=True)
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.executable).name] + sys.argv),
              "mode": "quick (extrapolated)" if args.quick else "full",
              "machine": {**machine(), "load_average_1min_start": load_start},
              "results": results}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    return 0


def print_table(report: dict) -> None:
    print(f"\nflexcore reconstruct benchmark — {report['mode']}, {report['date']}, "
          f"{report['machine']['cpu']} ({report['machine']['cpu_count']} cores)"
          + (f", {report['machine']['gpu']}" if "gpu" in report["machine"] else ""))
    head = (f"{'box':>4} {'particles':>9} {'iters':>5} {'mask vox':>9} {'device':>6} "
            f"{'measured s':>10} {'grad ms/p':>9} {'curv ms/p':>9} {'20k×20 s':>12} "
            f"{'RSS GiB':>7} {'GPU GiB':>7}")
    print(head)
    print("-" * len(head))
    for r in report["results"]:
        ex = r.get("extrapolated")
        cost = ex["per_pass_cost"]["flex"] if ex else {}
        full = f"{ex['total_s']:.0f} (extrap.)" if ex else f"{r['measured_s']:.0f}"
        print(f"{r['box']:>4} {r['particles']:>9} {r['iterations']:>5} {r['mask_voxels']:>9} "
              f"{r['device']:>6} {r['measured_s']:>10.1f} "
              f"{cost.get('gradient_ms_per_particle', float('nan')):>9.2f} "
              f"{cost.get('curvature_ms_per_particle', float('nan')):>9.2f} {full:>12} "
              f"{r['memory']['peak_rss_GiB']:>7.2f} "
              f"{r['memory'].get('peak_gpu_GiB', float('nan')):>7.2f}")


if __name__ == "__main__":
    sys.exit(main())
