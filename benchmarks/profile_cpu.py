"""Where the time goes: one training epoch of each kind and one reconstruction, by part.

Simulates ``--particles`` images at ``--box`` (2 motions), prepares them at the same box,
builds a mesh, then

* trains K = 2 from random latents for 3 epochs without multi-resolution (every epoch at
  the full box): epochs 1–2 search the latent grid, epoch 3 does not; every epoch is
  reported (epoch 1 also carries one-off set-up);
* reconstructs with ``--iterations`` L-BFGS iterations (flex + rigid baseline, both halves):
  the Wiener starts and the passes.

Each part is timed by wrapping the functions that do it (exclusive wall time: a part nested
in another is subtracted from it), so the parts add up to the measured total; "other
(Python, bookkeeping)" is the rest. Backward passes run inside autograd and are reported as
one part each (θ/V step, latent refinement, reconstruction gradient pass).

Example::

    OMP_NUM_THREADS=1 python benchmarks/profile_cpu.py --box 64 --particles 128 --out profile.json
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


class PartTimer:
    """Exclusive wall time per label of wrapped callables."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self._stack: list[list] = []  # [label, start, time spent in nested parts]

    def wrap(self, owner, name: str, label: str) -> None:
        fn = getattr(owner, name)
        timer = self

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            timer._stack.append([label, time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                lab, t0, nested = timer._stack.pop()
                spent = time.perf_counter() - t0
                timer.totals[lab] = timer.totals.get(lab, 0.0) + spent - nested
                if timer._stack:
                    timer._stack[-1][2] += spent

        setattr(owner, name, timed)

    def snapshot(self) -> dict[str, float]:
        return dict(self.totals)


def instrument(timer: PartTimer) -> None:
    from flexcore.core import gridding, wiener
    from flexcore.core.model import flow, image_model
    from flexcore.core.ops import reference
    from flexcore.stages.reconstruct import flex, particles
    from flexcore.stages.train import adam, data, latents, renderer, trainer

    timer.wrap(data.TrainingData, "batch", "data loading")
    timer.wrap(particles.ImageStream, "read", "data loading")
    timer.wrap(renderer, "splat_project", "operator forward")
    timer.wrap(flex, "splat_project", "operator forward")
    timer.wrap(reference, "interpolate_displacements", "interpolation (mesh → voxels)")
    timer.wrap(renderer.Renderer, "canonical", "band limit of the map (FFT)")
    timer.wrap(flow.FlowGenerator, "forward", "flow MLP forward")
    timer.wrap(image_model.ImageFormation, "spectra", "FFT, CTF, shifts")
    timer.wrap(renderer.Renderer, "observed", "FFT, CTF, shifts")
    timer.wrap(image_model.ImageFormation, "observed", "FFT, CTF, shifts")
    timer.wrap(image_model.ImageFormation, "nll", "NLL")
    timer.wrap(flex.FlexOperator, "data_term", "NLL")
    timer.wrap(flex.FlexOperator, "ctf", "FFT, CTF, shifts")
    timer.wrap(trainer, "rigidity_penalty", "rigidity prior")
    timer.wrap(latents.LatentInference, "search", "candidate search (other)")
    timer.wrap(latents.LatentInference, "refine", "latent refinement (other)")
    timer.wrap(torch.Tensor, "backward", "backward (autograd)")
    timer.wrap(adam.Adam, "step", "optimiser")
    timer.wrap(trainer.Trainer, "validate", "validation (other)")
    timer.wrap(wiener.FourierAccumulator, "add", "Wiener: shift, pad, FFT, CTF")
    timer.wrap(gridding.CentralSliceInserter, "insert", "Wiener: Fourier gridding")
    timer.wrap(wiener.FourierAccumulator, "solve", "Wiener: solve")


def table(parts: dict[str, float], total: float) -> list[dict]:
    kept = dict(parts)  # every timed part is listed, even at 0.00 s
    rows = [{"part": k, "s": round(v, 2), "percent": round(100 * v / total, 1)}
            for k, v in sorted(kept.items(), key=lambda kv: -kv[1])]
    other = total - sum(kept.values())
    rows.append({"part": "other (Python, bookkeeping)", "s": round(other, 2),
                 "percent": round(100 * other / total, 1)})
    return rows


def pass_rates(rec: dict) -> dict:
    """Particles per second of the gradient and curvature passes of a ``recon.json``."""
    n = rec["half_counts"]
    out = {}
    for kind in ("gradient", "curvature"):
        seconds = particles = 0.0
        for solve, r in rec["passes"].items():
            c = n[0] if solve.endswith("_A") else n[1]
            seconds += r[kind]["seconds"]
            particles += r[kind]["count"] * c
        out[kind] = round(particles / max(seconds, 1e-9), 1)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--box", type=int, default=64)
    p.add_argument("--particles", type=int, default=128)
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    from flexcore.stages.mesh.step import run_mesh
    from flexcore.stages.prep.step import run_prep
    from flexcore.stages.reconstruct.step import run_reconstruct
    from flexcore.stages.simulate import run_simulate
    from flexcore.stages.train import run_train, trainer

    work = Path(args.workdir or tempfile.mkdtemp(prefix="profile_cpu_"))
    sim = run_simulate(work / "sim", n_particles=args.particles, box=args.box,
                       pixel_size_A=160.0 / args.box, snr=0.1, n_motions=2, seed=0, n_gt_maps=3)
    run_prep(sim.particles, sim.consensus, work / "prep", train_box=args.box)
    run_mesh(work / "prep" / "consensus.mrc", work / "mesh", mask=sim.mask,
             n_cells=min(20, args.box // 2))  # the default 20 cells, fewer on tiny boxes
    timer = PartTimer()
    instrument(timer)
    epochs: list[dict] = []
    run_epoch = trainer.Trainer.run_epoch

    def timed_epoch(self):
        before, t0 = timer.snapshot(), time.perf_counter()
        record = run_epoch(self)
        parts = {k: v - before.get(k, 0.0) for k, v in timer.snapshot().items()}
        total = time.perf_counter() - t0
        epochs.append({"epoch": self.epoch, "grid": self.use_grid(self.epoch - 1),
                       "box": record["box"], "voxels": self._renderers[record["box"]].n_voxels,
                       "seconds": round(total, 2), "particles": args.particles,
                       "parts": table(parts, total)})
        return record

    trainer.Trainer.run_epoch = timed_epoch
    run_train(work / "prep", work / "mesh" / "mesh.npz", work / "train",
              {"latent_dim": 2, "epochs": 3, "batch_size": args.batch_size, "multires": False,
               "init_latents": "random", "device": "cpu"})
    before, t0 = timer.snapshot(), time.perf_counter()
    run_reconstruct(work / "train" / "model.pt", work / "prep", work / "recon",
                    iterations=args.iterations, batch_size=args.batch_size, device="cpu")
    total = time.perf_counter() - t0
    recon = {"seconds": round(total, 2), "iterations": args.iterations,
             "parts": table({k: v - before.get(k, 0.0) for k, v in timer.snapshot().items()}, total),
             "passes_particles_per_s": pass_rates(json.loads((work / "recon" / "recon.json").read_text()))}
    report = {"box": args.box, "particles": args.particles, "torch_threads": torch.get_num_threads(),
              "epochs": epochs, "reconstruct": recon}
    for e in epochs:
        print(f"\nepoch {e['epoch']} (grid {e['grid']}, box {e['box']}, {e['voxels']} voxels): "
              f"{e['seconds']} s, {args.particles / e['seconds']:.1f} particles/s")
        for r in e["parts"]:
            print(f"  {r['part']:<34} {r['s']:>8.2f} s {r['percent']:>5.1f} %")
    print(f"\nreconstruct ({args.iterations} iterations, flex + rigid, both halves): {total:.1f} s; "
          f"passes, particles/s: {recon['passes_particles_per_s']}")
    for r in recon["parts"]:
        print(f"  {r['part']:<34} {r['s']:>8.2f} s {r['percent']:>5.1f} %")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
