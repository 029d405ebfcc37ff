"""``flexcore reconstruct``: the step function (CLI and Snakemake call this).

Gold-standard flexible reconstruction at the full (cropped) box: each half set is solved
independently by L-BFGS (:mod:`flexcore.recon.flex`) from its own rigid Wiener map, under
the trained flow (``flex``) and with zero flow (``noflex``, the rigid baseline, same code).
The full maps are the **average of the two half solutions** (not a third solve on all
particles). FSCs are computed unmasked and with the mesh's soft mask upscaled to the box.

Outputs in ``out_dir`` (CryoSPARC names): ``flex_map.mrc``, ``flex_map_half_A.mrc``,
``flex_map_half_B.mrc``, ``flex_map_sharp.mrc``, ``noflex_map.mrc``,
``noflex_map_half_A.mrc``, ``noflex_map_half_B.mrc``, ``fsc.tsv``, ``fsc.png``,
``lbfgs.tsv`` and ``recon.json``.

While it runs, ``partial/`` holds the start maps, finished solves and the running solve's
L-BFGS state (at most every 30 s; :mod:`flexcore.recon.resume`): run again after an
interruption with the same inputs and parameters, it reuses them and continues where it
stopped, to the same maps; the folder is removed at the end.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, FlexcoreError, InputFileError
from ..fsc import format_resolution, fsc_curve, resolution_at, resolution_or_none
from ..io import ImageSource, write_map
from ..prep_info import PrepInfo
from ..train.trained import load_trained_model
from ..utils.logging import get_logger
from ..utils.memory import peak_rss_GiB
from ..utils.outputs import prepare_outputs
from ..utils.provenance import write_provenance
from .aberrations import OpticsAberrations
from .flex import FlexOperator, HalfObjective, solve_half, wiener_start
from .outputs import plot_fsc, sharpen, write_fsc_table, write_lbfgs_table
from .particles import ImageStream, ScratchCopy, load_recon_particles
from .resume import SolveStore, recon_fingerprint

log = get_logger("flexcore.recon")
HALF_NAMES = ("A", "B")
OUTPUTS = ("flex_map.mrc", "flex_map_half_A.mrc", "flex_map_half_B.mrc", "flex_map_sharp.mrc",
           "noflex_map.mrc", "noflex_map_half_A.mrc", "noflex_map_half_B.mrc", "fsc.tsv",
           "fsc.png", "lbfgs.tsv", "recon.json")


def check_parameters(iterations, batch_size, ridge, seed, bfactor, device, scratch_dir) -> None:
    """Raise :class:`ConfigError` naming the first bad parameter."""
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    def is_number(v):
        return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) \
            and math.isfinite(v)

    if not is_int(iterations) or iterations < 0:
        raise ConfigError(f"reconstruct.iterations = {iterations!r}: must be an integer ≥ 0")
    if not is_int(batch_size) or batch_size < 1:
        raise ConfigError(f"reconstruct.batch_size = {batch_size!r}: must be an integer ≥ 1")
    if not is_number(ridge) or ridge < 0:
        raise ConfigError(f"reconstruct.ridge = {ridge!r}: must be a finite number ≥ 0")
    if not is_int(seed):
        raise ConfigError(f"reconstruct.seed = {seed!r}: must be an integer")
    if bfactor is not None and not is_number(bfactor):
        raise ConfigError(f"reconstruct.bfactor = {bfactor!r}: must be a finite number (Å²) "
                          "or None")
    if not (device in ("auto", "cpu", "cuda") or str(device).startswith("cuda:")):
        raise ConfigError(f"reconstruct.device = {device!r}: must be auto, cpu, cuda or cuda:N")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"reconstruct.device = {device!r} but no CUDA device is available")
    if scratch_dir is not None and Path(scratch_dir).exists() and not Path(scratch_dir).is_dir():
        raise ConfigError(f"reconstruct.scratch_dir = {str(scratch_dir)!r} is not a folder")


def check_model_matches_prep(model, info: PrepInfo, checkpoint, n_particles: int) -> None:
    """Raise ``InputFileError`` naming the checkpoint when it was trained on another prep."""
    if model.box != info.train_box:
        raise InputFileError(checkpoint, f"model box {model.box} px differs from the prepared "
                                         f"particles' training box {info.train_box} px")
    if abs(model.pixel_size_A - info.train_pixel_size_A) > 1e-3 * model.pixel_size_A:
        raise InputFileError(checkpoint, f"model pixel size {model.pixel_size_A:.4f} Å differs "
                                         f"from the prepared particles' "
                                         f"{info.train_pixel_size_A:.4f} Å")
    if model.latents.shape[0] != n_particles:
        raise InputFileError(checkpoint, f"has latents for {model.latents.shape[0]} particles but "
                                         f"the prepared folder holds {n_particles}")
    for key in ("crop_box", "original_box"):
        trained_on = None if model.prep is None else getattr(model.prep, key)
        if trained_on is not None and trained_on != getattr(info, key):
            raise InputFileError(checkpoint, f"was trained on a prep with {key} {trained_on}, "
                                             f"this prep has {getattr(info, key)}")


def choose_halves(half_set: np.ndarray, resplit: bool, seed: int) -> tuple[np.ndarray, str]:
    """Half set (0/1) per particle: the input split, or a seeded random one."""
    n = len(half_set)
    if resplit or (half_set < 0).any() or len(np.unique(half_set)) < 2:
        if not resplit:
            log.warning("the prepared particles carry no complete half-set split; drawing a "
                        "random one (seed %d)", seed)
        rng = np.random.default_rng(seed)
        return rng.permutation(np.arange(n) % 2).astype(np.int8), f"random (seed {seed})"
    counts = np.bincount(half_set, minlength=2)
    if abs(int(counts[0]) - int(counts[1])) > 0.1 * n:
        log.warning("the input half sets are unequal (%d vs %d particles); continuing",
                    counts[0], counts[1])
    return half_set.astype(np.int8), "input"


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

    Returns the summary written into ``recon.json``.
    """
    check_parameters(iterations, batch_size, ridge, seed, bfactor, device, scratch_dir)
    t_start = time.time()
    params = dict(mesh=str(mesh) if mesh else None, iterations=int(iterations),
                  batch_size=int(batch_size), ridge=float(ridge), resplit=bool(resplit),
                  seed=int(seed), in_ram=bool(in_ram),
                  scratch_dir=str(scratch_dir) if scratch_dir else None,
                  rigid_baseline=bool(rigid_baseline), bfactor=bfactor,
                  aberrations=bool(aberrations), device=device)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                       else ("cpu" if device == "auto" else device))
    info = PrepInfo.read(prep_dir)
    model = load_trained_model(checkpoint, mesh, device=dev)
    particles = load_recon_particles(prep_dir, info)
    check_model_matches_prep(model, info, checkpoint, len(particles))
    stacks = source_stacks(particles)
    prep_files = {f"prepared {n}": Path(prep_dir) / n for n in ("particles.star", "prep.json")}
    out = prepare_outputs("reconstruct", out_dir, OUTPUTS, {
        "checkpoint": checkpoint, "mesh": model.mesh_path, **prep_files,
        "source particle file": info.source_particles,
        **{f"image stack {p.name}": p for p in stacks}})
    half, half_origin = choose_halves(particles.half_set, resplit, seed)
    for h, name in enumerate(HALF_NAMES):
        if not (half == h).any():
            raise InputFileError(Path(prep_dir) / "particles.star",
                                 f"half set {name} has no particles; both halves need particles")
    box, psize = info.crop_box, info.original_pixel_size_A
    scale = box / model.box
    mesh_hi = model.mesh if box == model.box else model.mesh.upscale(box)
    noise_var = info.noise_variance * scale**2
    abr = None
    if aberrations:
        abr = OpticsAberrations(particles.source.optics, box, psize, dev)
        log.info("aberrations: %s", abr.summary(particles.source.optics) if abr.any
                 else "none in the optics table (beam tilt and Zernike terms are all zero)")
    op = FlexOperator(mesh_hi, psize, noise_var, dev, aberrations=abr)
    log.info("reconstructing %d particles (halves %d / %d, %s) at box %d (%.4g Å/px, Nyquist "
             "%.2f Å); mesh upscaled ×%.3g to %d mask voxels; %d L-BFGS iterations; device %s",
             len(particles), int((half == 0).sum()), int((half == 1).sum()), half_origin, box,
             psize, 2 * psize, scale, op.n_voxels, iterations, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    latents = torch.as_tensor(model.latents, dtype=torch.float32)

    def flex_displacements(idx):
        return model.displacements(latents[torch.as_tensor(idx, dtype=torch.long)], dev) * scale

    kinds = {"flex": flex_displacements}
    if rigid_baseline:
        kinds["noflex"] = None
    maps: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
    runs: dict[str, list[dict]] = {}
    timings: dict[str, float] = {}
    passes: dict[str, dict] = {}
    store = SolveStore(out / "partial", recon_fingerprint(
        checkpoint, model.mesh_path, prep_dir, stacks, half, params, dev), dev)
    scratch = None
    try:
        for h, name in enumerate(HALF_NAMES):
            positions = np.flatnonzero(half == h)
            t0 = time.time()
            records = {kind: store.load(f"{kind}_{name}") for kind in kinds}
            if all(r is not None and r.get("done") for r in records.values()):
                log.info("half %s: reusing the %s solve(s) an interrupted run finished", name,
                         " and ".join(kinds))
                for kind, rec in records.items():
                    finish_solve(kind, name, rec, op, maps, runs, passes, timings)
                continue
            if scratch is None and scratch_dir:
                scratch = ScratchCopy(particles.source, particles.source_rows, scratch_dir)
            table = scratch.table if scratch else particles.source
            stream = ImageStream(table, particles.source_rows[positions], box,
                                 info.image_sign, dev, in_ram=in_ram,
                                 label=f"half {name}: ")
            try:
                start = store.load(f"start_{name}")
                if start is None:
                    x0 = wiener_start(op, particles, positions, stream, batch_size,
                                      label=f"half {name}: ")
                    store.save(f"start_{name}", {"x": x0})
                else:
                    x0 = start["x"]
                    log.info("half %s: reusing the Wiener start map of an interrupted run", name)
                timings[f"start_half_{name}_s"] = round(time.time() - t0, 2)
                for kind, disp_fn in kinds.items():
                    rec = records[kind]
                    if rec is not None and rec.get("done"):
                        log.info("%s half %s: reusing the solve an interrupted run finished",
                                 kind, name)
                        finish_solve(kind, name, rec, op, maps, runs, passes, timings)
                        continue
                    t1 = time.time()
                    obj = HalfObjective(op, particles, positions, stream, disp_fn, ridge,
                                        batch_size, label=f"{kind} half {name}: ")
                    if rec is not None:  # an interrupted solve: continue its count of passes
                        obj.passes = {k: list(v) for k, v in rec["passes"].items()}
                    key = f"{kind}_{name}"
                    res = solve_half(obj, x0, iterations, state=rec,
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
    summary = write_outputs(out, maps, runs, mesh_hi.mask_soft, psize, bfactor)
    memory = {"peak_rss_GiB": round(peak_rss_GiB(), 3)}
    if dev.type == "cuda":
        memory["peak_gpu_GiB"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 3)
    timings["total_s"] = round(time.time() - t_start, 2)
    summary.update({
        "checkpoint": str(Path(checkpoint).resolve()), "prep_dir": str(Path(prep_dir).resolve()),
        "epoch": model.epoch, "box": box, "pixel_size_A": psize, "train_box": model.box,
        "scale": scale, "mask_voxels": op.n_voxels, "noise_variance": noise_var,
        "n_particles": len(particles), "half_sets": half_origin,
        "half_counts": [int((half == 0).sum()), int((half == 1).sum())],
        "full_map": "average of the two half-map solutions",
        "fsc_mask": "mesh mask_soft upscaled to the reconstruction box",
        "aberrations": None if abr is None else abr.summary(particles.source.optics),
        "timings": timings, "passes": passes, "memory": memory, "device": str(dev),
    })
    write_provenance(out / "recon.json", "reconstruct", params, extra=summary)
    store.clear()
    log.info("%s; peak RSS %.2f GiB%s; %.0f s in all", summary["summary"], memory["peak_rss_GiB"],
             f", peak GPU {memory['peak_gpu_GiB']:.2f} GiB" if "peak_gpu_GiB" in memory else "",
             timings["total_s"])
    return summary


def source_stacks(particles) -> list[Path]:
    """The stack files (resolved) that the reconstruction reads its images from."""
    source = ImageSource(particles.source)
    try:
        names = np.unique(np.asarray(particles.source.image_paths, dtype=object)[particles.source_rows])
        return [source.reader(str(n)).path for n in names]
    finally:
        source.close()


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
