"""``flexcore explore``: the step function (CLI and Snakemake call this).

Writes ``explorer.html``: one self-contained page (no network, nothing to install) to look at a
training's latent space, see the structure at any latent and draw particle subsets by hand.
The page shows every particle's latent (density-shaded scatter for K = 2, histogram and strip
for K = 1, principal components or any axis pair for K > 2) and, under the pointer, the
structure at the nearest node of a grid over the particles' latents (three projections of the
canonical map deformed there, :mod:`flexcore.stages.explore.images`). Box and lasso regions
fill named subsets, saved from the page as ``selection.json``
(:mod:`flexcore.core.io.selection`), which ``flexcore select --from`` turns into STAR/.cs
subsets of the original particles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...core.errors import ConfigError
from ...core.io.selection import latents_sha256
from ...core.trained import load_trained_model
from ...core.utils.atomic import write_text_atomic
from ...core.utils.logging import get_logger
from ...core.utils.outputs import prepare_outputs
from .images import latent_grid, render_grid
from .page import build_page

log = get_logger("flexcore.explore")


def run_explore(checkpoint, out_dir, *, mesh=None, grid: int = 11, max_points: int = 20000,
                image_px: int = 64, supersample: int = 1, seed: int = 0,
                device: str = "auto", name: str = "explorer.html") -> dict:
    """Write the latent explorer page for a trained model.

    Parameters
    ----------
    checkpoint : training checkpoint or ``model.pt`` (its latents are the particles').
    out_dir : output folder; the page is ``out_dir/name``.
    mesh : mesh file (default: the one the checkpoint records).
    grid : nodes per grid axis (``grid`` maps for K = 1, ``grid²`` otherwise).
    max_points : at most this many particles are drawn (a seeded random subset); selections
        always test every particle.
    image_px : side of each projection in the page (pixels; the training box when smaller).
    supersample : sub-points per voxel edge of the mass-conserving splat.
    seed : seed of the drawn subset.
    device : ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` for rendering the maps.

    Returns a summary (page path and size, particles, drawn, grid nodes).
    """
    if not (isinstance(grid, int) and 2 <= grid <= 41):
        raise ConfigError(f"explore.grid = {grid!r}: must be an integer 2…41")
    if not (isinstance(max_points, int) and max_points >= 100):
        raise ConfigError(f"explore.max_points = {max_points!r}: must be an integer ≥ 100")
    if not (isinstance(image_px, int) and 8 <= image_px <= 256):
        raise ConfigError(f"explore.image_px = {image_px!r}: must be an integer 8…256")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    model = load_trained_model(checkpoint, mesh, device=dev)
    out = prepare_outputs("explore", out_dir, [name],
                          {"checkpoint": checkpoint, "mesh": model.mesh_path})
    z = np.asarray(model.latents, dtype=np.float32)
    n, k = z.shape
    drawn = None
    if n > max_points:
        drawn = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    nodes = latent_grid(z, grid)
    log.info("rendering the structure at %d grid nodes (box %d, %s)", len(nodes.latents),
             model.box, dev)
    images = render_grid(model, nodes.latents, image_px=image_px, supersample=supersample,
                         device=dev)
    pca = None if nodes.mean is None else {"mean": nodes.mean.tolist(),
                                           "components": nodes.components.tolist()}
    grid_data = {"kind": "latent" if k <= 2 else "pca", "axes": [a.tolist() for a in nodes.axes],
                 "latents": nodes.latents.round(5).tolist(), "images": images}
    drawn_text = f"{n} particles" if drawn is None else f"{n} particles ({max_points} drawn)"
    meta = (f"{Path(checkpoint).name}, epoch {model.epoch}: {drawn_text}, {k} latent "
            f"dimension(s), structure on a {' × '.join([str(grid)] * min(k, 2))} grid "
            f"(box {model.box}, {model.pixel_size_A:.2f} Å/px)")
    folder = Path(checkpoint).resolve().parent  # e.g. results/<dataset>/train
    html = build_page(title=f"{folder.parent.name}/{folder.name}", meta=meta,
                      latents=z, drawn=drawn, sha256=latents_sha256(z),
                      checkpoint=str(Path(checkpoint).resolve()), grid=grid_data, pca=pca)
    write_text_atomic(out / name, html)
    size = (out / name).stat().st_size
    log.info("wrote %s (%.2f MB): %d particles, %d grid images", out / name, size / 1e6, n,
             len(images))
    return {"page": str(out / name), "bytes": size, "n_particles": n, "latent_dim": k,
            "drawn": n if drawn is None else max_points, "grid_nodes": len(images)}
