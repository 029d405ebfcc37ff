"""Benchmark the Wiener accumulator's insertion (the reconstruction's start map).

Times :meth:`flexcore.core.wiener.FourierAccumulator.add` — shift, zero-pad ×2, FFT, CTF
and the trilinear insertion of the CTF-weighted slice and the squared CTF — on random
images with uniform random poses and realistic CTFs, in batches as the reconstruction reads
them, and reports seconds per 10 000 particles (wall clock and this process's CPU time: on a
shared machine the CPU time is the closer estimate of an idle machine's wall clock). Best of
``--repeats``.

Run it with ``PYTHONPATH`` on another checkout to time that checkout's accumulator (the API
is the same)::

    python benchmarks/bench_wiener.py --box 64 --particles 1024 --out bench_wiener.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from flexcore.core.rotations import random_rotations
from flexcore.core.wiener import FourierAccumulator


def make_batches(box: int, n: int, batch: int, seed: int = 0) -> list[tuple]:
    """``(images, rotations, shifts_A, ctf_params)`` batches of random particles."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(0, n, batch):
        b = min(batch, n - s)
        df = torch.tensor(rng.uniform(8000, 25000, b), dtype=torch.float32)
        params = {"defocus_u_A": df, "defocus_v_A": df * 1.02,
                  "defocus_angle_deg": torch.tensor(rng.uniform(0, 180, b), dtype=torch.float32),
                  "voltage_kv": torch.full((b,), 300.0), "spherical_aberration_mm": torch.full((b,), 2.7),
                  "amplitude_contrast": torch.full((b,), 0.1), "phase_shift_deg": torch.zeros(b),
                  "bfactor_A2": torch.zeros(b), "scale": torch.ones(b)}
        out.append((torch.tensor(rng.normal(size=(b, box, box)), dtype=torch.float32),
                    torch.tensor(random_rotations(b, rng), dtype=torch.float32),
                    torch.tensor(rng.normal(0, 3.0, (b, 2)), dtype=torch.float32), params))
    return out


def time_insertion(box: int, pixel_size_A: float, batches: list, repeats: int) -> dict:
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        acc = FourierAccumulator(box, pixel_size_A, pad=2.0)
        w0, c0 = time.perf_counter(), time.process_time()
        for images, rot, shifts, params in batches:
            acc.add(images, rot, shifts, params)
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return {"wall_s": best_wall, "cpu_s": best_cpu}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--box", type=int, default=64)
    p.add_argument("--pixel-size", type=float, default=2.5)
    p.add_argument("--particles", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="JSON file for the result")
    args = p.parse_args(argv)
    batches = make_batches(args.box, args.particles, args.batch_size)
    t = time_insertion(args.box, args.pixel_size, batches, args.repeats)
    scale = 10000.0 / args.particles
    import flexcore

    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.executable).name] + sys.argv),
              "flexcore": str(Path(flexcore.__file__).parent),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                          "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
              "box": args.box, "particles": args.particles, "batch_size": args.batch_size,
              "repeats": args.repeats, **{k: round(v, 3) for k, v in t.items()},
              "wall_s_per_10000": round(t["wall_s"] * scale, 2),
              "cpu_s_per_10000": round(t["cpu_s"] * scale, 2)}
    print(f"box {args.box}, {args.particles} particles, batch {args.batch_size}, best of "
          f"{args.repeats}: {report['wall_s_per_10000']:.1f} s wall, "
          f"{report['cpu_s_per_10000']:.1f} s CPU per 10 000 particles "
          f"(load {report['machine']['load_average_1min']})")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
