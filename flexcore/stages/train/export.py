"""Export latents: ``.npy``, cryoDRGN's ``z.pkl``, and appended to copies of the user's input
STAR and ``.cs``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
                   project_dir=None) -> dict:
    """Write ``latents.npy``, ``z.pkl``, ``latents.star`` and ``latents.cs`` under ``out_dir``.

    ``z.pkl`` is the ``(N, K)`` float32 array pickled as cryoDRGN writes its latents, so
    cryoDRGN's analysis tools (and CryoBench's scripts) read flexcore's latents directly.

    ``source_rows`` maps each prepared particle to its row in ``source_particles`` (the
    file given to ``prep``), so the STAR/.cs copies keep every input column and can be
    used to select particles by latent in RELION or cryoSPARC. ``project_dir`` is the
    project folder the source's image paths are relative to (prep's ``project_dir``).
    """
    out = Path(out_dir)
    with atomic_path(out / "latents.npy") as tmp:
        np.save(tmp, z.astype(np.float32))
    write_latents_pkl(z, out / "z.pkl")
    table = read_particles(source_particles, project_dir=project_dir).subset(np.asarray(source_rows))
    write_star(table, out / "latents.star", extra_columns=latent_columns(z))
    write_cs(table, out / "latents.cs", extra_fields=latent_fields(z))
    log.info("wrote latents for %d particles: latents.npy, z.pkl, latents.star, latents.cs",
             len(z))
    return {"npy": out / "latents.npy", "pkl": out / "z.pkl", "star": out / "latents.star",
            "cs": out / "latents.cs"}
