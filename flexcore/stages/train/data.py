"""Prepared particles held in memory for training, with their poses, shifts and CTFs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...core.ctf import calculate_ctf_2d
from ...core.errors import InputFileError
from ...core.io import ImageSource, read_particles
from ...core.prep_info import PrepInfo
from ...core.utils.logging import get_logger
from ...core.utils.memory import available_memory_bytes

log = get_logger("flexcore.train.data")


def check_memory(n: int, box: int, float16: bool, path, copies: int = 1) -> int:
    """Bytes needed to hold ``n`` images of ``box²`` (in each of ``copies`` processes on
    this node, e.g. the ranks of a data-parallel run); raise before loading if they won't
    fit."""
    need = n * box * box * (2 if float16 else 4)
    have = available_memory_bytes()
    if have is not None and copies * need > 0.8 * have:
        each = f" in each of {copies} ranks on this node" if copies > 1 else ""
        raise InputFileError(
            path, f"holding {n} particles of {box}² px{each} needs {copies * need / 2**30:.2f} "
                  f"GiB but only {have / 2**30:.2f} GiB is available; use a smaller training "
                  f"box, fewer particles, or images_float16 (halves it)")
    return need


@dataclass
class TrainingData:
    """The prepared particles one process trains on (on the CPU; batches move to the device).

    ``images (n, D, D)``, ``rotations (n, 3, 3)``, ``shifts_A (n, 2)``, CTF parameters per
    particle and ``half_set (n,)`` of the ``n`` particles held — all of them, or one rank's
    shard — and the ``prep.json`` record (sizes, contrast scale, noise level). ``rows (n,)``
    are their indices among the ``n_total`` prepared particles (sorted); ``table`` is the
    whole prepared table (metadata of every particle). Batch indices are positions in the
    held rows.
    """

    images: torch.Tensor
    rotations: torch.Tensor
    shifts_A: torch.Tensor
    ctf: dict
    half_set: np.ndarray
    box: int
    pixel_size_A: float
    info: PrepInfo
    table: object
    rows: np.ndarray | None = None
    n_total: int | None = None

    @classmethod
    def load(cls, prep_dir, float16: bool = False, rows=None, copies: int = 1) -> TrainingData:
        """Read the prepared particles: all of them, or only ``rows`` (sorted indices, e.g.
        one rank's shard, or a function of the number of prepared particles that gives
        them); ``copies`` processes on this node load a part of this size (the memory check
        counts them all)."""
        prep_dir = Path(prep_dir)
        info = PrepInfo.read(prep_dir)
        star = prep_dir / "particles.star"
        table = read_particles(star)
        table.require_poses()
        n_total, box = len(table), table.box
        if callable(rows):
            rows = rows(n_total)
        rows = np.arange(n_total) if rows is None else np.asarray(rows, dtype=np.int64)
        n = len(rows)
        check_memory(n, box, float16, star, copies)
        source = ImageSource(table)
        source.check_all_present()
        images = torch.empty((n, box, box), dtype=torch.float16 if float16 else torch.float32)
        for s in range(0, n, 4096):
            idx = rows[s:s + 4096]
            images[s:s + len(idx)] = torch.from_numpy(source.read(idx))
        source.close()
        if not torch.isfinite(images.float()).all():
            raise InputFileError(star, "the prepared stack contains NaN or infinite pixels")
        og = table.optics_group[rows]
        optics = table.optics

        def per_group(attr):
            return torch.tensor([getattr(optics[g], attr) for g in og], dtype=torch.float32)

        def col(values):
            return torch.tensor(np.asarray(values)[rows], dtype=torch.float32)

        ctf = {
            "defocus_u_A": col(table.defocus_u_A),
            "defocus_v_A": col(table.defocus_v_A),
            "defocus_angle_deg": col(table.defocus_angle_deg),
            "voltage_kv": per_group("voltage_kv"),
            "spherical_aberration_mm": per_group("spherical_aberration_mm"),
            "amplitude_contrast": per_group("amplitude_contrast"),
            "phase_shift_deg": col(table.phase_shift_deg),
            "bfactor_A2": col(table.bfactor_A2),
            "scale": col(table.ctf_scale),
        }
        held = f"{n} of {n_total}" if n < n_total else f"{n}"
        log.info("loaded %s prepared particles (%d px, %.3g Å/px) into memory (%.2f GiB)", held,
                 box, table.pixel_size_A, images.element_size() * images.nelement() / 2**30)
        return cls(images, col(table.rotations), col(table.shifts_A), ctf,
                   table.half_set[rows].copy(), box, table.pixel_size_A, info, table, rows,
                   n_total)

    def __len__(self) -> int:
        return self.images.shape[0]

    def positions_of(self, particles: np.ndarray) -> np.ndarray:
        """Positions in the held rows of those of ``particles`` (prepared-order indices,
        sorted) that this object holds."""
        particles = np.asarray(particles, dtype=np.int64)
        held = particles[np.isin(particles, self.rows)]
        return np.searchsorted(self.rows, held)

    def batch(self, idx, device, box: int | None = None):
        """Images, rotations, shifts (pixels of the working box) and CTFs (working box) of
        particles ``idx``; the working box's pixel size is ``pixel_size_A · D / box``."""
        idx_t = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        box = box or self.box
        psize = self.pixel_size_A * self.box / box
        images = self.images[idx_t].to(device=device, dtype=torch.float32, non_blocking=True)
        rot = self.rotations[idx_t].to(device)
        shifts = (self.shifts_A[idx_t] / psize).to(device)
        ctf = calculate_ctf_2d(pixel_size_A=psize, image_size=box,
                               **{k: v[idx_t].to(device) for k, v in self.ctf.items()})
        return images, rot, shifts, ctf
