"""``flexcore prep``: particles and consensus map at the training box.

Reads any particle file (RELION 3.0/3.1+/5 STAR, cryoSPARC ``.cs``, or a cryoDRGN stack
with its ``poses.pkl`` and ``ctf.pkl``) and the consensus map, checks they agree (box,
pixel size), optionally crops the box in real space (the box for high-resolution
reconstruction) and Fourier-crops particles and map to the training
box. It measures the particles' contrast sign and scale against projections of the
consensus map (flipping inverted particles) and the residual noise spectrum, and writes:

* ``particles.star`` + ``particles.mrcs`` — prepared particles (RELION 3.1; shifts in Å;
  ``_flexSourceIndex`` links each row to the input file's row, i.e. the full-resolution image);
* ``consensus.mrc`` — the consensus map at the training box;
* ``source.star`` — for cryoDRGN input only: the full-resolution particles converted once
  into flexcore's conventions (RELION 3.1 STAR naming the original stacks); the later stages
  read it as the source particle file;
* ``prep.json`` — sizes, pixel sizes, sign/scale, noise, half-set origin, the particles'
  agreement with the map and provenance.

Before any work prep refuses outputs that would replace an input (the particle file, its
stacks, the map: write into another folder), a map without a voxel size or without
structure, and particles that do not match the map (:func:`map_agreement`); every image
is checked as it is read (NaN/infinite pixels, constant or all-zero images).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...core.ctf import ctf_for_particles
from ...core.errors import ConfigError, InputFileError
from ...core.fourier import center_crop, fourier_crop
from ...core.half_sets import assign_half_sets, image_groups
from ...core.io import ImageSource, StackWriter, read_map, read_particles, write_map, write_star
from ...core.io.pixels import check_volume
from ...core.model.image_model import ImageFormation
from ...core.prep_info import PrepInfo
from ...core.projection import project_volume
from ...core.utils.disk import check_free_space
from ...core.utils.logging import get_logger
from ...core.utils.outputs import prepare_outputs

log = get_logger("flexcore.prep")
OUTPUTS = ("particles.star", "particles.mrcs", "consensus.mrc", "prep.json")
# |score| below this: the particles do not match the map (see map_agreement); below the
# second, they match it only weakly (a warning).
MIN_MATCH_SCORE = 2.0
WEAK_MATCH_SCORE = 4.0
# what a weak score (between the two thresholds) usually means, measured on simulations:
# poses drawn at random score about 2, the right particles against a mirrored map about 3
WEAK_MATCH_MEANING = (
    "Such a score usually means poses that do not belong to this map (random poses score "
    "about 2) or a map of the wrong hand (a mirrored map scores about 3: flip it, e.g. "
    "relion_image_handler --flipZ or ChimeraX 'volume flip', and run prep again)"
)
LIKELY_MISMATCH_CAUSES = (
    "shifts in pixels read as Å or Å as pixels (RELION rlnOriginXAngst/YAngst are Å; "
    "rlnOriginX/Y and cryoSPARC alignments3D/shift are pixels), a wrong pixel size, a map of "
    "another structure or from another refinement, or poses from another refinement than "
    "the map's"
)


def check_map_matches(map_path, volume: np.ndarray, voxel_A: float, box: int,
                      pixel_size_A: float) -> None:
    """Raise naming the map when its box or voxel size disagrees with the particles'."""
    if volume.shape[0] != box:
        raise InputFileError(map_path, f"map box {volume.shape[0]} px does not match the "
                                       f"particles' {box} px")
    if not voxel_A > 0:
        raise InputFileError(map_path, "voxel size is 0 in the map's header, so it cannot be "
                                       "checked against the particles' pixel size; set it "
                                       "(e.g. relion_image_handler --i map.mrc --o fixed.mrc "
                                       f"--angpix {pixel_size_A:.4g} --force_header_angpix)")
    if abs(voxel_A - pixel_size_A) > 0.01 * pixel_size_A:
        raise InputFileError(map_path, f"map voxel size {voxel_A:.4f} Å does not match the "
                                       f"particles' pixel size {pixel_size_A:.4f} Å")


