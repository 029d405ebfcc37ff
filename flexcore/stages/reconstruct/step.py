"""``flexcore reconstruct``: the step function (CLI and Snakemake call this).

Gold-standard flexible reconstruction at the full (cropped) box: each half set is solved
independently by L-BFGS (:mod:`flexcore.stages.reconstruct.flex`) from its own rigid Wiener map, under
the trained flow (``flex``) and with zero flow (``noflex``, the rigid baseline, same code).
The full maps are the **average of the two half solutions** (not a third solve on all
particles). FSCs are computed unmasked and with the mesh's soft mask upscaled to the box.

Outputs in ``out_dir`` (CryoSPARC names): ``flex_map.mrc``, ``flex_map_half_A.mrc``,
``flex_map_half_B.mrc``, ``flex_map_sharp.mrc``, ``noflex_map.mrc``,
``noflex_map_half_A.mrc``, ``noflex_map_half_B.mrc``, ``fsc.tsv``, ``fsc.png``,
``lbfgs.tsv`` and ``recon.json``.

While it runs, ``partial/`` holds the start maps, finished solves and the running solve's
L-BFGS state (at most every 30 s; :mod:`flexcore.stages.reconstruct.resume`): run again after an
interruption with the same inputs and parameters, it reuses them and continues where it
stopped, to the same maps; the folder is removed at the end.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...core.errors import FlexcoreError
from ...core.fsc import format_resolution, fsc_curve, resolution_at, resolution_or_none
from ...core.fsc_outputs import plot_fsc, sharpen, write_fsc_table
from ...core.io import write_map
from ...core.utils import distributed as ddp
from ...core.utils.logging import get_logger
from ...core.utils.memory import peak_rss_GiB
from ...core.utils.provenance import write_provenance
from .flex import HalfObjective, solve_half, wiener_start
from .inputs import (
    HALF_NAMES,
    Reconstruction,
    check_parameters,
    map_parameters,
    memory_record,
    prepare_reconstruction,
)
from .outputs import write_lbfgs_table
from .particles import ImageStream, ScratchCopy
from .resume import SolveStore

log = get_logger("flexcore.recon")
OUTPUTS = ("flex_map.mrc", "flex_map_half_A.mrc", "flex_map_half_B.mrc", "flex_map_sharp.mrc",
           "noflex_map.mrc", "noflex_map_half_A.mrc", "noflex_map_half_B.mrc", "fsc.tsv",
           "fsc.png", "lbfgs.tsv", "recon.json")


def open_store(rec: Reconstruction, folder) -> SolveStore:
    """The partial results of this reconstruction in ``folder``: rank 0 checks and writes
    them, every rank reads them."""
    fingerprint = ddp.run_on_main(rec.fingerprint)
    # rank 0 first: it empties a folder of another reconstruction before anyone reads it
    writer = ddp.run_on_main(SolveStore, folder, fingerprint, rec.device)
    return writer if ddp.is_main() else SolveStore(folder, fingerprint, rec.device, writer=False)


def run_solves(rec: Reconstruction, store: SolveStore, wanted: dict[str, list[str]]) -> dict:
    """Solve the ``wanted`` kinds (``flex``, ``noflex``) of each half set name, reusing
    what ``store`` holds of an interrupted run.

    Under torchrun every rank takes a contiguous block of each half's particles; the
    Wiener start and every pass add up all ranks' sums (float64), so every rank runs the
    same L-BFGS iterations; rank 0 saves the partial results.

    Returns ``{"maps": {kind: [half map, …]}, "runs", "passes", "timings"}`` in the order
    of ``wanted``.
    """
    p, op, particles = rec.params, rec.op, rec.particles
    maps: dict[str, list[np.ndarray]] = {k: [] for kinds in wanted.values() for k in kinds}
    runs: dict[str, list[dict]] = {}
    timings: dict[str, float] = {}
    passes: dict[str, dict] = {}
    mine = {name: ddp.contiguous_block(np.flatnonzero(rec.half == HALF_NAMES.index(name)))
            for name in wanted}
    scratch = None
    try:
        for name, kinds in wanted.items():
            positions = mine[name]
            t0 = time.time()
            # every rank reads the same files here: rank 0 writes them only after the
            # collectives of this half, which no rank passes before reading
            records = {kind: store.load(f"{kind}_{name}") for kind in kinds}
            if all(r is not None and r.get("done") for r in records.values()):
                log.info("half %s: reusing the %s solve(s) an interrupted run finished", name,
                         " and ".join(kinds))
                for kind, r in records.items():
                    finish_solve(kind, name, r, op, maps, runs, passes, timings)
                continue
            if scratch is None and p["scratch_dir"]:
                rows = particles.source_rows[np.concatenate(list(mine.values()))]
                scratch = ScratchCopy(particles.source, rows, p["scratch_dir"])
            table = scratch.table if scratch else particles.source
            stream = ImageStream(table, particles.source_rows[positions], rec.box,
                                 rec.info.image_sign, rec.device, in_ram=p["in_ram"],
                                 label=f"half {name}: ")
            try:
                start = store.load(f"start_{name}")
                if start is None:
                    x0 = wiener_start(op, particles, positions, stream, p["batch_size"],
                                      label=f"half {name}: ")
                    store.save(f"start_{name}", {"x": x0})
                else:
                    x0 = start["x"]
                    log.info("half %s: reusing the Wiener start map of an interrupted run", name)
                timings[f"start_half_{name}_s"] = round(time.time() - t0, 2)
                for kind in kinds:
                    r = records[kind]
                    if r is not None and r.get("done"):
                        log.info("%s half %s: reusing the solve an interrupted run finished",
                                 kind, name)
                        finish_solve(kind, name, r, op, maps, runs, passes, timings)
                        continue
                    t1 = time.time()
                    obj = HalfObjective(op, particles, positions, stream, rec.displacements(kind),
                                        p["ridge"], p["batch_size"], label=f"{kind} half {name}: ")
                    if r is not None:  # an interrupted solve: continue its count of passes
                        obj.passes = {k: list(v) for k, v in r["passes"].items()}
                    key = f"{kind}_{name}"
                    res = solve_half(obj, x0, p["iterations"], state=r,
                                     on_iteration=lambda st, key=key, obj=obj: store.save_progress(
                                         key, {"done": False, **st, "passes": obj.passes}))
                    seconds = round(time.time() - t1, 2)
                    done = {"done": True, "x": res.x, "history": res.history,
                            "passes": obj.passes, "seconds": seconds}
                    store.save(key, done)
                    finish_solve(kind, name, done, op, maps, runs, passes, timings)
            finally:
                stream.close()
            log.info("half %s done in %.0f s; peak RSS %.2f GiB", name, time.time() - t0,
                     peak_rss_GiB())
    finally:
        if scratch:
            scratch.cleanup()
    return {"maps": maps, "runs": runs, "passes": passes, "timings": timings}


def run_reconstruct(checkpoint, prep_dir, out_dir, *, mesh=None, iterations=20, batch_size=64,
                    ridge=1e-3, resplit=False, seed=0, in_ram=False, scratch_dir=None,
                    rigid_baseline=True, bfactor=None, aberrations=False, device="auto") -> dict:
    """Flexible high-resolution reconstruction with gold-standard FSC (see the module
    docstring for outputs).

    Parameters
    ----------
    checkpoint : training checkpoint (``.pt``); its latents are used without noise.
    prep_dir : the prepared folder the model was trained on (``prep.json``,
        ``particles.star``; the full-resolution images come from prep's source file).
    mesh : mesh file (default: the one the checkpoint records).
    iterations : L-BFGS iterations per half (CryoSPARC ``flex_bfgs_num_iters``, 20).
    batch_size : particles per batch of a pass.
    ridge : ``ρ`` of the ridge term ``½ρ‖V‖²`` (per voxel; the data term is whitened, so
        each image coefficient contributes ~1, making 1e-3 negligible except where no
        data constrain the map).
    resplit, seed : a seeded random half-set split instead of the input split.
    in_ram : load each half's images into RAM once (when they fit).
    scratch_dir : copy the stacks to this local folder first; copies are removed at the end.
    rigid_baseline : also solve with zero flow (``noflex_*`` maps).
    bfactor : B-factor (Å², positive = decay) removed when sharpening; None = Guinier fit.
    aberrations : apply the optics groups' beam tilt and odd/even Zernike terms.
    device : ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.

    Started by torchrun (``python -m torch.distributed.run --nproc-per-node N -m flexcore
    reconstruct …``), the N ranks split each half's particles in every pass and rank 0
    writes the outputs, the same as one process's up to float rounding.

    Returns the summary written into ``recon.json``.
    """
    check_parameters(iterations, batch_size, ridge, seed, bfactor, device, scratch_dir)
    params = map_parameters(mesh, iterations, batch_size, ridge, resplit, seed, in_ram,
                            scratch_dir, aberrations, device, rigid_baseline=bool(rigid_baseline),
                            bfactor=bfactor)
    dev = ddp.resolve_device(device, "reconstruct.device")
    with ddp.process_group(dev):
        t_start = time.time()
        rec, out = prepare_reconstruction(checkpoint, prep_dir, out_dir, "reconstruct", OUTPUTS,
                                          params, dev)
        store = open_store(rec, out / "partial")
        kinds = ["flex", "noflex"] if rigid_baseline else ["flex"]
        done = run_solves(rec, store, {name: kinds for name in HALF_NAMES})

        def write():
            summary = write_outputs(out, done["maps"], done["runs"], rec.mesh_hi.mask_soft,
                                    rec.info.original_pixel_size_A, bfactor)
            timings = {**done["timings"], "total_s": round(time.time() - t_start, 2)}
            summary.update({**rec.describe(),
                            "full_map": "average of the two half-map solutions",
                            "fsc_mask": "mesh mask_soft upscaled to the reconstruction box",
                            "timings": timings, "passes": done["passes"],
                            "memory": memory_record(dev)})
            write_provenance(out / "recon.json", "reconstruct", params, extra=summary)
            store.clear()
            log.info("%s; peak RSS %.2f GiB%s; %.0f s in all", summary["summary"],
                     summary["memory"]["peak_rss_GiB"],
                     f", peak GPU {summary['memory']['peak_gpu_GiB']:.2f} GiB"
                     if "peak_gpu_GiB" in summary["memory"] else "", timings["total_s"])
            return summary

        return ddp.run_on_main(write)


def finish_solve(kind: str, name: str, record: dict, op, maps: dict, runs: dict, passes: dict,
                 timings: dict) -> None:
    """File a finished solve's map, L-BFGS record, pass counts and time under its name."""
    maps[kind].append(op.to_volume(record["x"].to(op.device)).cpu().numpy())
    runs[f"{kind}_{name}"] = record["history"]
    passes[f"{kind}_{name}"] = {k: {"count": v[0], "seconds": round(v[1], 3)}
                                for k, v in record["passes"].items()}
    timings[f"{kind}_half_{name}_s"] = record["seconds"]


def write_outputs(out: Path, maps: dict, runs: dict, mask_soft: np.ndarray, psize: float,
                  bfactor) -> dict:
    """Write maps, FSC table/plot and the L-BFGS log; return resolutions and the summary."""
    out.mkdir(parents=True, exist_ok=True)
    for kind, halves in maps.items():
        for name, half in zip(HALF_NAMES, halves):
            if not np.isfinite(half).all():
                raise FlexcoreError(f"the {kind} reconstruction of half {name} has NaN or "
                                    f"infinite voxels; no maps were written to {out}")
    curves, res = {}, {}
    for kind, (a, b) in maps.items():
        full = 0.5 * (a + b)
        write_map(out / f"{kind}_map_half_A.mrc", a, psize)
        write_map(out / f"{kind}_map_half_B.mrc", b, psize)
        write_map(out / f"{kind}_map.mrc", full, psize)
        curves[f"{kind}_masked"] = fsc_curve(a, b, mask=mask_soft)
        curves[kind] = fsc_curve(a, b)
    for name, fsc in curves.items():
        res[name] = resolution_at(fsc, 0.143, psize)
    box = mask_soft.shape[0]
    write_fsc_table(out / "fsc.tsv", curves, box, psize)
    fmt = {name: format_resolution(r) for name, r in res.items()}
    line = f"flex 0.143: {fmt['flex_masked']}"
    if "noflex" in maps:
        line += f", rigid: {fmt['noflex_masked']} (masked; unmasked flex " \
                f"{fmt['flex']}, rigid {fmt['noflex']})"
    else:
        line += f" (masked; unmasked {fmt['flex']}; no rigid baseline)"
    plot_fsc(out / "fsc.png", curves, res, box, psize, line)
    write_lbfgs_table(out / "lbfgs.tsv", runs)
    full = 0.5 * (maps["flex"][0] + maps["flex"][1])
    sharp, sharp_rec = sharpen(full, psize, curves["flex_masked"], res["flex_masked"], bfactor)
    write_map(out / "flex_map_sharp.mrc", sharp, psize)
    log.info("wrote maps, fsc.tsv/png and lbfgs.tsv to %s", out)
    return {"summary": line,
            "resolution_0143_A": {name: resolution_or_none(r) for name, r in res.items()},
            "sharpening": sharp_rec,
            "objective": {k: {"start": v[0]["objective"], "final": v[-1]["objective"],
                              "iterations": len(v) - 1} for k, v in runs.items()}}
