"""What every solve of a reconstruction shares: checked parameters and inputs, the half
sets, the mesh at the reconstruction box and the operator (:class:`Reconstruction`).

:func:`prepare_reconstruction` is the common start of ``flexcore reconstruct`` and of its
one-solve form (:mod:`flexcore.stages.reconstruct.solves`); under torchrun every rank builds the
same :class:`Reconstruction` and rank 0 alone checks the output folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...core.errors import InputFileError
from ...core.half_sets import join_copies, random_split
from ...core.io import ImageSource
from ...core.prep_info import PrepInfo
from ...core.trained import load_trained_model
from ...core.utils import distributed
from ...core.utils.logging import get_logger
from ...core.utils.memory import peak_rss_GiB
from ...core.utils.outputs import prepare_outputs
from .aberrations import OpticsAberrations
from .flex import FlexOperator
from .params import ReconParams
from .particles import load_recon_particles
from .resume import recon_fingerprint

log = get_logger("flexcore.recon")
HALF_NAMES = ("A", "B")


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


def choose_halves(half_set: np.ndarray, resplit: bool, seed: int,
                  image_ids: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Half set (0/1) per particle: the input split, or a seeded random one (of images when
    ``image_ids`` is given: copies of one image stay in one half set, see
    :mod:`flexcore.core.half_sets`)."""
    n = len(half_set)
    if resplit or (half_set < 0).any() or len(np.unique(half_set)) < 2:
        if not resplit:
            log.warning("the prepared particles carry no complete half-set split; drawing a "
                        "random one (seed %d)", seed)
        if image_ids is not None:
            half, _ = join_copies(random_split(image_ids, seed), image_ids)
            return half, f"random (seed {seed})"
        rng = np.random.default_rng(seed)
        return rng.permutation(np.arange(n) % 2).astype(np.int8), f"random (seed {seed})"
    counts = np.bincount(half_set, minlength=2)
    if abs(int(counts[0]) - int(counts[1])) > 0.1 * n:
        log.warning("the input half sets are unequal (%d vs %d particles); continuing",
                    counts[0], counts[1])
    return half_set.astype(np.int8), "input"


@dataclass
class Reconstruction:
    """What every solve of one reconstruction shares: inputs, half sets, grid, operator."""

    checkpoint: Path
    prep_dir: Path
    params: ReconParams
    device: torch.device
    info: PrepInfo
    model: object  # flexcore.core.trained.TrainedModel
    particles: object  # flexcore.stages.reconstruct.particles.ReconParticles
    stacks: list
    half: np.ndarray  # (N,) 0/1 per prepared particle
    half_origin: str
    mesh_hi: object  # the mesh upscaled to the reconstruction box
    noise_var: float
    aberrations: OpticsAberrations | None
    op: FlexOperator

    @property
    def box(self) -> int:
        return self.op.box

    @property
    def scale(self) -> float:
        return self.box / self.model.box

    def displacements(self, kind: str):
        """``idx ↦ (B, Nv, 3)`` displacements at the reconstruction box for ``flex``;
        ``None`` (zero flow) for ``noflex``."""
        if kind == "noflex":
            return None
        latents = torch.as_tensor(self.model.latents, dtype=torch.float32)

        def flex_displacements(idx):
            z = latents[torch.as_tensor(idx, dtype=torch.long)]
            return self.model.displacements(z, self.device) * self.scale

        return flex_displacements

    def fingerprint(self) -> dict:
        """:func:`~flexcore.stages.reconstruct.resume.recon_fingerprint` of this reconstruction."""
        return recon_fingerprint(self.checkpoint, self.model.mesh_path, self.prep_dir,
                                 self.stacks, self.half, self.params.record(), self.device)

    def describe(self) -> dict:
        """The record's description of the grid, data and split."""
        info, half = self.info, self.half
        return {
            "checkpoint": str(self.checkpoint.resolve()), "prep_dir": str(self.prep_dir.resolve()),
            "epoch": self.model.epoch, "box": self.box, "pixel_size_A": info.original_pixel_size_A,
            "train_box": self.model.box, "scale": self.scale, "mask_voxels": self.op.n_voxels,
            "noise_variance": self.noise_var, "n_particles": len(self.particles),
            "half_sets": self.half_origin,
            "half_counts": [int((half == 0).sum()), int((half == 1).sum())],
            "aberrations": None if self.aberrations is None
            else self.aberrations.summary(self.particles.source.optics),
            "device": str(self.device), "ranks": distributed.world_size(),
        }