def estimate_contrast(images: torch.Tensor, projections_ft: torch.Tensor,
                      model: ImageFormation, k_max: float) -> tuple[float, np.ndarray, float]:
    """Least-squares scale ``α`` of images against model spectra (band ``|k| ≤ k_max``),
    residual noise power per shell (normalised to the white level) and the white-noise
    pixel variance of the residual."""
    obs = model.observed(images)
    band = contrast_band(model, k_max)
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


def contrast_band(model: ImageFormation, k_max: float) -> torch.Tensor:
    """Band ``0 < |k| ≤ k_max`` of the contrast estimate: the mean (DC) is left out, so an
    offset in unnormalised images does not decide the scale or the sign."""
    band = model.band(k_max).clone()
    band[0, 0] = 0.0
    return band


def map_agreement(images_ft: torch.Tensor, model_ft: torch.Tensor, band: torch.Tensor,
                  shell: torch.Tensor) -> dict:
    """How well images agree with their model spectra, measured against chance.

    Parameters
    ----------
    images_ft, model_ft : ``(n, D, D//2+1)`` spectra ``O`` of ``n`` images and ``M`` of the
        consensus map's projections at their poses (CTF and shifts applied).
    band : ``(D, D//2+1)`` coefficient weights ``w_k`` (half-plane multiplicity, 0 outside).
    shell : ``(D, D//2+1)`` integer Fourier shell of each coefficient.

    Returns
    -------
    ``{"correlation": ρ, "chance_sd": σ₁, "score": ρ/σ₁}`` with, over all images ``i`` and
    coefficients ``k``, ``ρ = Σ w Re(O·M̄) / sqrt(Σ w|M|² · Σ w|O|²)`` and

    ``σ₁² = n · Σ w² |M|² P(s_k) / 2 / (Σ w|M|² · Σ w|O|²)``,

    the variance of one image's correlation with a model it does not contain: the real
    part of ``O·M̄`` has variance ``|M|² P/2`` when ``O`` is unrelated to ``M`` with power ``P``
    per coefficient, and ``P(s)``, the mean of ``|O|²`` over the images and the coefficients
    of shell ``s``, stands in for it. The score says by how many chance spreads a typical
    image agrees with its own projection: 5 to 12 for matching simulated particles (SNR
    0.01 to 100), below 1.1 for shifts off by 100 Å, shifts in pixels read as Å, a shifted
    map or poses of other particles (docs/conventions.md has the table).
    """
    n_shell = int(shell.max()) + 1
    power = (images_ft.abs() ** 2).mean(0)
    sums = torch.zeros(n_shell, dtype=power.dtype).index_add_(0, shell.flatten(), power.flatten())
    counts = torch.bincount(shell.flatten(), minlength=n_shell).clamp_min(1)
    shell_power = (sums / counts)[shell]
    pm = model_ft.abs() ** 2
    num = float(((images_ft * model_ft.conj()).real * band).sum())
    norm = float((pm * band).sum()) * float((images_ft.abs() ** 2 * band).sum())
    if not norm > 0:
        return {"correlation": 0.0, "chance_sd": float("inf"), "score": 0.0}
    var_num = float((pm * (band**2 * shell_power)).sum()) / 2.0
    rho = num / norm**0.5
    sd1 = (images_ft.shape[0] * var_num / norm) ** 0.5
    return {"correlation": rho, "chance_sd": sd1, "score": rho / sd1 if sd1 > 0 else 0.0}


