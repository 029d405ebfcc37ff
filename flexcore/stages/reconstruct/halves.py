"""Solving the half sets: each half's Wiener start map, then one L-BFGS solve per kind
(``flex`` under the trained flow, ``noflex`` with zero flow), reusing what an interrupted
run left in its :class:`~flexcore.stages.reconstruct.resume.SolveStore`.

Under torchrun every rank takes a contiguous block of each half's particles; the Wiener
start and every pass add up all ranks' sums (float64), so every rank runs the same L-BFGS
iterations; rank 0 saves the partial results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ...core.utils import distributed
from ...core.utils.logging import get_logger
from ...core.utils.memory import peak_rss_GiB
from .flex import HalfObjective, solve_half, wiener_start
from .inputs import HALF_NAMES, Reconstruction
from .particles import ImageStream, ScratchCopy
from .resume import SolveStore

log = get_logger("flexcore.recon")


@dataclass
class Solved:
    """The finished solves, in the order they were asked for: half maps per kind, L-BFGS
    histories, pass counts and times per solve (``flex_A``, …)."""

    maps: dict[str, list[np.ndarray]] = field(default_factory=dict)
    runs: dict[str, list[dict]] = field(default_factory=dict)
    passes: dict[str, dict] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, kind: str, name: str, record: dict, op) -> None:
        """File a finished solve's map, L-BFGS record, pass counts and time under its name."""
        self.maps.setdefault(kind, []).append(op.to_volume(record["x"].to(op.device)).cpu().numpy())
        self.runs[f"{kind}_{name}"] = record["history"]
        self.passes[f"{kind}_{name}"] = {k: {"count": v[0], "seconds": round(v[1], 3)}
                                         for k, v in record["passes"].items()}
        self.timings[f"{kind}_half_{name}_s"] = record["seconds"]


def open_store(rec: Reconstruction, folder) -> SolveStore:
    """The partial results of this reconstruction in ``folder``: rank 0 checks and writes
    them, every rank reads them."""
    fingerprint = distributed.on_main_rank(rec.fingerprint)
    # rank 0 first: it empties a folder of another reconstruction before anyone reads it
    writer = distributed.on_main_rank(SolveStore, folder, fingerprint, rec.device)
    return writer if distributed.is_main() else SolveStore(folder, fingerprint, rec.device,
                                                           writer=False)


def solve_halves(rec: Reconstruction, store: SolveStore, wanted: dict[str, list[str]]) -> Solved:
    """Solve the ``wanted`` kinds (``flex``, ``noflex``) of each half set name (``A``,
    ``B``), reusing what ``store`` holds of an interrupted run."""
    solved = Solved(maps={k: [] for kinds in wanted.values() for k in kinds})
    mine = {name: distributed.contiguous_block(np.flatnonzero(rec.half == HALF_NAMES.index(name)))
            for name in wanted}
    scratch = None
    try:
        for name, kinds in wanted.items():
            t0 = time.time()
            # every rank reads the same files here: rank 0 writes them only after the
            # collectives of this half, which no rank passes before reading
            records = {kind: store.load(f"{kind}_{name}") for kind in kinds}
            if all(r is not None and r.get("done") for r in records.values()):
                log.info("half %s: reusing the %s solve(s) an interrupted run finished", name,
                         " and ".join(kinds))
                for kind, r in records.items():
                    solved.add(kind, name, r, rec.op)
                continue
            if scratch is None and rec.params.scratch_dir:
                rows = rec.particles.source_rows[np.concatenate(list(mine.values()))]
                scratch = ScratchCopy(rec.particles.source, rows, rec.params.scratch_dir)
            table = scratch.table if scratch else rec.particles.source
            solve_one_half(rec, store, name, mine[name], records, table, solved, t0)
            log.info("half %s done in %.0f s; peak RSS %.2f GiB", name, time.time() - t0,
                     peak_rss_GiB())
    finally:
        if scratch:
            scratch.cleanup()
    return solved


def solve_one_half(rec: Reconstruction, store: SolveStore, name: str, positions: np.ndarray,
                   records: dict, table, solved: Solved, t0: float) -> None:
    """Half ``name``: its Wiener start (or the stored one), then each kind's solve (or the
    stored finished one), streaming this rank's ``positions`` from ``table``."""
    p, particles = rec.params, rec.particles
    stream = ImageStream(table, particles.source_rows[positions], rec.box, rec.info.image_sign,
                         rec.device, in_ram=p.in_ram, label=f"half {name}: ")
    try:
        start = store.load(f"start_{name}")
        if start is None:
            x0 = wiener_start(rec.op, particles, positions, stream, p.batch_size,
                              label=f"half {name}: ")
            store.save(f"start_{name}", {"x": x0})
        else:
            x0 = start["x"]
            log.info("half %s: reusing the Wiener start map of an interrupted run", name)
        solved.timings[f"start_half_{name}_s"] = round(time.time() - t0, 2)
        for kind, r in records.items():
            if r is not None and r.get("done"):
                log.info("%s half %s: reusing the solve an interrupted run finished", kind, name)
            else:
                r = solve_kind(rec, store, kind, name, positions, stream, x0, r)
            solved.add(kind, name, r, rec.op)
    finally:
        stream.close()


def solve_kind(rec: Reconstruction, store: SolveStore, kind: str, name: str, positions, stream,
               x0, state: dict | None) -> dict:
    """One L-BFGS solve from ``x0`` (or from an interrupted solve's ``state``); saves and
    returns its finished record."""
    t1 = time.time()
    p = rec.params
    obj = HalfObjective(rec.op, rec.particles, positions, stream, rec.displacements(kind),
                        p.ridge, p.batch_size, label=f"{kind} half {name}: ")
    if state is not None:  # an interrupted solve: continue its count of passes
        obj.passes = {k: list(v) for k, v in state["passes"].items()}
    key = f"{kind}_{name}"
    res = solve_half(obj, x0, p.iterations, state=state,
                     on_iteration=lambda st: store.save_progress(
                         key, {"done": False, **st, "passes": obj.passes}))
    done = {"done": True, "x": res.x, "history": res.history, "passes": obj.passes,
            "seconds": round(time.time() - t1, 2)}
    store.save(key, done)
    return done