def prepare_reconstruction(checkpoint, prep_dir, out_dir, outputs, params: ReconParams,
                           dev: torch.device) -> tuple[Reconstruction, Path]:
    """Read and check the inputs, check the output folder (rank 0), choose the half sets
    and build the operator at the reconstruction box."""
    prep_dir = Path(prep_dir)
    info = PrepInfo.read(prep_dir)
    model = load_trained_model(checkpoint, params.mesh, device=dev)
    particles = load_recon_particles(prep_dir, info)
    check_model_matches_prep(model, info, checkpoint, len(particles))
    stacks = source_stacks(particles)
    prep_files = {f"prepared {n}": prep_dir / n for n in ("particles.star", "prep.json")}
    out = distributed.on_main_rank(prepare_outputs, "reconstruct", out_dir, outputs, {
        "checkpoint": checkpoint, "mesh": model.mesh_path, **prep_files,
        "source particle file": info.source_particles,
        **{f"image stack {p.name}": p for p in stacks}})
    half, half_origin = choose_halves(particles.half_set, params.resplit, params.seed,
                                      particles.image_ids)
    for h, name in enumerate(HALF_NAMES):
        if not (half == h).any():
            raise InputFileError(prep_dir / "particles.star",
                                 f"half set {name} has no particles; both halves need particles")
    box, psize = info.crop_box, info.original_pixel_size_A
    scale = box / model.box
    mesh_hi = model.mesh if box == model.box else model.mesh.upscale(box)
    noise_var = info.noise_variance * scale**2
    abr = None
    if params.aberrations:
        abr = OpticsAberrations(particles.source.optics, box, psize, dev)
        log.info("aberrations: %s", abr.summary(particles.source.optics) if abr.any
                 else "none in the optics table (beam tilt and Zernike terms are all zero)")
    op = FlexOperator(mesh_hi, psize, noise_var, dev, aberrations=abr)
    ranks = f" on {distributed.world_size()} ranks" if distributed.world_size() > 1 else ""
    log.info("reconstructing %d particles (halves %d / %d, %s) at box %d (%.4g Å/px, Nyquist "
             "%.2f Å); mesh upscaled ×%.3g to %d mask voxels; %d L-BFGS iterations; device %s%s",
             len(particles), int((half == 0).sum()), int((half == 1).sum()), half_origin, box,
             psize, 2 * psize, scale, op.n_voxels, params.iterations, dev, ranks)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    rec = Reconstruction(Path(checkpoint), prep_dir, params, dev, info, model, particles, stacks,
                         half, half_origin, mesh_hi, noise_var, abr, op)
    return rec, out


def source_stacks(particles) -> list[Path]:
    """The stack files (resolved) that the reconstruction reads its images from."""
    source = ImageSource(particles.source)
    try:
        names = np.unique(np.asarray(particles.source.image_paths, dtype=object)[particles.source_rows])
        return [source.reader(str(n)).path for n in names]
    finally:
        source.close()


def memory_record(dev: torch.device) -> dict:
    """Peak resident memory of this process and, on CUDA, peak GPU memory (GiB)."""
    memory = {"peak_rss_GiB": round(peak_rss_GiB(), 3)}
    if dev.type == "cuda":
        memory["peak_gpu_GiB"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 3)
    return memory