def check_agreement(agreement: dict, particles, consensus_map, auto_sign: bool) -> float:
    """The sign to multiply the particles by, from :func:`map_agreement`'s record; raises
    :class:`InputFileError` when they do not match the map (or are inverted and
    ``auto_sign`` is off)."""
    rho, score = agreement["correlation"], agreement["score"]
    said = f"correlation {rho:+.3f} with the map's projections, {abs(score):.1f}× the spread " \
           f"one image shows by chance"
    if abs(score) < MIN_MATCH_SCORE:
        raise InputFileError(particles, f"the particles do not match the consensus map "
                                        f"{consensus_map} at their poses and shifts ({said}; "
                                        f"matching particles give well above "
                                        f"{MIN_MATCH_SCORE:g}×). Likely causes: "
                                        f"{LIKELY_MISMATCH_CAUSES}")
    if abs(score) < WEAK_MATCH_SCORE:
        log.warning("the particles match the consensus map only weakly (%s). %s; check also "
                    "for %s", said, WEAK_MATCH_MEANING, LIKELY_MISMATCH_CAUSES)
    if score > 0:
        return 1.0
    if not auto_sign:
        raise InputFileError(particles, f"the particles' contrast is inverted relative to the "
                                        f"consensus map ({said}, negative): let prep flip them "
                                        f"(prep.auto_sign: true, or leave out --no-auto-sign) or "
                                        f"invert the particles or the map yourself")
    log.warning("particles have inverted contrast relative to the map (%s): multiplying them "
                "by -1", said)
    return -1.0


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
    project_dir=None,
    poses=None,
    ctf=None,
    batch: int = 512,
) -> PrepInfo:
    """Prepare particles for training (see the module docstring for the outputs).

    Parameters
    ----------
    particles : RELION ``.star`` or cryoSPARC ``.cs`` with a consensus refinement's poses, or
        a cryoDRGN ``.mrcs`` stack / ``.txt`` list of stacks (then ``poses`` and ``ctf``).
    consensus_map : the consensus map (same box and pixel size as the particles).
    train_box : training box (Fourier crop target, even, ≤ the crop box).
    crop_box : real-space crop of the particles and map first (None = keep the box).
    n_particles : keep the first ``n`` particles (None = all).
    pixel_size_A : pixel size for RELION 3.0 files that do not carry one.
    resplit : draw a new seeded random half-set split instead of the input's.
    auto_sign : flip particles whose contrast is inverted relative to the map.
    project_dir : the RELION/cryoSPARC project folder the particles' image paths are
        relative to (default: searched above the particle file); kept in ``prep.json``.
    poses, ctf : cryoDRGN ``poses.pkl`` and ``ctf.pkl`` for a cryoDRGN ``particles``.

    The steps, in order: read and check the inputs (:func:`read_prep_inputs`), choose the
    half sets (:func:`~flexcore.core.half_sets.assign_half_sets`), measure the contrast
    against the map (:func:`measure_contrast`), write the stack, the map and the table
    (:func:`write_prepared_stack`, :func:`write_prepared_table`) and ``prep.json``.
    """
    t0 = time.time()
    inputs = read_prep_inputs(particles, consensus_map, out_dir, train_box=train_box,
                              crop_box=crop_box, n_particles=n_particles,
                              pixel_size_A=pixel_size_A, project_dir=project_dir,
                              poses=poses, ctf=ctf)
    table, source, out = inputs.table, inputs.source, inputs.out
    half, half_origin = assign_half_sets(table.half_set, image_groups(table, source),
                                         resplit=resplit, seed=seed, where=particles)
    cons = fourier_crop(center_crop(torch.from_numpy(inputs.volume), inputs.crop, 3),
                        train_box, 3)
    contrast = measure_contrast(table, source, cons, inputs.crop, inputs.train_psize,
                                particles, consensus_map, auto_sign)
    stack = out / "particles.mrcs"
    write_prepared_stack(source, stack, inputs.crop, train_box, inputs.train_psize,
                         contrast.sign, batch)
    write_map(out / "consensus.mrc", cons.numpy(), inputs.train_psize)
    write_prepared_table(table, half, stack, out / "particles.star", train_box,
                         inputs.train_psize)
    n, box, psize = len(table), table.box, table.pixel_size_A
    source_file = Path(particles)
    if table.source_format == "cryodrgn":  # once, here: later stages read this STAR as the source
        source_file = out / "source.star"
        converted = table.subset(np.arange(n))
        converted.half_set = half
        write_star(converted, source_file)
        log.info("converted the cryoDRGN particles (%s, %s, %s) to %s", particles, poses, ctf,
                 source_file)
    info = PrepInfo(
        source_particles=str(source_file.resolve()),
        source_map=str(Path(consensus_map).resolve()),
        n_particles=n,
        original_box=box, original_pixel_size_A=psize,
        crop_box=inputs.crop, train_box=train_box, train_pixel_size_A=inputs.train_psize,
        image_sign=contrast.sign, image_scale=contrast.alpha,
        noise_variance=contrast.noise_var, noise_power=tuple(contrast.noise_power.tolist()),
        half_sets=half_origin, half_counts=(int((half == 0).sum()), int((half == 1).sum())),
        map_correlation=contrast.agreement["correlation"],
        map_match_score=contrast.agreement["score"],
        project_dir=str(Path(project_dir).resolve()) if project_dir else None,
        seconds=round(time.time() - t0, 1),
    )
    params = dict(train_box=train_box, crop_box=crop_box, n_particles=n_particles,
                  pixel_size_A=pixel_size_A, resplit=resplit, auto_sign=auto_sign, seed=seed,
                  project_dir=str(project_dir) if project_dir else None,
                  poses=str(poses) if poses else None, ctf=str(ctf) if ctf else None)
    info.write(out / "prep.json", params)
    log.info("prepared %d particles: box %d → %d (%.3g Å/px, Nyquist %.2f Å); contrast scale "
             "%.3g%s (map correlation %+.3f, %.1f× chance); half sets %s %s; wrote %s", n, box,
             train_box, inputs.train_psize, 2 * inputs.train_psize, contrast.alpha,
             " (flipped)" if contrast.sign < 0 else "",
             contrast.agreement["correlation"] * contrast.sign,
             abs(contrast.agreement["score"]), half_origin, list(info.half_counts), out)
    return info


