"""Latent coordinates read from files: ``.npy``, cryoDRGN ``z.pkl`` (read without running
code, :func:`~flexcore.core.io.cryodrgn.read_latents_pkl`), text tables, or particle files
with latent columns (``_flexLatentN`` in STAR, ``components_mode_N/value`` in cryoSPARC ``.cs``: the
columns :func:`~flexcore.core.io.star.latents_to_star_columns` and
:func:`~flexcore.core.io.cryosparc.latents_to_cs_fields` write)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputFileError
from .cryodrgn import read_latents_pkl
from .readers import read_particles


def load_npy(path: Path) -> np.ndarray:
    """A ``.npy`` array, never unpickled (``allow_pickle=False``: an object array is refused,
    its code never runs), with errors naming the file."""
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError for object arrays, OSError/EOFError for damage
        raise InputFileError(path, f"cannot be read as a numeric .npy array: {exc}") from exc


def read_init_latents(path, n: int, k: int) -> np.ndarray:
    """Latents to start from: ``.npy``/``z.pkl`` ``(N, K)`` or a STAR/.cs with latent columns."""
    path = Path(path)
    if path.suffix == ".npy":
        z = load_npy(path)
    elif path.suffix == ".pkl":
        z = read_latents_pkl(path)
    else:
        t = read_particles(path)
        raw = t.raw
        cols = [c for c in getattr(raw, "columns", []) if c.startswith("flexLatent")]
        if not cols and raw is not None and hasattr(raw, "dtype"):
            cols = [f for f in raw.dtype.names if f.startswith("components_mode_") and f.endswith("/value")]
        if not cols:
            raise InputFileError(path, "no latent columns (_flexLatentN or components_mode_N/value)")
        z = np.stack([np.asarray(raw[c], dtype=np.float64) for c in cols], axis=1)
    if z.ndim != 2 or z.shape[0] != n or z.shape[1] < k:
        raise InputFileError(path, f"latents have shape {z.shape}; need ({n}, ≥{k})")
    return z[:, :k]


def read_latent_points(path, k: int) -> np.ndarray:
    """Custom latent points ``(P, K)`` from ``.npy``, cryoDRGN ``z.pkl``, ``.csv``/``.txt`` (one
    point per row) or a particle file with latent columns (``_flexLatentN`` /
    ``components_mode_N/value``)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "latent point file not found")
    if path.suffix == ".npy":
        z = load_npy(path)
    elif path.suffix == ".pkl":
        z = read_latents_pkl(path)
    elif path.suffix in (".csv", ".txt", ".tsv"):
        text = path.read_text().strip().splitlines()
        rows = [r.replace(",", " ").split() for r in text if r.strip() and not r.startswith("#")]
        try:
            z = np.array([[float(v) for v in r] for r in rows])
        except ValueError:
            z = np.array([[float(v) for v in r] for r in rows[1:]])  # header row
    else:
        n = len(read_particles(path))
        z = read_init_latents(path, n, k)
    z = np.atleast_2d(np.asarray(z, dtype=np.float32))
    if z.shape[1] != k:
        raise InputFileError(path, f"latent points have {z.shape[1]} dimensions, the model has {k}")
    if not np.isfinite(z).all():
        raise InputFileError(path, "latent points contain NaN or infinite values")
    return z
