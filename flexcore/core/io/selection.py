"""The explorer's ``selection.json``: named particle subsets drawn by hand in latent space.

Written by the latent explorer page (``flexcore explore``) and read by ``flexcore select
--from``. Layout (JSON)::

    {"format": "flexcore-selection", "version": 1,
     "n_particles": N, "latent_dim": K,
     "latents_sha256": "<sha256 of the latents as little-endian float32 (N, K), row-major>",
     "checkpoint": "<the model the page was made from>",
     "pca": {"mean": [...K], "components": [[...K], [...K]]},     # K > 2 only
     "subsets": [{"name": "subset1", "n_particles": n,
                  "indices": [0-based prepared-particle indices, ascending],
                  "regions": [{"kind": "lasso", "view": "z1-z2", "axes": ["z1", "z2"],
                               "vertices": [[x, y], ...]},
                              {"kind": "box", "view": "z1-z2", "axes": ["z1", "z2"],
                               "x": [lo, hi], "y": [lo, hi]}]}]}

A subset is the union of its regions; ``indices`` is what counts (the regions say how it was
drawn). Names are file-name-safe (letters, digits, ``_ . -``) and unique: they name the files
``select`` writes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputFileError

SELECTION_FORMAT = "flexcore-selection"
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def latents_sha256(z: np.ndarray) -> str:
    """SHA-256 (hex) of latents ``z (N, K)`` as little-endian float32, row-major: the
    fingerprint a selection carries so it is applied only to the latents it was drawn on."""
    data = np.ascontiguousarray(np.asarray(z, dtype="<f4"))
    return hashlib.sha256(data.tobytes()).hexdigest()


@dataclass
class DrawnSubset:
    """One named subset of a selection file: ``indices`` (ascending, unique, 0-based
    prepared-particle order) and the regions it was drawn with (as in the file)."""

    name: str
    indices: np.ndarray
    regions: list


def read_selection(path, n_particles: int, latent_dim: int,
                   latents_sha: str | None = None) -> list[DrawnSubset]:
    """The subsets of a ``selection.json``, checked against the latents it is applied to.

    Raises :class:`InputFileError` naming ``path`` when the file is not a selection, was drawn
    on other latents (particle count, dimension or fingerprint differ), or a subset has a bad
    name, an index out of range, a repeated index or no particle.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "selection file not found (save one from the explorer page)")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"is not valid JSON: {exc}") from exc
    if not isinstance(record, dict) or record.get("format") != SELECTION_FORMAT:
        raise InputFileError(path, f"is not a selection saved by the explorer (no \"format\": "
                                   f"\"{SELECTION_FORMAT}\")")
    if record.get("n_particles") != n_particles or record.get("latent_dim") != latent_dim:
        raise InputFileError(path, f"was drawn on {record.get('n_particles')} particles with "
                                   f"{record.get('latent_dim')} latent dimension(s); these latents "
                                   f"hold {n_particles} with {latent_dim}")
    if latents_sha and record.get("latents_sha256") not in (None, latents_sha):
        raise InputFileError(path, "was drawn on other latents than these (latents_sha256 "
                                   "differs): use the latents of the training the page was made from")
    subsets = record.get("subsets")
    if not isinstance(subsets, list) or not subsets:
        raise InputFileError(path, "holds no subset")
    out, seen = [], set()
    for i, s in enumerate(subsets):
        out.append(_subset(path, i, s, n_particles, seen))
    return out


def _subset(path: Path, i: int, s, n: int, seen: set) -> DrawnSubset:
    name = s.get("name") if isinstance(s, dict) else None
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise InputFileError(path, f"subset {i + 1} has name {name!r}: use letters, digits, "
                                   "'_', '.' and '-' (it names the subset's file)")
    if name in seen:
        raise InputFileError(path, f"two subsets are named {name!r}")
    seen.add(name)
    try:
        idx = np.asarray(s.get("indices"), dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise InputFileError(path, f"subset {name!r}: indices must be a list of integers") from None
    if len(idx) == 0:
        raise InputFileError(path, f"subset {name!r} holds no particle")
    bad = idx[(idx < 0) | (idx >= n)]
    if len(bad):
        raise InputFileError(path, f"subset {name!r}: index {int(bad[0])} is outside 0…{n - 1}")
    if len(np.unique(idx)) != len(idx):
        raise InputFileError(path, f"subset {name!r} lists a particle twice")
    regions = s.get("regions") or []
    return DrawnSubset(name, np.sort(idx), regions if isinstance(regions, list) else [])
