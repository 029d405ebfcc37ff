"""``flexcore prep``: particles and consensus map at the training box.

Reads any particle file (RELION 3.0/3.1+/5 STAR or cryoSPARC ``.cs``) and the consensus
map, checks they agree (box, pixel size), optionally crops the box in real space (the box
for high-resolution reconstruction) and Fourier-crops particles and map to the training
box. It measures the particles' contrast sign and scale against projections of the
consensus map (flipping inverted particles) and the residual noise spectrum, and writes:

* ``particles.star`` + ``particles.mrcs`` — prepared particles (RELION 3.1; shifts in Å;
  ``_flexSourceIndex`` links each row to the input file's row, i.e. the full-resolution image);
* ``consensus.mrc`` — the consensus map at the training box;
* ``prep.json`` — sizes, pixel sizes, sign/scale, noise, half-set origin and provenance.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .ctf import ctf_for_particles
from .errors import ConfigError, InputFileError
from .fourier import center_crop, fourier_crop
from .io import ImageSource, StackWriter, read_map, read_particles, write_map, write_star
from .model.image_model import ImageFormation
from .prep_info import PrepInfo
from .projection import project_volume
from .utils.logging import get_logger

log = get_logger("flexcore.prep")


def check_map_matches(map_path, volume: np.ndarray, voxel_A: float, box: int,
                      pixel_size_A: float) -> None:
    """Raise naming the map when its box or voxel size disagrees with the particles'."""
    if volume.shape[0] != box:
        raise InputFileError(map_path, f"map box {volume.shape[0]} px does not match the "
                                       f"particles' {box} px")
    if voxel_A > 0 and abs(voxel_A - pixel_size_A) > 0.01 * pixel_size_A:
        raise InputFileError(map_path, f"map voxel size {voxel_A:.4f} Å does not match the "
                                       f"particles' pixel size {pixel_size_A:.4f} Å")


def estimate_contrast(images: torch.Tensor, projections_ft: torch.Tensor,
                      model: ImageFormation, k_max: float) -> tuple[float, np.ndarray, float]:
    """Least-squares scale ``α`` of images against model spectra (band ``|k| ≤ k_max``),
    residual noise power per shell (normalised to the white level) and the white-noise
    pixel variance of the residual."""
    obs = model.observed(images)
    band = model.band(k_max)
    num = ((obs * projections_ft.conj()).real * band).sum()
    den = ((projections_ft.abs() ** 2) * band).sum()
    alpha = float(num / den.clamp_min(1e-30))
    resid = obs - alpha * projections_ft
    power = (resid.abs() ** 2).mean(0) / model.box**2  # per coefficient, real-space units
    shell = model.shell.flatten()
    n_shell = model.box // 2 + 1
    keep = shell < n_shell
    sums = torch.zeros(n_shell).index_add_(0, shell[keep], power.flatten()[keep])
    counts = torch.bincount(shell[keep], minlength=n_shell).clamp_min(1)
    per_shell = (sums / counts).numpy()
    sigma2 = float(np.mean(per_shell[1:]))
    return alpha, per_shell / sigma2, sigma2