@dataclass
class PrepInputs:
    """prep's checked inputs: the particles (first ``n_particles``), their image source, the
    consensus map, the crop box, the training pixel size and the output folder."""

    table: object  # flexcore.core.io.ParticleTable
    source: ImageSource
    volume: np.ndarray  # (D, D, D) consensus map at the particles' box
    crop: int
    train_psize: float
    out: Path


def read_prep_inputs(particles, consensus_map, out_dir, *, train_box: int,
                     crop_box: int | None, n_particles: int | None, pixel_size_A: float | None,
                     project_dir, poses=None, ctf=None) -> PrepInputs:
    """Read and check everything before any work: the particles (poses required), the box
    sizes, the map against the particles, every stack and index, the output folder (no
    input replaced) and its free space (stack, map and table)."""
    table = read_particles(particles, pixel_size_A=pixel_size_A, project_dir=project_dir,
                           poses=poses, ctf=ctf)
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
    volume, voxel = read_map(consensus_map)
    check_map_matches(consensus_map, volume, voxel, box, psize)
    check_volume(volume, consensus_map, "consensus map")
    source = ImageSource(table)
    source.check_all_present()
    stacks = {f"image stack {name}": source.reader(str(name)).path
              for name in np.unique(table.image_paths)}
    converted = ("source.star",) if table.source_format == "cryodrgn" else ()
    out = prepare_outputs("prep", out_dir, OUTPUTS + converted,
                          {"particle file": particles, "consensus map": consensus_map,
                           "poses": poses, "CTF table": ctf, **stacks})
    n = len(table)
    check_free_space(out, 4 * (n * train_box**2 + train_box**3) + 2048 + 600 * n,
                     what=f"the prepared particles ({n} images at {train_box} px)")
    warn_large_shifts(table.shifts_A, box, psize)
    return PrepInputs(table=table, source=source, volume=volume, crop=crop,
                      train_psize=psize * crop / train_box, out=out)


