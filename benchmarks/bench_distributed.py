"""Cost of the data-parallel code path: one process vs torchrun ranks, same data and seed.

Simulates a dataset, prepares it, builds a mesh and an untrained-then-trained model, then
runs ``flexcore train`` and ``flexcore reconstruct`` as fresh processes, first plainly and
then under ``python -m torch.distributed.run --standalone --nproc-per-node N`` for each N
of ``--ranks`` (N = 1 is the same code path as N GPUs: process group, collectives, rank-0
writes). Reports per run the wall time (with start-up) and the compute time the step
itself records (training: the epochs' seconds from history.json; reconstruction: the
solves' seconds from recon.json), and the overhead of each torchrun run against the plain
one. With N > 1 ranks on one GPU the ranks would share it; the script refuses that.

    python benchmarks/bench_distributed.py --device cuda --box 128 --n 4000 --epochs 4 \\
        --recon-iterations 5 --ranks 1 --out distributed.json

Tiny CPU check (what the tests run): ``--device cpu --box 32 --n 96 --epochs 1
--recon-iterations 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from flexcore.core.fourier import fourier_crop
from flexcore.core.io import read_map, write_map
from flexcore.core.utils.launch import torchrun_command
from flexcore.stages.mesh.step import run_mesh
from flexcore.stages.prep.step import run_prep
from flexcore.stages.simulate import run_simulate


def run(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` (output to ``log``); its wall time in seconds."""
    t0 = time.time()
    with open(log, "w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed; see {log}")
    return time.time() - t0


def train_command(prep, mesh, out, config: dict) -> list[str]:
    """``flexcore train`` arguments: the configuration in a YAML file beside ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg_file = out.parent / f"{out.name}_config.yaml"
    cfg_file.write_text(yaml.safe_dump(config))
    return ["train", str(prep), str(mesh), str(out), "--config", str(cfg_file), "--restart"]


def reconstruct_command(checkpoint, prep, out, *, iterations: int, batch_size: int,
                        device: str) -> list[str]:
    """``flexcore reconstruct`` arguments."""
    return ["reconstruct", str(checkpoint), str(prep), str(out), "--iterations", str(iterations),
            "--batch-size", str(batch_size), "--device", device]


def flexcore(args: list[str], ranks: int | None) -> list[str]:
    """``flexcore <args>`` plainly (``ranks=None``) or on ``ranks`` torchrun ranks."""
    if ranks is None:
        return [sys.executable, "-m", "flexcore", *args]
    return torchrun_command(ranks, ["flexcore", *args])


def measure(work: Path, label: str, ranks: int | None, train_args: dict, recon_args: dict,
            repeat: int) -> dict:
    """Train and reconstruct ``repeat`` times in fresh folders; the fastest of each."""
    best: dict = {}
    for i in range(repeat):
        out = work / f"{label}_{i}"
        wall = run(flexcore(train_command(work / "prep", work / "mesh" / "mesh.npz",
                                          out / "train", train_args), ranks),
                   work / f"{label}_{i}_train.log")
        hist = json.loads((out / "train" / "history.json").read_text())
        train_s = sum(h["seconds"] for h in hist)
        wall_r = run(flexcore(reconstruct_command(out / "train" / "model.pt", work / "prep",
                                                  out / "recon", **recon_args), ranks),
                     work / f"{label}_{i}_recon.log")
        rec = json.loads((out / "recon" / "recon.json").read_text())
        recon_s = sum(v for k, v in rec["timings"].items() if k.startswith(("flex_", "noflex_",
                                                                             "start_")))
        now = {"train_wall_s": wall, "train_epochs_s": train_s, "recon_wall_s": wall_r,
               "recon_solves_s": recon_s, "ranks": rec["ranks"],
               "peak_gpu_GiB": rec["memory"].get("peak_gpu_GiB")}
        for key, value in now.items():
            if key.endswith("_s"):
                best[key] = min(best.get(key, float("inf")), value)
            else:
                best[key] = value
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--box", type=int, default=64)
    ap.add_argument("--n", type=int, default=2000, help="particles")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--recon-iterations", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1],
                    help="torchrun rank counts to compare with one plain process")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each; the fastest counts")
    ap.add_argument("--workdir", default="benchmarks/out/distributed")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    gpus = torch.cuda.device_count() if args.device.startswith("cuda") else 0
    for n in args.ranks:
        if args.device.startswith("cuda") and n > gpus:
            raise SystemExit(f"--ranks {n}: only {gpus} GPU(s) visible; one rank per GPU")
    train_box = max(16, args.box // 4 * 2)  # half the box, even
    work = Path(args.workdir) / f"box{args.box}_n{args.n}"
    if not (work / "mesh" / "mesh.npz").is_file():
        sim = run_simulate(work / "sim", n_particles=args.n, box=args.box,
                           pixel_size_A=160.0 / args.box, device=args.device)
        run_prep(sim.particles, sim.consensus, work / "prep", train_box=train_box)
        mask, psize = read_map(sim.mask)  # the simulation's mask at the training box
        small = fourier_crop(torch.from_numpy(mask), train_box, 3).numpy().clip(0, 1)
        write_map(work / "mask_train.mrc", small, psize * args.box / train_box)
        run_mesh(work / "prep" / "consensus.mrc", work / "mesh", mask=work / "mask_train.mrc",
                 n_cells=min(20, train_box // 2))
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    train_args = {"latent_dim": 1, "epochs": args.epochs, "batch_size": args.batch,
                  "device": device, "log_every": 1000}
    recon_args = {"iterations": args.recon_iterations, "batch_size": args.batch,
                  "device": device}
    runs = {"plain": measure(work, "plain", None, train_args, recon_args, args.repeat)}
    for n in args.ranks:
        runs[f"torchrun_{n}"] = measure(work, f"torchrun{n}", n, train_args, recon_args,
                                        args.repeat)
    base = runs["plain"]
    for name, r in runs.items():
        if name != "plain":
            r["overhead"] = {k: (r[k] - base[k]) / base[k] for k in base if k.endswith("_s")}
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": platform.node(), "device": args.device,
              "gpu": torch.cuda.get_device_name(0) if gpus else None,
              "torch": torch.__version__, "threads": os.environ.get("OMP_NUM_THREADS"),
              "box": args.box, "train_box": train_box, "n_particles": args.n,
              "epochs": args.epochs, "batch": args.batch,
              "recon_iterations": args.recon_iterations, "runs": runs}
    print(f"{'run':>12} {'train wall':>11} {'epochs':>8} {'recon wall':>11} {'solves':>8}")
    for name, r in runs.items():
        print(f"{name:>12} {r['train_wall_s']:>10.1f}s {r['train_epochs_s']:>7.1f}s "
              f"{r['recon_wall_s']:>10.1f}s {r['recon_solves_s']:>7.1f}s")
        if "overhead" in r:
            o = r["overhead"]
            print(f"{'':>12} overhead: train wall {o['train_wall_s']:+.1%}, epochs "
                  f"{o['train_epochs_s']:+.1%}; recon wall {o['recon_wall_s']:+.1%}, solves "
                  f"{o['recon_solves_s']:+.1%}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
