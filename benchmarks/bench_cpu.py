"""The CPU path in one run: operator, training, reconstruction, and cryoDRGN beside them.

On one machine, one after another (never side by side: on a few cores parallel jobs starve
each other), this script times

1. the convection + projection operator at ``--op-size`` (forward + backward, both
   gradients), the PyTorch reference against the native CPU kernel (``bench_ops.py``'s
   problem: a blob mask of 20 % of the box, random poses and displacements);
2. training on simulated particles at ``--box`` (``flexcore simulate`` + ``prep`` at the same
   box + ``mesh``), K = 2, multi-resolution off so every epoch runs at the full box, gradient-
   PCA start: epoch 1 has no latent inference, epochs 2–3 search the latent grid, later
   epochs do not. Particles per second per epoch from ``history.json``;
3. reconstruction of that model (``--recon-iterations`` L-BFGS iterations, flex + rigid
   baseline, both halves): the Wiener start per 10 000 particles and the gradient and
   curvature passes in particles per second, from ``recon.json``;
4. ``cryodrgn train_vae`` on the same particle stack (poses and CTF converted from the same
   STAR file with ``cryodrgn parse_pose_star`` / ``parse_ctf_star``), ``--cryodrgn-epochs``
   epochs with its default networks and with ``--enc-dim 256 --dec-dim 256``, z = 8, no
   analysis; images per second from the per-epoch times cryoDRGN logs. cryoDRGN runs from its
   own environment (``--cryodrgn PATH/TO/bin/cryodrgn``; install it in a separate venv so it
   does not constrain flexcore's pins); without it that part is skipped with the reason.

Every part runs with ``--threads`` torch threads (cryoDRGN with the same ``OMP_NUM_THREADS``).
The result is a JSON (``--out``) and a Markdown table on stdout (``--summary FILE`` prints the
table of an earlier JSON). Example (the numbers in docs/benchmarks.md)::

    python benchmarks/bench_cpu.py --threads 2 --cryodrgn /path/to/cryodrgn-venv/bin/cryodrgn \\
        --out benchmarks/results/cpu-2026-12-07/bench_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other benchmark scripts


def machine() -> dict:
    """``bench_reconstruct.machine()`` (CPU, cores, torch threads, versions, load average)
    with the date and this command line."""
    import bench_reconstruct

    return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            **bench_reconstruct.machine(),
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}


def bench_operator(size: int, batch: int, repeat: int) -> dict:
    """Images per second, forward + backward with both gradients, reference vs native."""
    import bench_ops

    from flexcore.core.ops.cpu import load_extension

    prob = bench_ops.Problem(size, 0.2, "cpu")
    sets = prob.batches(batch)
    out = {"size": size, "mask_voxels": prob.m, "batch": batch}
    impls = {"reference": bench_ops.reference_op}
    if load_extension() is not None:
        impls["native"] = bench_ops.native_cpu_op
    else:
        out["native_skipped"] = "the native CPU kernel did not build here"
    for name, op in impls.items():
        wall_ms, cpu_ms = bench_ops.time_cpu(op, prob, sets, True, True, repeat)
        out[name] = {"images_per_s": round(1e3 * batch / wall_ms, 1),
                     "images_per_cpu_s": round(1e3 * batch / max(cpu_ms, 1e-6), 1)}
    if "native" in out:
        out["speedup"] = round(out["native"]["images_per_s"] / out["reference"]["images_per_s"], 1)
    return out


def simulate_and_prepare(work: Path, n: int, box: int, pixel_size: float) -> dict:
    from flexcore.stages.mesh.step import run_mesh
    from flexcore.stages.prep.step import run_prep
    from flexcore.stages.simulate import run_simulate

    t0 = time.perf_counter()
    sim = run_simulate(work / "sim", n_particles=n, box=box, pixel_size_A=pixel_size, snr=0.1,
                       n_motions=2, seed=0, n_gt_maps=3)
    t_sim = time.perf_counter() - t0
    run_prep(sim.particles, sim.consensus, work / "prep", train_box=box)
    mesh = run_mesh(work / "prep" / "consensus.mrc", work / "mesh", mask=sim.mask,
                    n_cells=min(20, box // 2))
    return {"particles_star": str(sim.particles), "simulate_s": round(t_sim, 1),
            "mask_voxels": mesh.get("mask_voxels")}


def bench_training(work: Path, epochs: int, batch: int) -> dict:
    from flexcore.stages.train import run_train

    t0 = time.perf_counter()
    run_train(work / "prep", work / "mesh" / "mesh.npz", work / "train",
              {"latent_dim": 2, "epochs": epochs, "batch_size": batch, "multires": False,
               "device": "cpu"})
    wall = time.perf_counter() - t0
    hist = json.loads((work / "train" / "history.json").read_text())
    rows = []
    for i, h in enumerate(hist):
        kind = "start (no inference)" if i == 0 else ("grid" if i in (1, 2) else "no grid")
        rows.append({"epoch": h["epoch"], "kind": kind, "box": h["box"],
                     "seconds": round(h["seconds"], 2),
                     "particles_per_s": round(h["particles_per_s"], 1)})
    return {"epochs": rows, "wall_s": round(wall, 1), "batch": batch}


def bench_reconstruction(work: Path, iterations: int, batch: int) -> dict:
    import profile_cpu

    from flexcore.stages.reconstruct.step import run_reconstruct

    t0 = time.perf_counter()
    run_reconstruct(work / "train" / "model.pt", work / "prep", work / "recon",
                    iterations=iterations, batch_size=batch, device="cpu")
    wall = time.perf_counter() - t0
    rec = json.loads((work / "recon" / "recon.json").read_text())
    counts = rec["half_counts"]
    out = {"iterations": iterations, "wall_s": round(wall, 1), "half_counts": counts}
    starts = [rec["timings"].get(f"start_half_{h}_s") for h in "AB"]
    if None not in starts:  # each half's start map reads and inserts its own particles
        out["wiener_s_per_10k"] = round(1e4 * sum(starts) / max(sum(counts), 1), 2)
    rates = profile_cpu.pass_rates(rec)
    out["gradient_particles_per_s"] = rates["gradient"]
    out["curvature_particles_per_s"] = rates["curvature"]
    return out


EPOCH_LINE = re.compile(r"Epoch: (\d+) .*Finished in (\d+):(\d+):([\d.]+)")


def bench_cryodrgn(cryodrgn: str | None, work: Path, star: Path, n: int, epochs: int,
                   threads: int, timeout: float) -> dict:
    if not cryodrgn:
        return {"skipped": "no --cryodrgn given (install cryodrgn in its own venv and pass its "
                           "bin/cryodrgn)"}
    exe = shutil.which(cryodrgn) or cryodrgn
    if not Path(exe).exists():
        return {"skipped": f"{cryodrgn} not found"}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop("PYTHONPATH", None)
    cdir = work / "cryodrgn"
    cdir.mkdir(parents=True, exist_ok=True)
    for cmd in ([exe, "parse_pose_star", str(star), "-o", str(cdir / "poses.pkl")],
                [exe, "parse_ctf_star", str(star), "-o", str(cdir / "ctf.pkl")]):
        subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    version = subprocess.run([exe, "--version"], env=env, capture_output=True,
                             text=True).stdout.strip()
    stack = star.with_name("particles.mrcs")
    runs = {}
    for label, extra in (("default networks", []),
                         ("256 x 3 networks", ["--enc-dim", "256", "--dec-dim", "256"])):
        out = cdir / label.split()[0]
        cmd = [exe, "train_vae", str(stack), "--poses", str(cdir / "poses.pkl"), "--ctf",
               str(cdir / "ctf.pkl"), "--zdim", "8", "-n", str(epochs), "-o", str(out),
               "--no-analysis", "--num-workers", "0", "--seed", "0", *extra]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            runs[label] = {"skipped": f"over the {timeout:.0f} s limit (--cryodrgn-timeout)"}
            continue
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            runs[label] = {"failed": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
            continue
        secs = [int(h) * 3600 + int(m) * 60 + float(s)
                for _, h, m, s in EPOCH_LINE.findall(proc.stdout + proc.stderr)]
        runs[label] = {"epoch_seconds": [round(s, 2) for s in secs], "wall_s": round(wall, 1),
                       "images_per_s": round(n * len(secs) / sum(secs), 1) if secs else None}
    return {"version": version, "epochs": epochs, "particles": n, "runs": runs}


def summary(res: dict) -> str:
    m = res["machine"]
    lines = [f"{m['date']}, {m['cpu']} ({m['cpu_count']} cores), {m['torch_threads']} threads, "
             f"torch {m['torch']}, load average at start {m['load_average_1min']}", "",
             "| part | measure | value |", "|---|---|---|"]
    op = res["operator"]
    lines.append(f"| operator D = {op['size']}, M = {op['mask_voxels']} | reference, images/s "
                 f"(fwd + bwd) | {op['reference']['images_per_s']} |")
    if "native" in op:
        lines.append(f"| | native, images/s (fwd + bwd) | {op['native']['images_per_s']} "
                     f"({op['speedup']}×) |")
    tr = res["training"]
    for e in tr["epochs"]:
        lines.append(f"| training box {e['box']}, K = 2, {res['particles']} particles, "
                     f"{res['data']['mask_voxels']} mask voxels | epoch "
                     f"{e['epoch']} ({e['kind']}), particles/s | {e['particles_per_s']} |")
    rc = res["reconstruction"]
    if "wiener_s_per_10k" in rc:
        lines.append(f"| reconstruction box {res['box']} | Wiener start, s per 10 000 particles | "
                     f"{rc['wiener_s_per_10k']} |")
    lines.append(f"| | L-BFGS gradient pass, particles/s | {rc['gradient_particles_per_s']} |")
    lines.append(f"| | curvature pass, particles/s | {rc['curvature_particles_per_s']} |")
    cd = res["cryodrgn"]
    if "skipped" in cd:
        lines.append(f"| cryoDRGN train_vae | skipped | {cd['skipped']} |")
    else:
        for label, r in cd["runs"].items():
            val = r.get("images_per_s", r.get("skipped", r.get("failed")))
            lines.append(f"| {cd['version']} train_vae, {label}, {cd['epochs']} epochs | "
                         f"images/s | {val} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--box", type=int, default=64)
    p.add_argument("--pixel-size", type=float, default=1.7,
                   help="Å/px of the simulation (1.7 at box 64: ≈ 50 000 mask voxels)")
    p.add_argument("--particles", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=4, help="training epochs (≥ 4 shows each kind)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--recon-iterations", type=int, default=2)
    p.add_argument("--op-size", type=int, default=64)
    p.add_argument("--op-batch", type=int, default=64)
    p.add_argument("--op-repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cryodrgn", default=None, help="cryodrgn executable (its own venv)")
    p.add_argument("--cryodrgn-epochs", type=int, default=3)
    p.add_argument("--cryodrgn-timeout", type=float, default=3600.0)
    p.add_argument("--workdir", default=None, help="keep the data here (default: a temp dir)")
    p.add_argument("--out", type=Path, help="write the result as JSON here")
    p.add_argument("--summary", type=Path, help="print the table of an earlier JSON and exit")
    args = p.parse_args(argv)
    if args.summary:
        print(summary(json.loads(args.summary.read_text())))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_cpu_"))
    res = {"machine": machine(), "box": args.box, "particles": args.particles,
           "pixel_size_A": args.pixel_size}
    res["operator"] = bench_operator(args.op_size, args.op_batch, args.op_repeat)
    res["data"] = simulate_and_prepare(work, args.particles, args.box, args.pixel_size)
    res["training"] = bench_training(work, args.epochs, args.batch_size)
    res["reconstruction"] = bench_reconstruction(work, args.recon_iterations, args.batch_size)
    res["cryodrgn"] = bench_cryodrgn(args.cryodrgn, work, Path(res["data"]["particles_star"]),
                                     args.particles, args.cryodrgn_epochs, args.threads,
                                     args.cryodrgn_timeout)
    res["machine"]["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(summary(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
