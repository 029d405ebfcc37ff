"""Particles for the high-resolution reconstruction: metadata, streamed images, caches.

The prepared particles (``prep_dir/particles.star``) give poses, shifts, CTFs, half sets
and the link ``_flexSourceIndex`` to the user's original file, whose full-resolution
stacks are read here (relative paths resolved against prep's ``project_dir`` when it had
one): each image is multiplied by prep's ``image_sign`` and cropped in real
space about ``N // 2`` to prep's ``crop_box``. Images are read in batches from the
memory-mapped stacks (CPU memory does not grow with the particle count), or — with
``in_ram`` — one half's images are loaded once when they fit in the available memory.
``scratch_dir`` copies the stack files to a local folder first (e.g. ``$TMPDIR`` on a
cluster node) and reads from there; the copies are removed at the end.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ...core.errors import ConfigError, InputFileError
from ...core.fourier import center_crop
from ...core.half_sets import image_groups
from ...core.io import ImageSource, ParticleTable, read_particles, resolve_image_path
from ...core.prep_info import PrepInfo
from ...core.utils.logging import get_logger
from ...core.utils.memory import available_memory_bytes

log = get_logger("flexcore.recon.particles")


@dataclass
class ReconParticles:
    """Per-particle inputs of the reconstruction, in prepared-particle order.

    Attributes
    ----------
    rotations : ``(N, 3, 3)`` float32 RELION matrices ``A``.
    shifts_A : ``(N, 2)`` float32 RELION origins (Å).
    ctf : CTF parameters of :func:`~flexcore.core.ctf.calculate_ctf_2d` as ``(N,)`` float32
        tensors (defocus U/V, angle, voltage, Cs, amplitude contrast, phase shift, B, scale).
    optics_group : ``(N,)`` int64 optics group of each particle in ``source.optics``.
    half_set : ``(N,)`` int8, 0 or 1.
    source_rows : ``(N,)`` int64 rows of ``source`` (the full-resolution file).
    source : the user's original :class:`~flexcore.core.io.ParticleTable`.
    image_ids : ``(N,)`` int64 image of each particle
        (:func:`~flexcore.core.half_sets.image_groups`: copies of one image share an id).
    """

    rotations: torch.Tensor
    shifts_A: torch.Tensor
    ctf: dict
    optics_group: np.ndarray
    half_set: np.ndarray
    source_rows: np.ndarray
    source: ParticleTable
    image_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.source_rows)


def load_recon_particles(prep_dir, info: PrepInfo) -> ReconParticles:
    """Read the prepared particles and link them to the full-resolution source file.

    Raises ``InputFileError`` naming the file when the source is missing, has fewer rows
    than the links ask for, or its box / pixel size disagree with ``prep.json``.
    """
    star = Path(prep_dir) / "particles.star"
    prepared = read_particles(star)
    prepared.require_poses()
    raw = prepared.raw
    if raw is None or "flexSourceIndex" not in getattr(raw, "columns", []):
        raise InputFileError(star, "has no _flexSourceIndex column (not written by flexcore prep)")
    rows = np.asarray(raw["flexSourceIndex"], dtype=np.int64)
    src_path = Path(info.source_particles)
    if not src_path.exists():
        raise InputFileError(src_path, "the full-resolution particle file named in prep.json "
                                       "(source_particles) does not exist")
    source = read_particles(src_path, pixel_size_A=info.original_pixel_size_A,
                            project_dir=info.project_dir)
    if rows.max(initial=-1) >= len(source) or rows.min(initial=0) < 0:
        raise InputFileError(src_path, f"has {len(source)} particles but the prepared particles "
                                       f"link to row {int(rows.max()) + 1}")
    if source.box != info.original_box:
        raise InputFileError(src_path, f"images are {source.box} px but prep.json says "
                                       f"original_box {info.original_box}")
    psize = info.original_pixel_size_A
    if abs(source.pixel_size_A - psize) > 1e-3 * psize:
        raise InputFileError(src_path, f"pixel size {source.pixel_size_A:.4f} Å differs from "
                                       f"prep.json's original_pixel_size_A {psize:.4f} Å")
    og = prepared.optics_group

    def per_group(attr):
        return torch.tensor([getattr(prepared.optics[g], attr) for g in og], dtype=torch.float32)

    def col(a):
        return torch.tensor(np.asarray(a), dtype=torch.float32)

    ctf = {"defocus_u_A": col(prepared.defocus_u_A), "defocus_v_A": col(prepared.defocus_v_A),
           "defocus_angle_deg": col(prepared.defocus_angle_deg),
           "voltage_kv": per_group("voltage_kv"),
           "spherical_aberration_mm": per_group("spherical_aberration_mm"),
           "amplitude_contrast": per_group("amplitude_contrast"),
           "phase_shift_deg": col(prepared.phase_shift_deg), "bfactor_A2": col(prepared.bfactor_A2),
           "scale": col(prepared.ctf_scale)}
    return ReconParticles(
        rotations=torch.tensor(prepared.rotations, dtype=torch.float32),
        shifts_A=torch.tensor(prepared.shifts_A, dtype=torch.float32), ctf=ctf,
        optics_group=source.optics_group[rows].astype(np.int64),
        half_set=prepared.half_set.astype(np.int8), source_rows=rows, source=source,
        image_ids=source_image_ids(source, rows))


def source_image_ids(source: ParticleTable, rows: np.ndarray) -> np.ndarray:
    """Image id of each linked row of ``source`` (copies of one image share one)."""
    images = ImageSource(source)
    try:
        return image_groups(source, images, rows)
    finally:
        images.close()


class ScratchCopy:
    """Copy the stack files a table reads to ``scratch_dir`` and point a copy of the table
    at them; :meth:`cleanup` removes the copies. Checks the free space first."""

    def __init__(self, table: ParticleTable, rows: np.ndarray, scratch_dir):
        self.folder: Path | None = None
        root = Path(table.source_path).parent if table.source_path else Path(".")
        names = np.unique(np.asarray(table.image_paths, dtype=object)[rows])
        files = []
        for name in names:
            found = resolve_image_path(str(name), root, table.project_dir or None)
            if found is None:
                raise InputFileError(table.source_path, f"image stack {name!r} not found")
            files.append((str(name), found))
        need = sum(f.stat().st_size for _, f in files)
        base = Path(scratch_dir)
        try:
            base.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"scratch_dir = {str(scratch_dir)!r} cannot be created: "
                              f"{exc}") from exc
        free = shutil.disk_usage(base).free
        if need > 0.95 * free:
            raise ConfigError(f"scratch_dir = {str(scratch_dir)!r} has {free / 2**30:.2f} GiB free "
                              f"but the stacks need {need / 2**30:.2f} GiB")
        t0 = time.time()
        self.folder = Path(tempfile.mkdtemp(prefix="flexcore_recon_", dir=base))
        mapping = {}
        try:
            for i, (name, path) in enumerate(files):
                target = self.folder / f"{i:05d}_{path.name}"
                shutil.copyfile(path, target)
                mapping[name] = str(target)
        except BaseException:
            self.cleanup()
            raise
        paths = np.array([mapping.get(str(p), str(p)) for p in table.image_paths], dtype=object)
        self.table = replace(table, image_paths=paths)
        log.info("copied %d stack file(s) (%.2f GiB) to scratch %s in %.1f s", len(files),
                 need / 2**30, self.folder, time.time() - t0)

    def cleanup(self) -> None:
        if self.folder is not None and self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)
            log.info("removed the scratch copies in %s", self.folder)
        self.folder = None


class ImageStream:
    """Full-resolution images of a set of particles, batch by batch, on a device.

    Parameters
    ----------
    table : the source :class:`~flexcore.core.io.ParticleTable` (full-resolution stacks).
    rows : ``(n,)`` source rows, in the order batches refer to them (position ``p`` of a
        batch is ``rows[p]``).
    crop_box : real-space crop about the box centre (prep's ``crop_box``).
    sign : multiplies every image (prep's ``image_sign``).
    in_ram : load all ``n`` images once (float32) when they fit in 60 % of the available
        memory; otherwise say why and stream.
    """

    def __init__(self, table: ParticleTable, rows: np.ndarray, crop_box: int, sign: float,
                 device, in_ram: bool = False, label: str = ""):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.crop_box = int(crop_box)
        self.sign = float(sign)
        self.device = torch.device(device)
        self.source = ImageSource(table)
        self.source.check_all_present()
        self.cache: torch.Tensor | None = None
        self.bytes_read = 0
        if in_ram:
            need = len(self.rows) * self.crop_box**2 * 4
            have = available_memory_bytes()
            if have is not None and need > 0.6 * have:
                log.warning("%sin_ram: %d images of %d² px need %.2f GiB but only %.2f GiB is "
                            "available (60 %% limit); streaming from disk instead", label,
                            len(self.rows), self.crop_box, need / 2**30, have / 2**30)
            else:
                t0 = time.time()
                self.cache = torch.empty((len(self.rows), self.crop_box, self.crop_box))
                for s in range(0, len(self.rows), 1024):
                    self.cache[s:s + 1024] = self._read_rows(self.rows[s:s + 1024])
                log.info("%sloaded %d images (%.2f GiB) into RAM in %.1f s", label,
                         len(self.rows), need / 2**30, time.time() - t0)

    def __len__(self) -> int:
        return len(self.rows)

    def _read_rows(self, rows: np.ndarray) -> torch.Tensor:
        img = torch.from_numpy(self.source.read(rows))
        self.bytes_read += img.numel() * 4
        return center_crop(img, self.crop_box, 2) * self.sign

    def read(self, positions: np.ndarray) -> torch.Tensor:
        """Images ``(B, D, D)`` float32 on the device for batch ``positions``."""
        if self.cache is not None:
            img = self.cache[torch.as_tensor(positions, dtype=torch.long)]
        else:
            img = self._read_rows(self.rows[positions]).contiguous()
        return img.to(self.device, non_blocking=True)

    def close(self) -> None:
        self.source.close()
        self.cache = None
