"""``flexcore generate``: volume series from a trained model (any checkpoint, also one a
running training is still writing).

For each latent dimension ``k``: frames at ``z_k`` from ``-r`` to ``+r`` (odd count, so
``z = 0`` is the middle frame), other dimensions 0; ``r`` is 1.5 (the latent range) or
data-driven (a percentile of the particles' ``|z_k|``). Or frames at custom latent points
from a file. Each frame is the canonical map (band-limited to the resolution the model was
trained to) convected by ``f_θ(z)`` with mass-conserving push-splat (2³ sub-points per
voxel by default, so expansion leaves no holes). With a high-resolution map (e.g. the
reconstruction), the deformation is upscaled to its box and applied to it instead.

Outputs per series: ``series_zK/frame_NNN.mrc`` (voxel size set, origin 0 like the input
maps), ``series_zK.cxc`` (ChimeraX: opens the frames as a volume series and plays it),
``series_zK.gif`` (projections, to see the motion without ChimeraX) and ``series_zK.png``
(a strip of central slices); ``strain.mrc`` / ``strain.png`` (how much each mesh cell is
stretched over the particles' latents, :mod:`flexcore.core.strain`); and ``generate.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ...core.deform import VolumeDeformer
from ...core.errors import ConfigError, InputFileError
from ...core.fourier import band_limit_resample_3d
from ...core.io import read_latent_points, read_map, write_map
from ...core.strain import log_strain, measure_strain, write_strain_outputs
from ...core.trained import TrainedModel, load_trained_model
from ...core.utils import distributed
from ...core.utils.logging import get_logger
from ...core.utils.outputs import prepare_outputs
from ...core.utils.provenance import write_provenance
from .series_export import write_chimerax_series, write_motion_gif, write_slice_strip

log = get_logger("flexcore.generate")


def series_points(model: TrainedModel, dim: int, n_frames: int, radius: float | None,
                  percentile: float | None) -> np.ndarray:
    """Latents ``(n_frames, K)`` along dimension ``dim`` through the origin."""
    if radius is None:
        radius = float(np.percentile(np.abs(model.latents[:, dim]), percentile)) if percentile \
            else model.config.latent_limit
    z = np.zeros((n_frames, model.latent_dim), np.float32)
    z[:, dim] = np.linspace(-radius, radius, n_frames)
    return z


def write_series(out: Path, name: str, points: np.ndarray, deformer: VolumeDeformer,
                 psize: float) -> dict:
    """One series: a frame per latent point (``series_<name>/frame_NNN.mrc``), the ChimeraX
    script, the GIF, the slice strip and the points; returns its record."""
    folder = out / f"series_{name}"
    folder.mkdir(exist_ok=True)
    frames = []
    for i, z in enumerate(points):
        f = deformer.frame(z)
        write_map(folder / f"frame_{i:03d}.mrc", f, psize)
        frames.append(f)
    level = float(np.percentile(frames[len(frames) // 2], 99.5)) * 0.35
    write_chimerax_series(out / f"series_{name}.cxc", f"series_{name}/frame_*.mrc", level)
    labels = [", ".join(f"{v:+.2f}" for v in z) for z in points]
    write_motion_gif(frames, out / f"series_{name}.gif", f"series {name}")
    write_slice_strip(frames, out / f"series_{name}.png", labels)
    np.savetxt(out / f"series_{name}_latents.txt", points, fmt="%.5f")
    log.info("series %s: %d frames at box %d (%.3g Å/px) in %s", name, len(frames),
             deformer.box, psize, folder)
    return {"frames": len(frames), "folder": str(folder), "latents": points.tolist()}


def run_generate(checkpoint, out_dir, *, mesh=None, n_frames: int = 41, radius: float | None = None,
                 percentile: float | None = None, latents_file=None, highres_map=None,
                 supersample: int = 2, strain_threshold: float | None = None,
                 device: str = "auto") -> dict:
    """Generate volume series (see the module docstring). Returns a summary dict.

    Also measures the flow's strain over the particles' latents (:mod:`flexcore.core.strain`):
    ``strain.mrc`` and ``strain.png`` at the training box, cells stretched beyond
    ``strain_threshold`` (None = the training's ``strain_threshold``) flagged in
    ``generate.json`` and the log.
    """
    if n_frames < 1:
        raise ConfigError(f"generate.n_frames must be ≥ 1, got {n_frames}")
    if n_frames % 2 == 0:
        log.warning("n_frames = %d is even, so z = 0 is not a frame (use an odd number)", n_frames)
    if percentile is not None and not 0 < percentile <= 100:
        raise ConfigError(f"generate.percentile must be in (0, 100], got {percentile}")
    if strain_threshold is not None and not strain_threshold > 1:
        raise ConfigError(f"generate.strain_threshold must be > 1 (1 = rigid), got {strain_threshold}")
    dev = distributed.resolve_device(device, "generate.device")
    model = load_trained_model(checkpoint, mesh, device=dev)
    names = ["custom"] if latents_file is not None else [f"z{k + 1}" for k in range(model.latent_dim)]
    outputs = ["generate.json", "strain.mrc", "strain.png"] + [
        f"series_{n}{ext}" for n in names
        for ext in (".cxc", ".gif", ".png", "_latents.txt", "/frame_*.mrc")]
    out = prepare_outputs("generate", out_dir, outputs, {
        "checkpoint": checkpoint, "mesh": model.mesh_path, "latent point file": latents_file,
        "map to deform": highres_map})
    strain = measure_strain(lambda z: model.displacements(z, dev), model.mesh, model.latents,
                            threshold=strain_threshold or model.config.strain_threshold)
    write_strain_outputs(model.mesh, strain, out)
    log_strain(strain["summary"], "generate")
    if highres_map is not None:
        vol_np, psize = read_map(highres_map)
        if psize <= 0:
            raise InputFileError(highres_map, "map has no voxel size in its header")
        extent, train_extent = vol_np.shape[0] * psize, model.box * model.pixel_size_A
        if abs(extent - train_extent) > 0.01 * train_extent:
            raise InputFileError(highres_map, f"map spans {extent:.1f} Å but the model's box "
                                              f"spans {train_extent:.1f} Å (different box or crop)")
        volume = torch.from_numpy(vol_np)
    else:
        psize = model.pixel_size_A
        volume = band_limit_resample_3d(model.volume.float(), model.box, model.k_max)
    deformer = VolumeDeformer(model, volume, psize, supersample, dev,
                              keep_outside=highres_map is not None)
    if latents_file is not None:
        series = {"custom": read_latent_points(latents_file, model.latent_dim)}
    else:
        series = {f"z{k + 1}": series_points(model, k, n_frames, radius, percentile)
                  for k in range(model.latent_dim)}
    written = {name: write_series(out, name, points, deformer, psize)
               for name, points in series.items()}
    summary = {"checkpoint": str(Path(checkpoint).resolve()), "epoch": model.epoch,
               "box": deformer.box, "pixel_size_A": psize, "series": written,
               "strain": strain["summary"]}
    write_provenance(out / "generate.json", "generate",
                     dict(n_frames=n_frames, radius=radius, percentile=percentile,
                          latents_file=str(latents_file) if latents_file else None,
                          highres_map=str(highres_map) if highres_map else None,
                          supersample=supersample, strain_threshold=strain_threshold),
                     extra=summary)
    json.dumps(summary)
    return summary
