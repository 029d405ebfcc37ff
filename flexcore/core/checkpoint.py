"""Checkpoints: everything needed to resume training or generate volumes, written atomically.

A checkpoint is a ``torch.save`` dict with a ``format`` key; it stores the flow generator,
the canonical map, every particle's latent, both optimisers, all RNG states, the resolved
configuration, the mesh file reference (path + SHA-256), the data split and the history.
Files are written under a temporary name and renamed, so a reader (e.g. the generator run
while training continues) never sees a partial file.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from .errors import InputFileError
from .utils.atomic import atomic_path

FORMAT = "flexcore-checkpoint-2"
# Version 1 also stored the flow's shape, which version 2 takes from the configuration and
# the mesh; the other keys are the same, so both read alike.
READABLE_FORMATS = ("flexcore-checkpoint-1", FORMAT)


def rng_state(cuda: bool = True) -> dict:
    """This process's RNG states; ``cuda=False`` leaves out the CUDA ones (reading those
    of every GPU would open a context on each, which a rank of a data-parallel run must
    not do)."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if cuda and torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` (plus the format tag) atomically."""
    state = dict(state, format=FORMAT)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint, with clear errors for missing, truncated or foreign files."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise InputFileError(path, f"cannot be read as a flexcore checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS:
        raise InputFileError(path, f"not a flexcore checkpoint (expected format {FORMAT})")
    return state


def latest_checkpoint(folder) -> Path | None:
    """``checkpoint_last.pt`` in ``folder`` if present."""
    p = Path(folder) / "checkpoint_last.pt"
    return p if p.exists() else None
