"""Checkpoints: everything needed to resume training or generate volumes, written atomically.

A checkpoint is a ``torch.save`` dict with a ``format`` key; it stores the flow generator,
the canonical map, every particle's latent, both optimisers, all RNG states, the resolved
configuration, the mesh file reference (path + SHA-256), the data split and the history.
Files are written under a temporary name and renamed, so a reader (e.g. the generator run
while training continues) never sees a partial file.

**Safety.** Users exchange checkpoints, and unpickling an arbitrary object runs code chosen by
whoever wrote the file. A checkpoint therefore holds only tensors, numbers, strings, ``None``,
lists, tuples and dicts (:func:`plain`), and is read with ``torch.load(weights_only=True)``,
which refuses anything else before it is built. The RNG states that Python and numpy give as
objects are stored as plain dicts (:func:`rng_state`), numpy arrays as tensors. Checkpoints of
formats 1 and 2 held numpy objects; they are refused with a message saying how to convert
them once, with :func:`convert_checkpoint` (``flexcore convert-checkpoint --trust OLD NEW``),
the only place that unpickles, and only when the user vouches for the file.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, InputFileError
from .utils.atomic import atomic_path
from .utils.disk import check_free_space

FORMAT = "flexcore-checkpoint-3"
# Formats 1 and 2 pickled numpy's and Python's RNG states and the split as numpy arrays, so
# they can only be read by unpickling: convert_checkpoint does that once, for a trusted file.
# (Version 1 also stored the flow's shape, which later versions take from the configuration.)
OLD_FORMATS = ("flexcore-checkpoint-1", "flexcore-checkpoint-2")
# keys stored as int64 tensors and handed back as numpy arrays
_NUMPY_KEYS = ("train_idx", "val_idx")


def convert_hint(path) -> str:
    """The command that converts an old checkpoint at ``path``, for messages."""
    path = Path(path)
    return (f"flexcore convert-checkpoint --trust {path} "
            f"{path.with_name(path.stem + '_v3' + path.suffix)}")


def plain(value):
    """``value`` with numpy arrays turned into tensors and numpy scalars into Python numbers,
    through dicts, lists and tuples; anything else that ``torch.load(weights_only=True)``
    could not read raises ``TypeError`` naming it (a bug, caught on save, not on load)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    raise TypeError(f"a checkpoint cannot hold a {type(value).__name__} ({value!r:.80})")


def rng_state(cuda: bool = True) -> dict:
    """This process's RNG states as plain values; ``cuda=False`` leaves out the CUDA ones
    (reading those of every GPU would open a context on each, which a rank of a data-parallel
    run must not do)."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"bit_generator": str(name), "key": torch.from_numpy(key.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": [int(v) for v in internal], "gauss": gauss},
        "cuda": torch.cuda.get_rng_state_all() if cuda and torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    """Restore the states :func:`rng_state` returned (also the tuples of formats 1 and 2)."""
    torch.set_rng_state(state["torch"])
    npy, py = state["numpy"], state["python"]
    if isinstance(npy, dict):
        npy = (npy["bit_generator"], np.asarray(npy["key"], dtype=np.uint32), npy["pos"],
               npy["has_gauss"], npy["cached_gaussian"])
    np.random.set_state(npy)
    if isinstance(py, dict):
        py = (py["version"], tuple(py["state"]), py["gauss"])
    random.setstate(py)
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain_state(state: dict) -> dict:
    state = dict(state)
    rng = state.get("rng")
    if isinstance(rng, dict) and isinstance(rng.get("numpy"), tuple):  # formats 1 and 2
        name, key, pos, has_gauss, cached = rng["numpy"]
        version, internal, gauss = rng["python"]
        state["rng"] = dict(rng, numpy={
            "bit_generator": str(name), "key": torch.from_numpy(np.asarray(key, np.int64)),
            "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            python={"version": int(version), "state": [int(v) for v in internal],
                    "gauss": gauss})
    return plain(dict(state, format=FORMAT))


def estimated_size(state) -> int:
    """Bytes the tensors of ``state`` take (a checkpoint's size to within its small header)."""
    if torch.is_tensor(state):
        return state.numel() * state.element_size()
    if isinstance(state, np.ndarray):
        return state.nbytes
    if isinstance(state, dict):
        return sum(estimated_size(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(estimated_size(v) for v in state)
    return 16


def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` (plus the format tag) atomically, after checking that the folder has
    room for it (:func:`~flexcore.core.utils.disk.check_free_space`); a full disk while
    writing is one :class:`~flexcore.core.errors.OutputPathError` naming the folder, with no
    partial file (:func:`~flexcore.core.utils.atomic.atomic_path`)."""
    state = _plain_state(state)
    path = Path(path)
    check_free_space(path.parent, estimated_size(state), what="a checkpoint")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)  # a Python file: a full disk surfaces as OSError(ENOSPC)


def _read_plain(path: Path, map_location):
    """``torch.load(weights_only=True)``: nothing in the file is run."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise InputFileError(path, "cannot be read as a flexcore checkpoint (not a torch "
                                 "file)") from exc
        raise InputFileError(path, "holds Python objects that only unpickling could build, and "
                             "unpickling runs code chosen by whoever wrote the file; it was not "
                             "loaded. A checkpoint of an earlier flexcore (format 1 or 2) from a "
                             f"source you trust can be converted once: {convert_hint(path)}") \
            from exc
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFileError(path, f"cannot be read as a flexcore checkpoint ({msg})") from exc


def _check_format(path: Path, state, readable) -> None:
    if not isinstance(state, dict) or state.get("format") not in readable:
        raise InputFileError(path, f"not a flexcore checkpoint (expected format {FORMAT})")


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint safely (module docstring), with clear errors for missing, truncated,
    foreign or old files. ``train_idx``/``val_idx`` come back as numpy arrays."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "checkpoint not found")
    state = _read_plain(path, map_location)
    _check_format(path, state, (FORMAT,) + OLD_FORMATS)
    for key in _NUMPY_KEYS:
        if torch.is_tensor(state.get(key)):
            state[key] = state[key].numpy()
    return state


def convert_checkpoint(old, new, trust: bool = False) -> dict:
    """Convert a checkpoint of format 1 or 2 to the current format, once.

    Reading such a file unpickles it, which runs any code its author put in it: ``trust``
    must be ``True`` (the user vouches for the file's source). The new file is written
    atomically and reads with :func:`load_checkpoint`; returns ``{"from": old format,
    "to": FORMAT}``.
    """
    old, new = Path(old), Path(new)
    if not old.is_file():
        raise InputFileError(old, "checkpoint not found")
    if old.resolve() == new.resolve():
        raise ConfigError(f"{new}: write the converted checkpoint to a new file, not over "
                          f"{old}")
    if not trust:
        raise ConfigError(f"{old}: converting an old checkpoint unpickles it, which runs any "
                          "code it holds; pass --trust (trust=True) only for a file from a "
                          "source you trust")
    try:
        state = torch.load(old, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputFileError(old, f"cannot be read as a flexcore checkpoint ({exc})") from exc
    _check_format(old, state, (FORMAT,) + OLD_FORMATS)
    origin = state["format"]
    save_checkpoint(new, state)
    return {"from": origin, "to": FORMAT}


def latest_checkpoint(folder) -> Path | None:
    """``checkpoint_last.pt`` in ``folder`` if present."""
    p = Path(folder) / "checkpoint_last.pt"
    return p if p.exists() else None
