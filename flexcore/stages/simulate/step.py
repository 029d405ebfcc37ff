"""``flexcore simulate``: a flexible dataset with ground truth, in real formats.

Writes, under ``out_dir``:

* ``particles.star`` + ``particles.mrcs`` — RELION 3.1 particles (poses, origins, CTF,
  random half sets) with the ground-truth motion coordinate(s) as ``_flexTrueCoord1..``;
* ``consensus.mrc`` — the rigid (Wiener) reconstruction from the noisy particles, i.e.
  what a consensus refinement gives, blurred where the structure moves;
* ``mask.mrc`` — a soft solvent mask covering the whole motion range;
* ``moving_mask.mrc`` — a soft mask of the moving domain(s) over the motion range;
* ``gt/map_XX.mrc`` and ``ground_truth.json`` — ground-truth maps along the motion and
  the per-map coordinates; ``ground_truth.csv`` — each particle's coordinate(s).

Everything is seeded; the same arguments give the same files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from ...core.ctf import calculate_ctf_2d
from ...core.errors import ConfigError
from ...core.fourier import lowpass_volume, shift_phase_2d
from ...core.fsc import format_resolution, resolution_at
from ...core.io import OpticsGroup, ParticleTable, StackWriter, write_map, write_star
from ...core.masks import cosine_falloff
from ...core.rotations import random_rotations
from ...core.utils import distributed
from ...core.utils.atomic import write_text_atomic
from ...core.utils.disk import check_free_space
from ...core.utils.logging import get_logger
from ...core.utils.outputs import prepare_outputs
from ...core.wiener import FourierAccumulator, reconstruct_halves
from .phantom import Phantom, deform, domain_rmsd_A, make_phantom
from .render import render_projections, render_volume

log = get_logger("flexcore.simulate")
OUTPUTS = ("particles.star", "particles.mrcs", "consensus.mrc", "mask.mrc", "moving_mask.mrc",
           "gt/map_*.mrc", "ground_truth.json", "ground_truth.csv")


@dataclass
class SimulationResult:
    """Paths of the files written by :func:`run_simulate` and a few summary numbers."""

    particles: Path
    consensus: Path
    mask: Path
    moving_mask: Path
    gt_maps: list[Path]
    ground_truth: Path
    summary: dict


def _positions_batch(phantom: Phantom, coords: np.ndarray, max_angle_deg: float) -> np.ndarray:
    """Atom positions ``(B, A, 3)`` in Å for per-image motion coordinates ``(B, n_moving)``."""
    b = coords.shape[0]
    pos = np.broadcast_to(phantom.positions_A, (b,) + phantom.positions_A.shape).copy()
    for d in range(1, len(phantom.hinge_axes) + 1):
        sel = phantom.domain == d
        angles = np.deg2rad(max_angle_deg * coords[:, d - 1])
        rot = Rotation.from_rotvec(angles[:, None] * phantom.hinge_axes[d - 1][None]).as_matrix()
        p0 = phantom.hinge_points_A[d - 1]
        pos[:, sel] = np.einsum("bij,baj->bai", rot, pos[:, sel] - p0) + p0
    return pos


def _gt_coordinates(n_motions: int, n_maps: int) -> np.ndarray:
    """Ground-truth map coordinates: evenly spaced along each motion, others at 0."""
    grid = np.linspace(-1.0, 1.0, n_maps)
    if n_motions == 1:
        return grid[:, None]
    rows = [np.eye(n_motions)[k] * g for k in range(n_motions) for g in grid]
    return np.array(rows)


def _mask_from_maps(maps: list[np.ndarray], pixel_size_A: float, dilate_A: float,
                    soft_A: float, level_fraction: float = 0.05) -> np.ndarray:
    """Soft mask around the union of ``maps`` (thresholded at a fraction of the peak)."""
    from scipy import ndimage

    peak = max(float(m.max()) for m in maps)
    union = np.zeros(maps[0].shape, bool)
    for m in maps:
        union |= m > level_fraction * peak
    dist = ndimage.distance_transform_edt(~union) * pixel_size_A
    return cosine_falloff(dist - dilate_A, soft_A)


@dataclass
class Draws:
    """Every particle's random parameters, drawn up front (so the dataset does not depend
    on the rendering batch): motion coordinates ``(N, n_motions)`` in [-1, 1], rotations
    ``(N, 3, 3)``, origins ``(N, 2)`` Å, defocus U/V (Å) and angle (°), half set, noise seed."""

    coords: np.ndarray
    rotations: np.ndarray
    shifts_A: np.ndarray
    df_u: np.ndarray
    df_v: np.ndarray
    df_ang: np.ndarray
    half: np.ndarray
    noise_seed: int


def check_parameters(n_particles: int, n_motions: int, box: int, snr: float) -> None:
    """Raise :class:`ConfigError` naming the first bad simulation parameter."""
    if n_particles < 4:
        raise ConfigError(f"n_particles must be at least 4, got {n_particles}")
    if n_motions not in (1, 2):
        raise ConfigError(f"n_motions must be 1 or 2, got {n_motions}")
    if box < 16:
        raise ConfigError(f"box must be at least 16 px, got {box}")
    if snr <= 0:
        raise ConfigError(f"snr must be positive, got {snr}")


def draw_particles(rng: np.random.Generator, n_particles: int, n_motions: int,
                   pixel_size_A: float, shift_sigma_px: float,
                   defocus_range_A: tuple[float, float]) -> Draws:
    """The particles' parameters, in a fixed order of draws from ``rng``."""
    coords = rng.uniform(-1.0, 1.0, size=(n_particles, n_motions))
    rotations = random_rotations(n_particles, rng)
    shifts_A = rng.normal(0.0, shift_sigma_px, size=(n_particles, 2)) * pixel_size_A
    mean_df = rng.uniform(*defocus_range_A, size=n_particles)
    astig = rng.uniform(0.0, 250.0, size=n_particles)
    df_ang = rng.uniform(-180.0, 180.0, size=n_particles)
    half = rng.permutation(np.arange(n_particles) % 2).astype(np.int8)
    noise_seed = int(rng.integers(2**31))
    return Draws(coords, rotations, shifts_A, mean_df + astig, mean_df - astig, df_ang, half,
                 noise_seed)


