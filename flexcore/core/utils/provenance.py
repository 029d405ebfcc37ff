"""Provenance stamped into every output folder: versions, git commit, command, seed."""

from __future__ import annotations

import datetime
import importlib.util
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


def _torch_versions() -> tuple[str | None, str | None]:
    """torch's version and CUDA build. A step that never imported torch (select, for one)
    reads them from torch's ``version.py`` alone: importing torch takes 2-3 s."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.__version__, torch.version.cuda
    try:
        spec = importlib.util.find_spec("torch")  # finds the package without importing it
        source = Path(spec.origin).with_name("version.py")
        version_spec = importlib.util.spec_from_file_location("_flexcore_torch_version", source)
        module = importlib.util.module_from_spec(version_spec)
        version_spec.loader.exec_module(module)
        return module.__version__, module.cuda
    except Exception:  # an unusual torch install: its distribution's version, CUDA unknown
        return _version("torch"), None


def provenance(step: str, params: dict | None = None) -> dict:
    """A record of what produced an output: step, parameters, versions, commit, time."""
    from ... import __version__

    torch_version, cuda_version = _torch_versions()

    here = Path(__file__).resolve().parents[3]  # the checkout flexcore/core/utils/ lies in
    return {
        "step": step,
        "parameters": params or {},
        "flexcore": __version__,
        "torch": torch_version,
        "cuda": cuda_version,
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
