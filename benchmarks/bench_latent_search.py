"""Benchmark the latent candidate search of one grid visit: full grid vs coarse to fine.

Simulates ``--particles`` images at ``--box`` (2 motions), prepares them at the same box,
builds a mesh, sets up an untrained K = 2 model (the cost does not depend on the flow's
values) at the last epoch's working box, and times, in one process and alternating (best of
``--repeats``), the search of one batch:

* the full ``9²`` grid + ``n_candidates`` random perturbations + the current latent (the
  search before the coarse-to-fine grid);
* the coarse-to-fine grid (:meth:`LatentInference.grid_search`);
* the coarse-to-fine grid at the schedule's starting resolution on its smaller box, its best
  then decided against the current latent and the random perturbations at the epoch's
  resolution (``grid_low_res``, the default; :meth:`LatentInference.grid_search_low_res`);
* no grid (the non-grid epochs' search).

Example::

    OMP_NUM_THREADS=1 python benchmarks/bench_latent_search.py --box 40 --particles 64
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--box", type=int, default=40)
    p.add_argument("--particles", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    from flexcore.core.mesh import TetMesh
    from flexcore.core.train_config import TrainConfig
    from flexcore.stages.mesh.step import run_mesh
    from flexcore.stages.prep.step import run_prep
    from flexcore.stages.simulate import run_simulate
    from flexcore.stages.train.data import TrainingData
    from flexcore.stages.train.latents import LatentInference, latent_grid
    from flexcore.stages.train.trainer import Trainer

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_latent_search_"))
    sim = run_simulate(work / "sim", n_particles=args.particles, box=args.box,
                       pixel_size_A=160.0 / args.box, snr=0.1, n_motions=2, seed=0, n_gt_maps=3)
    run_prep(sim.particles, sim.consensus, work / "prep", train_box=args.box)
    run_mesh(work / "prep" / "consensus.mrc", work / "mesh", mask=sim.mask,
             n_cells=min(20, args.box // 2))  # the default 20 cells, fewer on tiny boxes
    data = TrainingData.load(work / "prep")
    cfg = TrainConfig(latent_dim=2, init_latents="random", device="cpu").validate()
    tr = Trainer(data, TetMesh.load(work / "mesh" / "mesh.npz"), cfg, work / "train")
    plan = tr.epoch_plan(cfg.epochs - 1)
    r = tr.renderer(plan["box"])
    idx = np.arange(args.particles)
    images, rot, shifts, ctf = data.batch(idx, tr.device, r.box)
    batch = (r.canonical(tr.volume, plan["k_max"]).detach(), r.observed(images), rot, ctf, shifts,
             r.model.band(plan["k_max"] / r.scale), r.noise_var(tr.noise_var))
    inference = LatentInference(tr.flow, r, cfg.centering_lambda, cfg.centering_power,
                                cfg.latent_limit)
    z0, extent = tr.latents[idx], 0.8 * cfg.latent_limit
    grid = tr.grid_plan(plan)
    if grid is None:  # the epoch's band is the start's: the low-res search is the plain one
        grid = {"k_max": plan["k_max"], "box": plan["box"]}
    tr.flow.requires_grad_(False)
    searches = {
        "full grid": lambda g: inference.search(z0, latent_grid(2, cfg.grid_points, extent),
                                                cfg.n_candidates, cfg.candidate_sigma, *batch,
                                                generator=g),
        "coarse to fine": lambda g: inference.grid_search(z0, cfg.grid_points, extent,
                                                          cfg.n_candidates, cfg.candidate_sigma,
                                                          *batch, generator=g),
        "low-res grid": lambda g: inference.grid_search_low_res(
            z0, cfg.grid_points, extent, cfg.n_candidates, cfg.candidate_sigma, batch,
            *tr.coarse_search(grid, idx, images), generator=g),
        "no grid": lambda g: inference.search(z0, None, cfg.n_candidates, cfg.candidate_sigma,
                                              *batch, generator=g),
    }
    best: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, search in searches.items():
            t0 = time.perf_counter()
            search(torch.Generator().manual_seed(0))
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    report = {"box": r.box, "mask_voxels": r.n_voxels, "grid_box": grid["box"],
              "grid_mask_voxels": tr.renderer(grid["box"]).n_voxels, "particles": args.particles,
              "grid_points": cfg.grid_points, "n_candidates": cfg.n_candidates,
              "torch_threads": torch.get_num_threads(),
              "seconds": {k: round(v, 3) for k, v in best.items()},
              "particles_per_s": {k: round(args.particles / v, 1) for k, v in best.items()}}
    print(f"box {r.box}, {r.n_voxels} mask voxels (low-res grid: box {grid['box']}, "
          f"{tr.renderer(grid['box']).n_voxels}), {args.particles} particles, best of "
          f"{args.repeats} (candidate search only):")
    for name, v in best.items():
        print(f"  {name:<15} {v:7.2f} s  {args.particles / v:8.1f} particles/s")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