def write_ground_truth_maps(out: Path, phantom: Phantom, gt_coords: np.ndarray,
                            max_angle_deg: float, box: int, pixel_size_A: float,
                            sigma_px: float) -> tuple[torch.Tensor, list[Path], np.ndarray]:
    """The ground-truth maps along the motion (``gt/map_XX.mrc``), the moving-domain mask
    and the solvent mask. Returns the atoms' weights (scaled so that the 10 Å low-passed
    middle map peaks near 1.5, where CryoSPARC's default absolute mask threshold of 0.5 is
    meaningful), the map paths and the solvent mask."""
    weights = torch.ones(len(phantom.positions_A))
    gt_maps = [
        render_volume(torch.tensor(deform(phantom, c, max_angle_deg) / pixel_size_A,
                                   dtype=torch.float32), weights, box, sigma_px)
        for c in gt_coords
    ]
    ref_peak = float(lowpass_volume(gt_maps[len(gt_maps) // 2], 10.0, pixel_size_A).max())
    scale = 1.5 / ref_peak
    weights = weights * scale
    gt_maps = [(m * scale).numpy() for m in gt_maps]
    gt_paths = []
    for i, m in enumerate(gt_maps):
        path = out / "gt" / f"map_{i:02d}.mrc"
        write_map(path, m, pixel_size_A)
        gt_paths.append(path)
    # moving-domain mask over the motion range (for FSC inside the moving domain)
    moving = phantom.domain > 0
    moving_maps = [
        render_volume(torch.tensor(deform(phantom, c, max_angle_deg)[moving] / pixel_size_A,
                                   dtype=torch.float32), weights[moving], box, sigma_px).numpy()
        for c in gt_coords
    ]
    moving_mask = _mask_from_maps(moving_maps, pixel_size_A, dilate_A=3.0, soft_A=4.0)
    write_map(out / "moving_mask.mrc", moving_mask, pixel_size_A)
    mask = _mask_from_maps(gt_maps, pixel_size_A, dilate_A=4.0, soft_A=6.0)
    write_map(out / "mask.mrc", mask, pixel_size_A)
    return weights, gt_paths, mask


def render_clean_images(phantom: Phantom, weights: torch.Tensor, coords: np.ndarray,
                        rotations: torch.Tensor, shifts_A: torch.Tensor, ctf_kw: dict, *,
                        box: int, pixel_size_A: float, sigma_px: float,
                        max_angle_deg: float) -> torch.Tensor:
    """The simulator's noiseless image model: analytic projections of the phantom at motion
    coordinates ``coords (B, n_motions)`` under RELION matrices ``rotations (B, 3, 3)``,
    zero-padded ×2, multiplied by the CTF (``ctf_kw``: :func:`calculate_ctf_2d`'s
    per-image defocus tensors and the common optics) and shifted by the origins
    ``shifts_A (B, 2)`` (Å, RELION sign), then cropped. Returns ``(B, box, box)`` on the
    rotations' device; ``weights (A,)`` are the atoms' masses."""
    dev = rotations.device
    padded, pad = 2 * box, box // 2
    pos = torch.tensor(_positions_batch(phantom, coords, max_angle_deg) / pixel_size_A,
                       dtype=torch.float32, device=dev)
    proj = render_projections(pos, weights.to(dev), rotations, box, sigma_px)
    ctf = calculate_ctf_2d(pixel_size_A=pixel_size_A, image_size=padded, **ctf_kw)
    shift_px = -shifts_A / pixel_size_A
    big = F.pad(proj, [pad, pad, pad, pad])
    ft = torch.fft.rfft2(big) * ctf * shift_phase_2d(shift_px, padded, device=dev)
    return torch.fft.irfft2(ft, s=(padded, padded))[:, pad:pad + box, pad:pad + box]


def render_particles(stack_path: Path, phantom: Phantom, weights: torch.Tensor, draws: Draws,
                     *, box: int, pixel_size_A: float, sigma_px: float, snr: float,
                     max_angle_deg: float, ctf_common: dict, batch: int, dev: torch.device,
                     ) -> tuple[float, tuple[FourierAccumulator, FourierAccumulator]]:
    """Images: analytic projections, zero-padded ×2, CTF and origin shift, cropped, plus
    white noise at ``snr``; written to ``stack_path`` and inserted into one Wiener
    accumulator per half set. Returns the noise σ and the two accumulators."""
    n_particles = len(draws.coords)
    gen = torch.Generator().manual_seed(draws.noise_seed)
    noise_sigma = None
    accs = (FourierAccumulator(box, pixel_size_A, device=dev),
            FourierAccumulator(box, pixel_size_A, device=dev))

    def floats(a):
        return torch.tensor(a, dtype=torch.float32, device=dev)

    with StackWriter(stack_path, n_particles, box, pixel_size_A) as writer:
        for s in range(0, n_particles, batch):
            sl = slice(s, min(s + batch, n_particles))
            rot = floats(draws.rotations[sl])
            ctf_kw = dict(defocus_u_A=floats(draws.df_u[sl]), defocus_v_A=floats(draws.df_v[sl]),
                          defocus_angle_deg=floats(draws.df_ang[sl]), **ctf_common)
            clean = render_clean_images(
                phantom, weights, draws.coords[sl], rot, floats(draws.shifts_A[sl]), ctf_kw,
                box=box, pixel_size_A=pixel_size_A, sigma_px=sigma_px,
                max_angle_deg=max_angle_deg).cpu()
            if noise_sigma is None:
                noise_sigma = float(torch.sqrt(clean.var(dim=(1, 2)).mean() / snr))
            noisy = clean + noise_sigma * torch.randn(clean.shape, generator=gen)
            writer.write(s, noisy.numpy())
            noisy = noisy.to(dev)
            for h in (0, 1):
                sel = torch.from_numpy(draws.half[sl] == h)
                if sel.any():
                    sel = sel.to(dev)
                    accs[h].add(noisy[sel], rot[sel],
                                torch.tensor(draws.shifts_A[sl], device=dev)[sel],
                                {k: (v[sel] if torch.is_tensor(v) else v) for k, v in ctf_kw.items()})
            log.info("simulated %d/%d particles", sl.stop, n_particles)
    return noise_sigma, accs


def write_particle_files(out: Path, stack_path: Path, draws: Draws, *, box: int,
                         pixel_size_A: float, ctf_common: dict) -> None:
    """``particles.star`` (RELION 3.1, true coordinates as ``_flexTrueCoordK``) and
    ``ground_truth.csv`` (each particle's coordinates)."""
    n_particles, n_motions = draws.coords.shape
    optics = [OpticsGroup("opticsGroup1", pixel_size_A, box, ctf_common["voltage_kv"],
                          ctf_common["spherical_aberration_mm"], ctf_common["amplitude_contrast"])]
    table = ParticleTable(
        rotations=draws.rotations, shifts_A=draws.shifts_A, defocus_u_A=draws.df_u,
        defocus_v_A=draws.df_v, defocus_angle_deg=draws.df_ang,
        phase_shift_deg=np.zeros(n_particles), bfactor_A2=np.zeros(n_particles),
        ctf_scale=np.ones(n_particles), optics_group=np.zeros(n_particles, dtype=np.int64),
        optics=optics, image_paths=np.array([stack_path.name] * n_particles, dtype=object),
        image_indices=np.arange(n_particles), half_set=draws.half,
        source_path=str(out / "particles.star"), source_format="relion31",
    )
    extra = {f"flexTrueCoord{k + 1}": draws.coords[:, k] for k in range(n_motions)}
    write_star(table, out / "particles.star", extra_columns=extra)
    header = ",".join(["particle"] + [f"coord{k + 1}" for k in range(n_motions)])
    rows = "\n".join(",".join([str(i)] + [f"{c:.6f}" for c in draws.coords[i]])
                     for i in range(n_particles))
    write_text_atomic(out / "ground_truth.csv", header + "\n" + rows + "\n")


def run_simulate(
    out_dir,
    *,
    n_particles: int = 3000,
    box: int = 64,
    pixel_size_A: float = 2.5,
    snr: float = 0.1,
    n_motions: int = 1,
    max_angle_deg: float = 25.0,
    defocus_range_A: tuple[float, float] = (8000.0, 25000.0),
    shift_sigma_px: float = 1.5,
    n_gt_maps: int = 9,
    voltage_kv: float = 300.0,
    spherical_aberration_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    seed: int = 0,
    batch: int = 256,
    device: str = "cpu",
) -> SimulationResult:
    """Simulate a flexible dataset (see the module docstring for the files written).

    Parameters
    ----------
    n_particles, box, pixel_size_A : dataset size, image size (px) and pixel size (Å).
    snr : signal-to-noise ratio, ``var(clean image) / var(noise)`` averaged over images
        and taken over the whole box (the particle covers a fraction of it).
    n_motions : 1 (one hinge) or 2 (two independent hinged domains, for K = 2).
    max_angle_deg : hinge rotation at coordinate ±1; coordinates are uniform in [-1, 1].
    defocus_range_A : uniform range of the mean defocus; astigmatism up to 500 Å.
    shift_sigma_px : standard deviation of the random origins (pixels).
    device : torch device for rendering and the consensus reconstruction (results agree
        across devices to float rounding; the noise is drawn on the CPU).
    """
    check_parameters(n_particles, n_motions, box, snr)
    t_start = time.time()
    out = prepare_outputs("simulate", out_dir, OUTPUTS)
    # the stack, the ground-truth maps, consensus, masks and half maps, the tables
    check_free_space(out, 4 * (n_particles * box**2 + (n_gt_maps + 6) * box**3)
                     + 1000 * n_particles, what=f"the simulation ({n_particles} images)")
    (out / "gt").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    phantom = make_phantom(seed, n_moving=n_motions)
    extent = np.abs(phantom.positions_A).max() + 3 * phantom.sigma_A
    if extent > 0.5 * box * pixel_size_A:
        raise ConfigError(
            f"the phantom ({2 * extent:.0f} Å across) does not fit a {box} px × "
            f"{pixel_size_A} Å box ({box * pixel_size_A:.0f} Å); use a larger box or pixel size")
    sigma_px = phantom.sigma_A / pixel_size_A
    draws = draw_particles(rng, n_particles, n_motions, pixel_size_A, shift_sigma_px,
                           defocus_range_A)
    gt_coords = _gt_coordinates(n_motions, n_gt_maps)
    weights, gt_paths, mask = write_ground_truth_maps(out, phantom, gt_coords, max_angle_deg, box,
                                                      pixel_size_A, sigma_px)
    dev = distributed.resolve_device(device, "simulate.device")
    stack_path = out / "particles.mrcs"
    ctf_common = dict(voltage_kv=voltage_kv, spherical_aberration_mm=spherical_aberration_mm,
                      amplitude_contrast=amplitude_contrast)
    noise_sigma, accs = render_particles(
        stack_path, phantom, weights, draws, box=box, pixel_size_A=pixel_size_A,
        sigma_px=sigma_px, snr=snr, max_angle_deg=max_angle_deg, ctf_common=ctf_common,
        batch=batch, dev=dev)
    recon = reconstruct_halves(accs, mask=torch.as_tensor(mask, device=dev))
    write_map(out / "consensus.mrc", recon["full"], pixel_size_A)
    res = resolution_at(recon["fsc"], 0.143, pixel_size_A)
    write_particle_files(out, stack_path, draws, box=box, pixel_size_A=pixel_size_A,
                         ctf_common=ctf_common)
    summary = {
        "n_particles": n_particles, "box": box, "pixel_size_A": pixel_size_A, "snr": snr,
        "noise_sigma": noise_sigma, "n_motions": n_motions, "max_angle_deg": max_angle_deg,
        "n_atoms": int(len(phantom.positions_A)), "atom_sigma_A": phantom.sigma_A,
        "moving_atoms": int((phantom.domain > 0).sum()), "seed": seed,
        "atom_weight": float(weights[0]),
        "moving_domain_rmsd_A": [domain_rmsd_A(phantom, d, max_angle_deg)
                                 for d in range(1, n_motions + 1)],
        "gt_coordinates": gt_coords.tolist(),
        "gt_maps": [str(p.relative_to(out)) for p in gt_paths],
        "hinge_points_A": phantom.hinge_points_A.tolist(), "hinge_axes": phantom.hinge_axes.tolist(),
        "consensus_fsc0143_A": res, "seconds": round(time.time() - t_start, 1),
    }
    write_text_atomic(out / "ground_truth.json", json.dumps(summary, indent=2) + "\n")
    log.info("wrote %d particles (box %d, %.3g Å/px, SNR %.3g) to %s; consensus half-map "
             "FSC 0.143 at %s; %d ground-truth maps", n_particles, box, pixel_size_A, snr,
             out, format_resolution(res), len(gt_paths))
    return SimulationResult(out / "particles.star", out / "consensus.mrc", out / "mask.mrc",
                            out / "moving_mask.mrc", gt_paths, out / "ground_truth.json", summary)
