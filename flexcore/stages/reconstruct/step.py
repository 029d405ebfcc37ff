"""``flexcore reconstruct``, ``reconstruct-combine`` and ``reconstruct-rigid``: the step
functions (CLI and Snakemake call these).

Gold-standard flexible reconstruction at the full (cropped) box: each half set is solved
independently by L-BFGS (:mod:`flexcore.stages.reconstruct.flex`) from its own rigid Wiener
map, under the trained flow (``flex``) and with zero flow (``noflex``, the rigid baseline,
same code). The full maps are the **average of the two half solutions** (not a third solve
on all particles). FSCs are computed unmasked and with the mesh's soft mask upscaled to the
box.

Outputs in ``out_dir`` (CryoSPARC names): ``flex_map.mrc``, ``flex_map_half_A.mrc``,
``flex_map_half_B.mrc``, ``flex_map_sharp.mrc``, ``noflex_map.mrc``,
``noflex_map_half_A.mrc``, ``noflex_map_half_B.mrc``, ``fsc.tsv``, ``fsc.png``,
``lbfgs.tsv`` and ``recon.json``. With ``solve="flex_A"`` (…) only that solve is made,
into ``flex_map_half_A.mrc`` and its record ``flex_half_A.json``
(:mod:`flexcore.stages.reconstruct.solves`); :func:`run_reconstruct_combine` turns a folder
of such solves into the outputs above.

While it runs, ``partial/`` holds the start maps, finished solves and the running solve's
L-BFGS state (at most every 30 s; :mod:`flexcore.stages.reconstruct.resume`): run again after
an interruption with the same inputs and parameters, it reuses them and continues where it
stopped, to the same maps; the folder is removed at the end.

``reconstruct-rigid`` is a rigid Wiener-filtered reconstruction of any particles with poses
(:func:`~flexcore.core.wiener.reconstruct_particles`). Its half sets are the input's when
complete and two-sided, a seeded random split otherwise (with a warning); copies of one image
(the same image of the same stack file, e.g. after symmetry expansion) are kept in one half
set, with a warning giving the count, so the FSC is not inflated
(:mod:`flexcore.core.half_sets`). A map that is not finite is never written.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...core.errors import ConfigError, FlexcoreError, InputFileError
from ...core.fsc import format_resolution, resolution_at
from ...core.fsc_outputs import plot_fsc, write_fsc_table
from ...core.half_sets import assign_half_sets, image_groups
from ...core.io import ImageSource, read_mask, read_particles, write_map
from ...core.utils import distributed
from ...core.utils.launch import ranks_to_start, start_ranks
from ...core.utils.logging import get_logger
from ...core.utils.outputs import prepare_outputs
from ...core.utils.provenance import write_provenance
from ...core.wiener import reconstruct_particles
from .halves import Solved, open_store, solve_halves
from .inputs import HALF_NAMES, Reconstruction, memory_record, prepare_reconstruction
from .outputs import OUTPUTS, write_outputs
from .params import ReconParams, check_bfactor
from .solves import combine_solves, solve_files

log = get_logger("flexcore.recon")
RIGID_OUTPUTS = ("map.mrc", "map_half_A.mrc", "map_half_B.mrc", "fsc.tsv", "fsc.png")


def run_reconstruct(checkpoint, prep_dir, out_dir, *, mesh=None, iterations=20, batch_size=64,
                    ridge=1e-3, resplit=False, seed=0, in_ram=False, scratch_dir=None,
                    rigid_baseline=True, bfactor=None, aberrations=False, device="auto",
                    solve: str | None = None, gpus: int = 1) -> dict:
    """Flexible high-resolution reconstruction with gold-standard FSC (see the module
    docstring for outputs).

    Parameters
    ----------
    checkpoint : training checkpoint (``.pt``); its latents are used without noise.
    prep_dir : the prepared folder the model was trained on (``prep.json``,
        ``particles.star``; the full-resolution images come from prep's source file).
    mesh, iterations, batch_size, ridge, resplit, seed, in_ram, scratch_dir, rigid_baseline,
    bfactor, aberrations, device, solve :
        the fields of :class:`~flexcore.stages.reconstruct.params.ReconParams`.
    gpus : data-parallel ranks. With ``gpus > 1`` this call starts that many ranks with
        torchrun (:func:`~flexcore.core.utils.launch.start_ranks`); they split each half's
        particles in every pass and rank 0 writes the outputs, the same as one process's up
        to float rounding.

    Returns the summary written into ``recon.json`` (with ``solve``: the solve's record).
    """
    if solve is not None and (not rigid_baseline or bfactor is not None):
        raise ConfigError("a single solve (--solve) is one half map: rigid_baseline and bfactor "
                          "belong to reconstruct-combine (or leave out the noflex solves)")
    params = ReconParams(mesh=str(mesh) if mesh else None, iterations=iterations,
                         batch_size=batch_size, ridge=ridge, resplit=resplit, seed=seed,
                         in_ram=in_ram, scratch_dir=str(scratch_dir) if scratch_dir else None,
                         aberrations=aberrations, device=device,
                         rigid_baseline=bool(rigid_baseline), bfactor=bfactor,
                         solve=solve).check()
    if ranks_to_start(gpus):
        kwargs = dict(params.__dict__, checkpoint=str(checkpoint), prep_dir=str(prep_dir),
                      out_dir=str(out_dir), gpus=gpus)
        return start_ranks("flexcore.stages.reconstruct.step:run_reconstruct", gpus, kwargs)
    dev = distributed.resolve_device(device, "reconstruct.device")
    with distributed.process_group(dev):
        t0 = time.time()
        if solve is None:
            rec, out = prepare_reconstruction(checkpoint, prep_dir, out_dir, OUTPUTS, params, dev)
            store = open_store(rec, out / "partial")
            done = solve_halves(rec, store, {name: params.kinds for name in HALF_NAMES})
            return distributed.on_main_rank(write_reconstruction, rec, out, done, store, t0)
        kind, half = solve.split("_")
        rec, out = prepare_reconstruction(checkpoint, prep_dir, out_dir, solve_files(solve),
                                          params, dev)
        store = open_store(rec, out / f"partial_{solve}")
        done = solve_halves(rec, store, {half: [kind]})
        return distributed.on_main_rank(write_solve, rec, out, done, store, t0)


def write_reconstruction(rec: Reconstruction, out: Path, done: Solved, store, t0: float) -> dict:
    """Rank 0: the whole reconstruction's maps, FSC, L-BFGS log and ``recon.json``."""
    summary = write_outputs(out, done.maps, done.runs, rec.mesh_hi.mask_soft,
                            rec.info.original_pixel_size_A, rec.params.bfactor)
    timings = {**done.timings, "total_s": round(time.time() - t0, 2)}
    summary.update({**rec.describe(),
                    "full_map": "average of the two half-map solutions",
                    "fsc_mask": "mesh mask_soft upscaled to the reconstruction box",
                    "timings": timings, "passes": done.passes,
                    "memory": memory_record(rec.device)})
    write_provenance(out / "recon.json", "reconstruct", rec.params.record(), extra=summary)
    store.clear()
    log.info("%s; peak RSS %.2f GiB%s; %.0f s in all", summary["summary"],
             summary["memory"]["peak_rss_GiB"],
             f", peak GPU {summary['memory']['peak_gpu_GiB']:.2f} GiB"
             if "peak_gpu_GiB" in summary["memory"] else "", timings["total_s"])
    return summary


def write_solve(rec: Reconstruction, out: Path, done: Solved, store, t0: float) -> dict:
    """Rank 0: one solve's half map and its record (for :func:`run_reconstruct_combine`)."""
    solve = rec.params.solve
    kind = solve.split("_")[0]
    names = solve_files(solve)
    volume = done.maps[kind][0]
    if not np.isfinite(volume).all():
        raise FlexcoreError(f"the {solve} solve has NaN or infinite voxels; no map was "
                            f"written to {out}")
    write_map(out / names[0], volume, rec.info.original_pixel_size_A)
    record = {"solve": solve, **rec.describe(), "mesh": str(Path(rec.model.mesh_path).resolve()),
              "fingerprint": rec.fingerprint(), "history": done.runs[solve],
              "passes": done.passes[solve],
              "timings": {**done.timings, "total_s": round(time.time() - t0, 2)},
              "memory": memory_record(rec.device)}
    write_provenance(out / names[1], "reconstruct", rec.params.record(), extra=record)
    store.clear()
    log.info("%s: objective %.8g → %.8g; wrote %s and %s", solve,
             record["history"][0]["objective"], record["history"][-1]["objective"], *names)
    return record


def run_reconstruct_combine(halves_dir, out_dir, *, bfactor=None) -> dict:
    """Combine the solves in ``halves_dir`` (each written by ``run_reconstruct(solve=…)``)
    into the outputs of a whole reconstruction in ``out_dir`` (see
    :func:`~flexcore.stages.reconstruct.solves.combine_solves`)."""
    check_bfactor(bfactor)
    return combine_solves(halves_dir, out_dir, bfactor)


def run_reconstruct_rigid(particles, out_dir, *, pixel_size_A: float | None = None, mask=None,
                          batch_size: int = 256, device: str = "cpu", project_dir=None) -> dict:
    """Reconstruct ``particles`` (RELION ``.star`` / cryoSPARC ``.cs``) rigidly into
    ``out_dir``; ``mask`` (``.mrc``, same box) is applied to the FSC; ``project_dir`` is the
    RELION/cryoSPARC project folder relative image paths start from (default: searched above
    the particle file). Returns a summary with the FSC 0.143 resolution (Å; NaN when the FSC
    is not finite)."""
    table = read_particles(particles, pixel_size_A=pixel_size_A, project_dir=project_dir)
    box, psize = table.box, table.pixel_size_A
    mask_volume = read_mask(mask, box, psize) if mask else None
    source = ImageSource(table)
    source.check_all_present()
    stacks = {f"image stack {n}": source.reader(str(n)).path for n in set(table.image_paths)}
    folder = prepare_outputs("reconstruct-rigid", out_dir, RIGID_OUTPUTS,
                             {"particle file": particles, "mask": mask, **stacks})
    half, origin = assign_half_sets(table.half_set, image_groups(table, source),
                                    resplit=False, seed=0, where=particles)
    log.info("half sets: %s, %d + %d particles", origin, int((half == 0).sum()),
             int((half == 1).sum()))
    out = reconstruct_particles(table, source, half=half, batch=batch_size, device=device,
                                mask=mask_volume)
    source.close()
    for key in ("half_a", "half_b", "full"):
        if not np.isfinite(out[key]).all():
            raise InputFileError(particles, f"the reconstruction ({key}) is not finite; nothing "
                                            "was written (check the poses, CTF and images)")
    write_map(folder / "map.mrc", out["full"], psize)
    write_map(folder / "map_half_A.mrc", out["half_a"], psize)
    write_map(folder / "map_half_B.mrc", out["half_b"], psize)
    res = resolution_at(out["fsc"], 0.143, psize)
    write_fsc_table(folder / "fsc.tsv", {"halves": out["fsc"]}, box, psize)
    plot_fsc(folder / "fsc.png", {"halves": out["fsc"]}, {"halves": res}, box, psize,
             f"rigid reconstruction of {len(table)} particles")
    log.info("rigid reconstruction of %d particles: FSC 0.143 at %s; wrote %s", len(table),
             format_resolution(res), folder)
    return {"n_particles": len(table), "box": box, "pixel_size_A": psize,
            "resolution_0143_A": res, "out_dir": str(folder)}
