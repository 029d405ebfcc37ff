"""Time mesh preparation: mask from a synthetic map, regular mesh, voxel → tet map, weights.

Usage:
  python benchmarks/bench_mesh.py                      # boxes 128, 256 × 20, 40 cells
  python benchmarks/bench_mesh.py --boxes 128 --cells 20 --repeat 3

The synthetic "protein" is the same physical object at every box (40 Gaussian blobs within
a radius of 0.3 of the box, 256 Å across), so the mask fills the same fraction of the box.
Each stage is timed separately (best of ``--repeat``); the table goes to stdout and, with
``--out``, the rows to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from flexcore.core.mesh import blob_map, locate_voxels, mask_from_map, rigidity_weights
from flexcore.core.mesh.core import TetMesh
from flexcore.core.mesh.regular import regular_mesh
from flexcore.core.mesh.solvent import lowpassed

BOX_A = 256.0


def synthetic_map(box: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(40, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = 0.3 * rng.uniform(0.0, 1.0, size=(40, 1)) ** (1 / 3)
    centres = direction * radius * box
    sigmas = rng.uniform(0.03, 0.05, size=40) * box
    return blob_map(box, centres, sigmas)


def best_of(repeat: int, fn):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench(box: int, n_cells: int, repeat: int) -> dict:
    psize = BOX_A / box
    vol = synthetic_map(box)
    t_mask, solvent = best_of(repeat, lambda: mask_from_map(vol, psize, threshold=0.3))
    hard = solvent.hard > 0.5
    t_lattice, (points, cells, _) = best_of(repeat, lambda: regular_mesh(hard, n_cells))
    labels = np.where(hard, 0, -1)
    t_locate, tet_map = best_of(repeat, lambda: locate_voxels(points, cells, labels))
    density = lowpassed(vol, psize, 10.0) * solvent.soft
    t_weights, _ = best_of(repeat, lambda: rigidity_weights(points, cells, density))
    mesh = TetMesh(points, cells, np.ones(len(cells), np.float32), box, psize, tet_map, hard,
                   solvent.soft)
    t_voxel, _ = best_of(repeat, mesh.voxel_data)
    return {"box": box, "n_cells": n_cells, "mask_voxels": int(hard.sum()), "tets": len(cells),
            "vertices": len(points), "mask_s": t_mask, "lattice_s": t_lattice,
            "locate_s": t_locate, "weights_s": t_weights, "voxel_data_s": t_voxel,
            "total_s": t_mask + t_lattice + t_locate + t_weights + t_voxel}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boxes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--cells", type=int, nargs="+", default=[20, 40])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    print(f"# {platform.processor() or platform.machine()}, torch threads "
          f"{torch.get_num_threads()}, numpy {np.__version__}")
    cols = ["box", "n_cells", "mask_voxels", "tets", "vertices", "mask_s", "lattice_s",
            "locate_s", "weights_s", "voxel_data_s", "total_s"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    rows = []
    for box in args.boxes:
        for n_cells in args.cells:
            r = bench(box, n_cells, args.repeat)
            rows.append(r)
            print("| " + " | ".join(f"{r[c]:.2f}" if c.endswith("_s") else str(r[c])
                                    for c in cols) + " |", flush=True)
    if args.out:
        meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.node(),
                "torch_threads": torch.get_num_threads(), "repeat": args.repeat}
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
