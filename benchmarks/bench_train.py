"""Training throughput: simulate → prep → mesh → train, timed per epoch.

Measures particles/s per epoch (latent inference + θ/V update + validation), the working box
of each epoch (coarse-to-fine), peak GPU memory, and extrapolates the time of a full
training on more particles (cost per particle is constant within an epoch).

    python benchmarks/bench_train.py --box 128 --n 4000 --epochs 16 --device cuda \\
        --extrapolate 100000 --out train_bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

from flexcore.stages.mesh.step import run_mesh
from flexcore.stages.prep.step import run_prep
from flexcore.stages.simulate import run_simulate
from flexcore.stages.train import run_train


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--box", type=int, default=64)
    ap.add_argument("--pixel-size", type=float, default=None, help="Å (default: 160 Å / box)")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--latent-dim", type=int, default=1)
    ap.add_argument("--cells", type=int, default=20, help="mesh cells across (at most box/2)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workdir", default="benchmarks/out/train")
    ap.add_argument("--extrapolate", type=int, default=100000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    psize = args.pixel_size or 160.0 / args.box
    work = Path(args.workdir) / f"box{args.box}_n{args.n}"
    t = {}
    t0 = time.time()
    sim = run_simulate(work / "sim", n_particles=args.n, box=args.box, pixel_size_A=psize,
                       device=args.device)
    t["simulate_s"] = time.time() - t0
    t0 = time.time()
    run_prep(sim.particles, sim.consensus, work / "prep", train_box=args.box)
    t["prep_s"] = time.time() - t0
    t0 = time.time()
    run_mesh(work / "prep" / "consensus.mrc", work / "mesh", mask=sim.mask,
             n_cells=min(args.cells, args.box // 2))
    t["mesh_s"] = time.time() - t0
    if args.device.startswith("cuda"):
        from flexcore.core.ops import backend_for

        t0 = time.time()
        t["kernel_build_s"] = time.time() - t0 if backend_for(torch.device(args.device)) else 0.0
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    summary = run_train(work / "prep", work / "mesh" / "mesh.npz", work / "train",
                        {"latent_dim": args.latent_dim, "epochs": args.epochs,
                         "batch_size": args.batch, "device": args.device, "log_every": 1000},
                        on_existing="restart")  # a benchmark always trains from scratch
    t["train_s"] = time.time() - t0
    hist = json.loads((work / "train" / "history.json").read_text())
    per_particle = sum(h["seconds"] for h in hist) / args.n
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": platform.node(), "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        "box": args.box, "pixel_size_A": psize, "n_particles": args.n, "epochs": args.epochs,
        "latent_dim": args.latent_dim, "batch": args.batch, **{k: round(v, 2) for k, v in t.items()},
        "epochs_detail": [{k: h[k] for k in ("epoch", "box", "resolution_A", "seconds",
                                             "particles_per_s")} for h in hist],
        "peak_gpu_GiB": (torch.cuda.max_memory_allocated() / 2**30
                         if args.device.startswith("cuda") else None),
        "peak_rss_GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "extrapolated_particles": args.extrapolate,
        "extrapolated_train_minutes": per_particle * args.extrapolate / 60,
        "final": summary.get("final", {}),
    }
    print(f"{'epoch':>5} {'box':>4} {'res Å':>6} {'s':>7} {'particles/s':>11}")
    for h in result["epochs_detail"]:
        print(f"{h['epoch']:>5} {h['box']:>4} {h['resolution_A']:>6.1f} {h['seconds']:>7.1f} "
              f"{h['particles_per_s']:>11.0f}")
    print(f"simulate {t['simulate_s']:.1f} s, prep {t['prep_s']:.1f} s, mesh {t['mesh_s']:.1f} s, "
          f"train {t['train_s']:.1f} s; peak GPU {result['peak_gpu_GiB']} GiB; "
          f"{args.epochs} epochs on {args.extrapolate} particles ≈ "
          f"{result['extrapolated_train_minutes']:.1f} min")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
