"""Export latents: ``.npy``, cryoDRGN's ``z.pkl``, and appended to copies of the user's input
STAR and ``.cs`` (with its ``.csg`` result-group file for cryoSPARC's "Import Result Group")."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.errors import ConfigError
from ...core.io import read_particles, write_cs, write_star
from ...core.io.cryodrgn import write_latents_pkl
from ...core.utils.atomic import atomic_path
from ...core.utils.logging import get_logger

log = get_logger("flexcore.train.export")


def latent_columns(z: np.ndarray) -> dict[str, np.ndarray]:
    """STAR columns ``_flexLatent1..K``."""
    return {f"flexLatent{k + 1}": z[:, k].astype(np.float64) for k in range(z.shape[1])}


def latent_fields(z: np.ndarray) -> dict[str, np.ndarray]:
    """cryoSPARC fields ``components_mode_k/component`` (u4 = k) and ``/value`` (f4)."""
    out = {}
    for k in range(z.shape[1]):
        out[f"components_mode_{k}/component"] = np.full(len(z), k, dtype=np.uint32)
        out[f"components_mode_{k}/value"] = z[:, k].astype(np.float32)
    return out


def export_latents(z: np.ndarray, source_particles, source_rows: np.ndarray, out_dir,
                   project_dir=None, image_paths: str = "original") -> dict:
    """Write ``latents.npy``, ``z.pkl``, ``latents.star`` and ``latents.cs`` under ``out_dir``.

    ``z.pkl`` is the ``(N, K)`` float32 array pickled as cryoDRGN writes its latents, so
    cryoDRGN's analysis tools (and CryoBench's scripts) read flexcore's latents directly.

    ``source_rows`` maps each prepared particle to its row in ``source_particles`` (the
    file given to ``prep``), so the STAR/.cs copies keep every input column and can be
    used to select particles by latent in RELION or cryoSPARC. ``project_dir`` is the
    project folder the source's image paths are relative to (prep's ``project_dir``).
    ``image_paths``: ``original`` (stack names as the input gives them, so the files open
    from the same RELION or cryoSPARC project folder as the input) or ``absolute``.
    """
    if image_paths not in ("original", "absolute"):
        raise ConfigError(f"image_paths = {image_paths!r}: must be original or absolute")
    out = Path(out_dir)
    with atomic_path(out / "latents.npy") as tmp:
        np.save(tmp, z.astype(np.float32))
    write_latents_pkl(z, out / "z.pkl")
    table = read_particles(source_particles, project_dir=project_dir).subset(np.asarray(source_rows))
    write_star(table, out / "latents.star", extra_columns=latent_columns(z),
               image_paths=image_paths)
    # uids of the source rows: the same particle has the same uid in every .cs from this input
    write_cs(table, out / "latents.cs", extra_fields=latent_fields(z), image_paths=image_paths,
             source_rows=source_rows)
    log.info("wrote latents for %d particles: latents.npy, z.pkl, latents.star, latents.cs",
             len(z))
    return {"npy": out / "latents.npy", "pkl": out / "z.pkl", "star": out / "latents.star",
            "cs": out / "latents.cs"}
