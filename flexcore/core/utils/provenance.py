"""Provenance stamped into every output folder: versions, git commit, command, seed."""

from __future__ import annotations

import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path

from .atomic import write_text_atomic


def _git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def provenance(step: str, params: dict | None = None) -> dict:
    """A record of what produced an output: step, parameters, versions, commit, time."""
    import torch

    from ... import __version__

    here = Path(__file__).resolve().parents[3]  # the checkout flexcore/core/utils/ lies in
    return {
        "step": step,
        "parameters": params or {},
        "flexcore": __version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "snakemake": _version("snakemake"),
        "numpy": _version("numpy"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": platform.node(),
        "git_commit": _git_commit(Path.cwd()) or _git_commit(here),
        "command": " ".join(sys.argv),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def write_provenance(path, step: str, params: dict | None = None, extra: dict | None = None) -> dict:
    """Write :func:`provenance` (plus ``extra``) as JSON, atomically; return the record."""
    record = provenance(step, params)
    if extra:
        record.update(extra)
    write_text_atomic(path, json.dumps(record, indent=2, default=_jsonable) + "\n")
    return record


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