@dataclass
class Contrast:
    """The particles' contrast against the map: ``sign`` (±1 applied to them), least-squares
    scale ``alpha``, residual ``noise_power`` per shell (relative to ``noise_var``, the white
    pixel variance) and the :func:`map_agreement` record."""

    sign: float
    alpha: float
    noise_power: np.ndarray
    noise_var: float
    agreement: dict


def measure_contrast(table, source: ImageSource, cons: torch.Tensor, crop: int,
                     train_psize: float, particles, consensus_map, auto_sign: bool) -> Contrast:
    """Contrast sign and scale against the consensus map's projections (``cons``, at the
    training box), on up to 256 particles spread over the file; refuses particles that do
    not match the map (:func:`check_agreement`)."""
    n, train_box = len(table), cons.shape[-1]
    sample = np.linspace(0, n - 1, min(n, 256)).round().astype(int)
    model = ImageFormation(train_box, train_psize)
    imgs = fourier_crop(center_crop(torch.from_numpy(source.read(sample)), crop, 2), train_box, 2)
    proj = project_volume(cons, table.rotations[sample], train_box)
    ctf = ctf_for_particles(table, sample, train_box, train_psize)
    shifts_px = torch.tensor(table.shifts_A[sample] / train_psize, dtype=torch.float32)
    model_ft = model.spectra(proj, ctf, shifts_px)
    k_est = min(0.25, train_psize / 12.0)  # up to 12 Å or a quarter of the sampling rate
    agreement = map_agreement(model.observed(imgs), model_ft, contrast_band(model, k_est),
                              model.shell)
    sign = check_agreement(agreement, particles, consensus_map, auto_sign)
    alpha, noise_power, noise_var = estimate_contrast(imgs * sign, model_ft, model, k_est)
    return Contrast(sign, alpha, noise_power, noise_var, agreement)


def write_prepared_stack(source: ImageSource, stack: Path, crop: int, train_box: int,
                         train_psize: float, sign: float, batch: int) -> None:
    """Crop (real space to ``crop``, then Fourier to ``train_box``), multiply by ``sign`` and
    write every particle image to ``stack`` in ``batch``-sized reads; closes ``source``."""
    n = len(source.table)
    with StackWriter(stack, n, train_box, train_psize) as writer:
        for s in range(0, n, batch):
            idx = np.arange(s, min(s + batch, n))
            im = torch.from_numpy(source.read(idx))
            im = fourier_crop(center_crop(im, crop, 2), train_box, 2) * sign
            writer.write(s, im.numpy())
            if (s // batch) % 10 == 0:
                log.info("prepared %d/%d particles", idx[-1] + 1, n)
    source.close()


def write_prepared_table(table, half: np.ndarray, stack: Path, path: Path, train_box: int,
                         train_psize: float) -> None:
    """``particles.star``: the particles' rows pointing at ``stack`` (image ``i`` for row
    ``i``), with their half sets, the training box and pixel size, and
    ``_flexSourceIndex`` linking each row to the input file's row."""
    n = len(table)
    prepared = table.subset(np.arange(n))
    prepared.image_paths = np.array([stack.name] * n, dtype=object)
    prepared.image_indices = np.arange(n)
    prepared.half_set = half
    for g in prepared.optics:
        g.pixel_size_A = train_psize
        g.image_size = train_box
    prepared.source_path = str(path)
    write_star(prepared, path, extra_columns={"flexSourceIndex": np.arange(n)})


def warn_large_shifts(shifts_A: np.ndarray, box: int, pixel_size_A: float) -> int:
    """Warn (with the count) when particles' origins exceed half the box; return the count."""
    half = 0.5 * box * pixel_size_A
    large = int((np.hypot(shifts_A[:, 0], shifts_A[:, 1]) > half).sum())
    if large:
        log.warning("%d of %d particles have origin shifts larger than half the box (%.0f Å): "
                    "check the shift units (RELION rlnOriginXAngst/YAngst are Å, cryoSPARC "
                    "alignments3D/shift is pixels)", large, len(shifts_A), half)
    return large
