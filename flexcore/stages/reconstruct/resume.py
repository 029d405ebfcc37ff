"""Partial results of a reconstruction, so an interrupted run continues where it stopped.

A reconstruction is four independent solves (``flex`` and ``noflex`` for half sets A and
B) from two Wiener start maps. :class:`SolveStore` keeps, in ``<out_dir>/partial/``, each
start map, each finished solve, and the running solve's L-BFGS state after an iteration
(:func:`~flexcore.stages.reconstruct.lbfgs.minimize_quadratic`'s ``on_iteration``) at most every
:data:`PROGRESS_INTERVAL_S` seconds: at box 256 the state is ~96 MB (x, gradient and 8
curvature pairs of 1.3 M voxels) and takes 0.1–0.7 s to write, against ~4 s per iteration
on an H100, so saving every iteration could cost up to 15 %; every 30 s costs ≤ 2 %. A run
started again with the same inputs and parameters reuses what is there — a finished half
is not recomputed, a killed solve continues at its last iteration and ends exactly where
the uninterrupted one would — and removes the folder when it has written its outputs.

The folder is valid for one *fingerprint* (:func:`recon_fingerprint`): the SHA-256 of the
checkpoint, the mesh and the prepared particles, the source particle file and its stacks'
sizes and modification times, the half-set split and the parameters that change the
maps. A different fingerprint empties it, with a log line that says so.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ...core.checkpoint import plain
from ...core.utils.atomic import atomic_path
from ...core.utils.files import file_sha256
from ...core.utils.logging import get_logger

log = get_logger("flexcore.recon")

# seconds between two saves of a running solve's L-BFGS state (a kill loses at most this)
PROGRESS_INTERVAL_S = 30.0
# run_reconstruct parameters that change the maps (the others only move data around)
MAP_PARAMETERS = ("iterations", "batch_size", "ridge", "resplit", "seed", "aberrations")


def recon_fingerprint(checkpoint, mesh_path, prep_dir, stacks: list[Path], half: np.ndarray,
                      params: dict, device) -> dict:
    """The record that identifies a reconstruction's partial results (module docstring)."""
    prep_dir = Path(prep_dir)
    return {
        "checkpoint_sha256": file_sha256(checkpoint),
        "mesh_sha256": file_sha256(mesh_path) if mesh_path else None,
        "prepared_sha256": file_sha256(prep_dir / "particles.star"),
        "stacks": [[str(Path(p).resolve()), Path(p).stat().st_size, Path(p).stat().st_mtime_ns]
                   for p in stacks],
        "half_sets_sha256": hashlib.sha256(np.ascontiguousarray(half).tobytes()).hexdigest(),
        "parameters": {k: params[k] for k in MAP_PARAMETERS},
        "device": torch.device(device).type,
    }


class SolveStore:
    """Start maps, finished solves and running L-BFGS states of one reconstruction.

    Parameters
    ----------
    folder : where they live (``<out_dir>/partial``).
    fingerprint : :func:`recon_fingerprint` of this run.
    device : where loaded tensors go.
    writer : this process keeps the folder (checks the fingerprint, saves, clears it);
        ``False`` only reads (the ranks other than 0 of a data-parallel run).
    """

    def __init__(self, folder, fingerprint: dict, device, writer: bool = True):
        self.folder = Path(folder)
        self.device = torch.device(device)
        self.writer = writer
        self._last_progress = -float("inf")
        if not writer:
            return
        text = json.dumps(fingerprint, sort_keys=True, default=str)
        record = self.folder / "fingerprint.json"
        if self.folder.is_dir():
            old = record.read_text() if record.is_file() else None
            if old != text:
                log.info("%s holds partial results of a reconstruction with other inputs or "
                         "parameters; removing them", self.folder)
                shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if not record.is_file():
            with atomic_path(record) as tmp:
                tmp.write_text(text)

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.pt"

    def load(self, name: str) -> dict | None:
        """The saved record ``name`` (tensors on the device), or ``None``."""
        path = self._path(name)
        if not path.is_file():
            return None
        try:
            # weights_only: tensors, numbers, lists and dicts only; nothing in the file runs
            return torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # damaged or foreign (not our plain records): recompute
            log.warning("%s cannot be read (%s); recomputing it", path,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return None

    def save_progress(self, name: str, record: dict) -> None:
        """:meth:`save` a running solve's state, unless one was saved less than
        :data:`PROGRESS_INTERVAL_S` seconds ago."""
        if not self.writer or time.monotonic() - self._last_progress < PROGRESS_INTERVAL_S:
            return
        self.save(name, record)
        self._last_progress = time.monotonic()

    def save(self, name: str, record: dict) -> None:
        """Write record ``name`` atomically (tensors moved to the CPU); a reader does not."""
        if not self.writer:
            return

        def cpu(v):
            if torch.is_tensor(v):
                return v.detach().cpu()
            if isinstance(v, list):
                return [cpu(a) for a in v]
            return v

        with atomic_path(self._path(name)) as tmp, open(tmp, "wb") as fh:
            torch.save(plain({k: cpu(v) for k, v in record.items()}), fh)

    def finished(self, name: str) -> dict | None:
        """The record of a finished solve ``name``, or ``None``."""
        record = self.load(name)
        return record if record is not None and record.get("done") else None

    def clear(self) -> None:
        """Remove the folder (the reconstruction's outputs are written)."""
        if self.writer:
            shutil.rmtree(self.folder, ignore_errors=True)
