"""Atomic file writes: write to a temporary name beside the target, then rename.

A crash or a bad input half-way through never leaves a truncated output under the final
name, so Snakemake and users never mistake a partial file for a result. The temporary
name is ``.<stem>.<random>.part<suffix>`` (see :func:`partial_pattern`); a process killed
while writing leaves such a file behind, and the step that owns the output removes it on
its next start (:func:`flexcore.core.utils.outputs.prepare_outputs`).

A full disk (``ENOSPC``, or a quota's ``EDQUOT``) while writing becomes one
:class:`~flexcore.core.errors.OutputPathError` naming the folder, with the temporary file
removed (:func:`flexcore.core.utils.disk.is_disk_full`).

The finished file gets the mode any new file gets, ``0o666 & ~umask`` (``mkstemp``
creates its file ``0o600``), so results are shared with a group as the user's umask says.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .disk import disk_full_error, is_disk_full


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting, then restore at once
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permission bits ``open()`` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def partial_pattern(path: str | os.PathLike, suffix: str | None = None) -> str:
    """Glob pattern (in the target's folder) of the temporary files of ``path``."""
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    return f".{path.stem}.*.part{suffix}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` on success.

    The temporary name keeps the target's suffix (some writers look at it) unless
    ``suffix`` is given. On an exception the temporary file is removed and the target is
    left untouched (a full disk is reported as above). The file is given the umask's mode
    before it is renamed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, new_file_mode())
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if is_disk_full(exc):
            raise disk_full_error(path.parent) from None
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
