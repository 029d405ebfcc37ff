"""The simulator's forward model, reread from a simulation's own files, and what it allows.

* :func:`load_forward_model` rebuilds the phantom and the image model of a ``flexcore
  simulate`` output folder (``ground_truth.json`` for the phantom and the noise σ,
  ``particles.star`` for every particle's pose, origin and CTF).
* :func:`render_true_maps` gives the true map at any motion coordinate (more states than
  the ``gt/`` maps, for matching generated maps to coordinates).
* :func:`bayes_posterior` is the **Bayes-limit estimate** of the motion coordinate: for each
  image, the exact noiseless image (:func:`~.step.render_clean_images`, the function that
  made the particles) at a grid of coordinates, scored with the Gaussian log-likelihood at
  the true noise σ; with a uniform prior, the posterior mean of the coordinate is the best
  estimate (in mean squared error) any method can make from that image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...core.errors import InputFileError
from ...core.io import StackReader, read_particles
from ...core.io.particles import ParticleTable
from .phantom import Phantom, deform, make_phantom
from .render import render_volume
from .step import render_clean_images


@dataclass
class ForwardModel:
    """A simulation's image model: phantom, atom mass, motion amplitude, optics, noise σ,
    the particles' table (simulation order) and the stack path."""

    phantom: Phantom
    atom_weight: float
    max_angle_deg: float
    box: int
    pixel_size_A: float
    noise_sigma: float
    n_motions: int
    table: ParticleTable
    stack: Path

    @property
    def sigma_px(self) -> float:
        return self.phantom.sigma_A / self.pixel_size_A

    def true_coordinates(self) -> np.ndarray:
        """``(N, n_motions)`` every particle's true coordinates (simulation order)."""
        return np.stack([np.asarray(self.table.raw[f"flexTrueCoord{m + 1}"], dtype=np.float64)
                         for m in range(self.n_motions)], axis=1)


def load_forward_model(sim_dir) -> ForwardModel:
    """Rebuild the forward model of the ``flexcore simulate`` output in ``sim_dir``."""
    sim_dir = Path(sim_dir)
    info_path = sim_dir / "ground_truth.json"
    if not info_path.is_file():
        raise InputFileError(info_path, "not found (a flexcore simulate output folder is needed)")
    info = json.loads(info_path.read_text())
    for key in ("seed", "n_motions", "max_angle_deg", "atom_weight", "noise_sigma", "box",
                "pixel_size_A"):
        if key not in info:
            raise InputFileError(info_path, f"has no '{key}' (written by an older flexcore "
                                            "simulate; simulate again)")
    phantom = make_phantom(int(info["seed"]), n_moving=int(info["n_motions"]))
    if not np.isclose(phantom.sigma_A, float(info["atom_sigma_A"])):
        raise InputFileError(info_path, "its atom width differs from this flexcore's phantom")
    table = read_particles(sim_dir / "particles.star")
    return ForwardModel(phantom=phantom, atom_weight=float(info["atom_weight"]),
                        max_angle_deg=float(info["max_angle_deg"]), box=int(info["box"]),
                        pixel_size_A=float(info["pixel_size_A"]),
                        noise_sigma=float(info["noise_sigma"]), n_motions=int(info["n_motions"]),
                        table=table, stack=sim_dir / "particles.mrcs")


def render_true_maps(fm: ForwardModel, coords: np.ndarray) -> np.ndarray:
    """True maps ``(M, box, box, box)`` ``[z, y, x]`` at coordinates ``coords (M, n_motions)``,
    on the simulation's grid and density scale (as the ``gt/`` maps)."""
    weights = torch.full((len(fm.phantom.positions_A),), fm.atom_weight)
    return np.stack([
        render_volume(torch.tensor(deform(fm.phantom, c, fm.max_angle_deg) / fm.pixel_size_A,
                                   dtype=torch.float32), weights, fm.box, fm.sigma_px).numpy()
        for c in np.atleast_2d(coords)])


def render_clean(fm: ForwardModel, index: np.ndarray, coords: np.ndarray) -> torch.Tensor:
    """Noiseless images ``(B, box, box)`` of particles ``index (B,)`` (simulation order) as
    if their coordinates were ``coords (B, n_motions)``: the simulator's own image model."""
    t = fm.table
    index = np.asarray(index, dtype=np.int64)
    group = t.optics[0]

    def floats(a):
        return torch.tensor(np.asarray(a, dtype=np.float64)[index], dtype=torch.float32)

    ctf_kw = dict(defocus_u_A=floats(t.defocus_u_A), defocus_v_A=floats(t.defocus_v_A),
                  defocus_angle_deg=floats(t.defocus_angle_deg), voltage_kv=group.voltage_kv,
                  spherical_aberration_mm=group.spherical_aberration_mm,
                  amplitude_contrast=group.amplitude_contrast)
    weights = torch.full((len(fm.phantom.positions_A),), fm.atom_weight)
    return render_clean_images(fm.phantom, weights, np.asarray(coords, dtype=np.float64),
                               floats(t.rotations), floats(t.shifts_A), ctf_kw, box=fm.box,
                               pixel_size_A=fm.pixel_size_A, sigma_px=fm.sigma_px,
                               max_angle_deg=fm.max_angle_deg)


def bayes_posterior(sim_dir, n_images: int = 1000, n_grid: int = 21, motion: int = 1,
                    noise_sigma: float | None = None) -> dict:
    """Posterior of motion coordinate ``motion`` (1-based) for the first ``n_images``
    particles of a simulation, on ``n_grid`` coordinates evenly spaced in [-1, 1] (uniform
    prior; the other coordinates, if any, held at their true values).

    The likelihood is the simulator's: white Gaussian noise of σ ``noise_sigma`` (default:
    the simulation's, from ``ground_truth.json``) around the exact noiseless image.

    Returns ``{"index", "truth", "posterior_mean", "posterior_sd", "map_estimate", "grid",
    "noise_sigma"}`` (arrays of length ``n_images`` except the grid).
    """
    fm = load_forward_model(sim_dir)
    if not 1 <= motion <= fm.n_motions:
        raise ValueError(f"motion must be in 1..{fm.n_motions}, got {motion}")
    sigma = fm.noise_sigma if noise_sigma is None else float(noise_sigma)
    n = min(int(n_images), len(fm.table.rotations))
    grid = np.linspace(-1.0, 1.0, int(n_grid))
    truth = fm.true_coordinates()[:n]
    reader = StackReader(fm.stack)
    try:
        images = torch.from_numpy(reader.read(np.arange(n)))
    finally:
        reader.close()
    log_like = np.empty((n, len(grid)))
    for i in range(n):
        coords = np.repeat(truth[i:i + 1], len(grid), axis=0)
        coords[:, motion - 1] = grid
        clean = render_clean(fm, np.full(len(grid), i), coords)
        sq = ((images[i][None] - clean) ** 2).sum(dim=(1, 2)).double().numpy()
        log_like[i] = -0.5 * sq / sigma ** 2
    post = np.exp(log_like - log_like.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    mean = post @ grid
    sd = np.sqrt(np.clip(post @ grid ** 2 - mean ** 2, 0.0, None))
    return {"index": np.arange(n), "truth": truth[:, motion - 1], "posterior_mean": mean,
            "posterior_sd": sd, "map_estimate": grid[post.argmax(axis=1)], "grid": grid,
            "noise_sigma": sigma}
