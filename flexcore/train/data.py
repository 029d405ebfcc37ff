"""Prepared particles held in memory for training, with their poses, shifts and CTFs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..ctf import calculate_ctf_2d
from ..errors import InputFileError
from ..io import ImageSource, read_particles
from ..prep_info import PrepInfo
from ..utils.logging import get_logger
from ..utils.memory import available_memory_bytes

log = get_logger("flexcore.train.data")


def check_memory(n: int, box: int, float16: bool, path) -> int:
    """Bytes needed to hold ``n`` images of ``box²``; raise before loading if they won't fit."""
    need = n * box * box * (2 if float16 else 4)
    have = available_memory_bytes()
    if have is not None and need > 0.8 * have:
        raise InputFileError(
            path, f"holding {n} particles of {box}² px needs {need / 2**30:.2f} GiB but only "
                  f"{have / 2**30:.2f} GiB is available; use a smaller training box, fewer "
                  f"particles, or images_float16 (halves it)")
    return need


@dataclass
class TrainingData:
    """All prepared particles of one training run (on the CPU; batches move to the device).

    ``images (N, D, D)``, ``rotations (N, 3, 3)``, ``shifts_A (N, 2)``, CTF parameters per
    particle, and the ``prep.json`` record (sizes, contrast scale, noise level).
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

    @classmethod
    def load(cls, prep_dir, float16: bool = False) -> TrainingData:
        prep_dir = Path(prep_dir)
        info = PrepInfo.read(prep_dir)
        star = prep_dir / "particles.star"
        table = read_particles(star)
        table.require_poses()
        n, box = len(table), table.box
        check_memory(n, box, float16, star)
        source = ImageSource(table)
        source.check_all_present()
        images = torch.empty((n, box, box), dtype=torch.float16 if float16 else torch.float32)
        for s in range(0, n, 4096):
            idx = np.arange(s, min(n, s + 4096))
            images[s:s + len(idx)] = torch.from_numpy(source.read(idx))
        source.close()
        if not torch.isfinite(images.float()).all():
            raise InputFileError(star, "the prepared stack contains NaN or infinite pixels")
        og = table.optics_group
        optics = table.optics

        def per_group(attr):
            return torch.tensor([getattr(optics[g], attr) for g in og], dtype=torch.float32)

        ctf = {
            "defocus_u_A": torch.tensor(table.defocus_u_A, dtype=torch.float32),
            "defocus_v_A": torch.tensor(table.defocus_v_A, dtype=torch.float32),
            "defocus_angle_deg": torch.tensor(table.defocus_angle_deg, dtype=torch.float32),
            "voltage_kv": per_group("voltage_kv"),
            "spherical_aberration_mm": per_group("spherical_aberration_mm"),
            "amplitude_contrast": per_group("amplitude_contrast"),
            "phase_shift_deg": torch.tensor(table.phase_shift_deg, dtype=torch.float32),
            "bfactor_A2": torch.tensor(table.bfactor_A2, dtype=torch.float32),
            "scale": torch.tensor(table.ctf_scale, dtype=torch.float32),
        }
        log.info("loaded %d prepared particles (%d px, %.3g Å/px) into memory (%.2f GiB)", n, box,
                 table.pixel_size_A, images.element_size() * images.nelement() / 2**30)
        return cls(images, torch.tensor(table.rotations, dtype=torch.float32),
                   torch.tensor(table.shifts_A, dtype=torch.float32), ctf, table.half_set.copy(),
                   box, table.pixel_size_A, info, table)

    def __len__(self) -> int:
        return self.images.shape[0]

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