def run_prep(
    particles,
    consensus_map,
    out_dir,
    *,
    train_box: int = 128,
    crop_box: int | None = None,
    n_particles: int | None = None,
    pixel_size_A: float | None = None,
    resplit: bool = False,
    auto_sign: bool = True,
    seed: int = 0,
    batch: int = 512,
) -> PrepInfo:
    """Prepare particles for training (see the module docstring for the outputs).

    Parameters
    ----------
    particles : RELION ``.star`` or cryoSPARC ``.cs`` with a consensus refinement's poses.
    consensus_map : the consensus map (same box and pixel size as the particles).
    train_box : training box (Fourier crop target, even, ≤ the crop box).
    crop_box : real-space crop of the particles and map first (None = keep the box).
    n_particles : keep the first ``n`` particles (None = all).
    pixel_size_A : pixel size for RELION 3.0 files that do not carry one.
    resplit : draw a new seeded random half-set split instead of the input's.
    auto_sign : flip particles whose contrast is inverted relative to the map.
    """
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = read_particles(particles, pixel_size_A=pixel_size_A)
    table.require_poses()
    box, psize = table.box, table.pixel_size_A
    crop = crop_box or box
    if crop > box or crop % 2:
        raise ConfigError(f"crop_box must be even and ≤ the particle box {box}, got {crop}")
    if train_box > crop or train_box % 2 or train_box < 16:
        raise ConfigError(f"train_box must be even, ≥ 16 and ≤ the crop box {crop}, got {train_box}")
    if n_particles is not None:
        if n_particles < 2:
            raise ConfigError(f"n_particles must be at least 2, got {n_particles}")
        table = table.subset(np.arange(min(n_particles, len(table))))
    n = len(table)
    volume, voxel = read_map(consensus_map)
    check_map_matches(consensus_map, volume, voxel, box, psize)
    source = ImageSource(table)
    source.check_all_present()

    half = table.half_set.copy()
    half_origin = "input"
    if resplit or (half < 0).any():
        rng = np.random.default_rng(seed)
        half = rng.permutation(np.arange(n) % 2).astype(np.int8)
        half_origin = f"random (seed {seed})"
    train_psize = psize * crop / train_box

    vol_t = torch.from_numpy(volume)
    cons = fourier_crop(center_crop(vol_t, crop, 3), train_box, 3)
    write_map(out / "consensus.mrc", cons.numpy(), train_psize)

    # Contrast sign and scale against consensus projections, on a sample of particles.
    sample = np.linspace(0, n - 1, min(n, 256)).round().astype(int)
    model = ImageFormation(train_box, train_psize)
    imgs = fourier_crop(center_crop(torch.from_numpy(source.read(sample)), crop, 2), train_box, 2)
    proj = project_volume(cons, table.rotations[sample], train_box)
    ctf = ctf_for_particles(table, sample, train_box, train_psize)
    shifts_px = torch.tensor(table.shifts_A[sample] / train_psize, dtype=torch.float32)
    model_ft = model.spectra(proj, ctf, shifts_px)
    k_est = min(0.25, train_psize / 12.0)  # up to 12 Å or a quarter of the sampling rate
    alpha, noise_power, noise_var = estimate_contrast(imgs, model_ft, model, k_est)
    sign = 1.0
    if alpha < 0:
        if not auto_sign:
            raise InputFileError(particles, "particles correlate negatively with the consensus "
                                            "map (inverted contrast); re-run with auto_sign")
        log.warning("particles have inverted contrast relative to the map (scale %.3g): "
                    "multiplying them by -1", alpha)
        sign = -1.0
        alpha = -alpha

    stack = out / "particles.mrcs"
    with StackWriter(stack, n, train_box, train_psize) as writer:
        for s in range(0, n, batch):
            idx = np.arange(s, min(s + batch, n))
            im = torch.from_numpy(source.read(idx))
            im = fourier_crop(center_crop(im, crop, 2), train_box, 2) * sign
            writer.write(s, im.numpy())
            if (s // batch) % 10 == 0:
                log.info("prepared %d/%d particles", idx[-1] + 1, n)
    source.close()

    prepared = table.subset(np.arange(n))
    prepared.image_paths = np.array([stack.name] * n, dtype=object)
    prepared.image_indices = np.arange(n)
    prepared.half_set = half
    for g in prepared.optics:
        g.pixel_size_A = train_psize
        g.image_size = train_box
    prepared.source_path = str(out / "particles.star")
    write_star(prepared, out / "particles.star",
               extra_columns={"flexSourceIndex": np.arange(n)})
    info = PrepInfo(
        source_particles=str(Path(particles).resolve()),
        source_map=str(Path(consensus_map).resolve()),
        n_particles=n,
        original_box=box, original_pixel_size_A=psize,
        crop_box=crop, train_box=train_box, train_pixel_size_A=train_psize,
        image_sign=sign, image_scale=alpha,
        noise_variance=noise_var, noise_power=tuple(noise_power.tolist()),
        half_sets=half_origin, half_counts=(int((half == 0).sum()), int((half == 1).sum())),
        seconds=round(time.time() - t0, 1),
    )
    params = dict(train_box=train_box, crop_box=crop_box, n_particles=n_particles,
                  pixel_size_A=pixel_size_A, resplit=resplit, auto_sign=auto_sign, seed=seed)
    info.write(out / "prep.json", params)
    log.info("prepared %d particles: box %d → %d (%.3g Å/px, Nyquist %.2f Å); contrast scale "
             "%.3g%s; half sets %s %s; wrote %s", n, box, train_box, train_psize,
             2 * train_psize, alpha, " (flipped)" if sign < 0 else "", half_origin,
             list(info.half_counts), out)
    return info

