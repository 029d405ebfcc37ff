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
stretched over the particles' latents, :mod:`flexcore.strain`); and ``generate.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402

from .errors import ConfigError, InputFileError  # noqa: E402
from .fourier import band_limit_resample_3d  # noqa: E402
from .io import read_map, write_map  # noqa: E402
from .model.trained import TrainedModel, load_trained_model  # noqa: E402
from .ops import splat_volume  # noqa: E402
from .strain import log_strain, measure_strain, write_strain_outputs  # noqa: E402
from .utils.atomic import atomic_path, write_text_atomic  # noqa: E402
from .utils.logging import get_logger  # noqa: E402
from .utils.provenance import write_provenance  # noqa: E402

log = get_logger("flexcore.generate")


def read_latent_points(path, k: int) -> np.ndarray:
    """Custom latent points ``(P, K)`` from ``.npy``, ``.csv``/``.txt`` (one point per row) or
    a particle file with latent columns (``_flexLatentN`` / ``components_mode_N/value``)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "latent point file not found")
    if path.suffix == ".npy":
        z = np.load(path)
    elif path.suffix in (".csv", ".txt", ".tsv"):
        text = path.read_text().strip().splitlines()
        rows = [r.replace(",", " ").split() for r in text if r.strip() and not r.startswith("#")]
        try:
            z = np.array([[float(v) for v in r] for r in rows])
        except ValueError:
            z = np.array([[float(v) for v in r] for r in rows[1:]])  # header row
    else:
        from .io import read_particles
        from .train.step import read_init_latents

        n = len(read_particles(path))
        z = read_init_latents(path, n, k)
    z = np.atleast_2d(np.asarray(z, dtype=np.float32))
    if z.shape[1] != k:
        raise InputFileError(path, f"latent points have {z.shape[1]} dimensions, the model has {k}")
    if not np.isfinite(z).all():
        raise InputFileError(path, "latent points contain NaN or infinite values")
    return z


def series_points(model: TrainedModel, dim: int, n_frames: int, radius: float | None,
                  percentile: float | None) -> np.ndarray:
    """Latents ``(n_frames, K)`` along dimension ``dim`` through the origin."""
    if radius is None:
        radius = float(np.percentile(np.abs(model.latents[:, dim]), percentile)) if percentile \
            else model.config.latent_limit
    z = np.zeros((n_frames, model.latent_dim), np.float32)
    z[:, dim] = np.linspace(-radius, radius, n_frames)
    return z


class VolumeDeformer:
    """Convects a map on some box under the model's flow (mesh upscaled to that box).

    The map times the (upscaled) soft mask moves; ``keep_outside`` keeps the rest in place.
    ``mesh`` is the model's mesh already upscaled to the map's box (to share one upscaling
    between several maps); by default it is upscaled here.
    """

    def __init__(self, model: TrainedModel, volume: torch.Tensor, pixel_size_A: float,
                 supersample: int, device, keep_outside: bool = True, mesh=None):
        self.model = model
        self.box = int(volume.shape[-1])
        self.scale = self.box / model.box
        if mesh is None:
            mesh = model.mesh if self.box == model.box else model.mesh.upscale(self.box)
        elif mesh.box != self.box:
            raise ValueError(f"mesh is for box {mesh.box}, the map is {self.box}")
        vd = mesh.voxel_data()
        self.voxel_index = torch.as_tensor(vd["voxel_index"], device=device)
        self.coords = torch.as_tensor(vd["coords"], device=device)
        self.vertex_index = torch.as_tensor(vd["vertex_index"], device=device)
        self.bary = torch.as_tensor(vd["barycentric"], device=device)
        soft = torch.as_tensor(mesh.mask_soft, device=device, dtype=torch.float32).flatten()
        flat = volume.to(device).flatten()
        self.density = flat[self.voxel_index] * soft[self.voxel_index]
        # with ``keep_outside`` (a user's map) what lies outside the soft mask stays where it
        # is; the canonical map has no meaning there, so it is left out
        if keep_outside:
            static = flat.clone()
            static[self.voxel_index] = flat[self.voxel_index] * (1 - soft[self.voxel_index])
        else:
            static = torch.zeros_like(flat)
        self.static = static.view(volume.shape)
        self.supersample = supersample
        self.device = device

    @torch.no_grad()
    def frame(self, z: np.ndarray) -> np.ndarray:
        disp = self.model.displacements(z[None], device=self.device)[0] * self.scale
        moved = splat_volume(self.density, self.coords, self.vertex_index, self.bary, disp,
                             self.box, supersample=self.supersample)
        return (moved + self.static).cpu().numpy()


def write_chimerax_series(path: Path, frame_glob: str, level: float) -> None:
    """A ChimeraX command file that opens frames as a volume series and plays it.
    (ChimeraX runs a .cxc with its folder as the current directory, so paths are relative.)"""
    write_text_atomic(path, "\n".join([
        f"# flexcore volume series: open in ChimeraX with `open {path.name}`",
        f"open {frame_glob} vseries true",
        f"volume #1 level {level:.4g} style surface",
        "vseries play #1 loop true direction oscillate",
        "view",
    ]) + "\n")


def write_motion_gif(frames: list[np.ndarray], path: Path, title: str) -> None:
    """Animated GIF of projections along z, x and y (forth and back)."""
    projs = [np.stack([f.sum(0), f.sum(1), f.sum(2)]) for f in frames]
    lo, hi = min(p.min() for p in projs), max(p.max() for p in projs)
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
    ims = []
    for ax, name, img in zip(axes, ("along z", "along y", "along x"), projs[0]):
        ims.append(ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower"))
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    order = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))

    def update(i):
        for im, img in zip(ims, projs[order[i]]):
            im.set_data(img)
        fig.suptitle(f"{title} — frame {order[i] + 1}/{len(frames)}", fontsize=9)
        return ims

    anim = FuncAnimation(fig, update, frames=len(order), blit=False)
    with atomic_path(path) as tmp:
        anim.save(tmp, writer=PillowWriter(fps=8))
    plt.close(fig)


def write_slice_strip(frames: list[np.ndarray], path: Path, labels: list[str]) -> None:
    picks = np.unique(np.linspace(0, len(frames) - 1, min(5, len(frames))).round().astype(int))
    fig, axes = plt.subplots(1, len(picks), figsize=(2.4 * len(picks), 2.6), squeeze=False)
    for ax, i in zip(axes[0], picks):
        ax.imshow(frames[i].sum(0), cmap="gray", origin="lower")
        ax.set_title(labels[i], fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)


def run_generate(checkpoint, out_dir, *, mesh=None, n_frames: int = 41, radius: float | None = None,
                 percentile: float | None = None, latents_file=None, highres_map=None,
                 supersample: int = 2, strain_threshold: float | None = None,
                 device: str = "auto") -> dict:
    """Generate volume series (see the module docstring). Returns a summary dict.

    Also measures the flow's strain over the particles' latents (:mod:`flexcore.strain`):
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
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    model = load_trained_model(checkpoint, mesh, device=dev)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
    written = {}
    for name, points in series.items():
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
        written[name] = {"frames": len(frames), "folder": str(folder),
                         "latents": points.tolist()}
        log.info("series %s: %d frames at box %d (%.3g Å/px) in %s", name, len(frames),
                 deformer.box, psize, folder)
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
