"""Free disk space: check it before a large write, and turn a full disk into one line.

:func:`check_free_space` refuses a write that would not fit (its size plus
:data:`MARGIN`) with "needs X GB in DIR, Y GB free" before anything is written.
:func:`~flexcore.core.utils.atomic.atomic_path` turns ``ENOSPC`` (no space) or ``EDQUOT``
(quota) raised while writing into :func:`disk_full_error`, one line naming the folder, and
removes its ``.part`` file. :func:`preallocate` reserves a memory-mapped file's blocks up
front, so a full disk is an ``OSError`` then rather than a ``SIGBUS`` mid-write.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from ..errors import OutputPathError

_FULL = (errno.ENOSPC, errno.EDQUOT)
# room kept free beyond what a write needs (bytes): logs, small outputs, the file system
MARGIN = 16 * 2**20


def free_bytes(folder) -> int:
    """Bytes free to this user on the file system holding ``folder`` (or its nearest
    existing parent, for a folder not created yet)."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def format_bytes(n: float) -> str:
    """``n`` bytes as GB (one decimal where it helps), MB below 1 GB."""
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    return f"{n / 1e6:.1f} MB"


def check_free_space(folder, needed: int, what: str = "its outputs") -> None:
    """Raise :class:`OutputPathError` unless ``folder`` has ``needed`` + :data:`MARGIN`
    bytes free (the message gives both figures, the margin included)."""
    free = free_bytes(folder)
    needed = int(needed) + MARGIN
    if free < needed:
        raise OutputPathError(folder, f"not enough disk space for {what}: needs "
                                      f"{format_bytes(needed)} in {folder}, "
                                      f"{format_bytes(free)} free")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a full disk or quota."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return True
        # torch's zip writer raises a RuntimeError during the OSError of a Python file object
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_error(folder) -> OutputPathError:
    """The one-line error for a disk that filled up while writing into ``folder``."""
    return OutputPathError(folder, f"the disk filled up while writing here "
                                   f"({format_bytes(free_bytes(folder))} free now); free some "
                                   "space and run the step again")


def preallocate(fh, size: int, folder) -> None:
    """Reserve ``size`` bytes for the open file ``fh`` (``posix_fallocate`` where the file
    system supports it), so that a full disk is an ``OSError`` now, not a ``SIGBUS`` when a
    memory map later touches a page that has no block."""
    try:
        os.posix_fallocate(fh.fileno(), 0, size)
    except OSError as exc:
        if exc.errno in _FULL:
            raise OutputPathError(folder, f"not enough disk space: needs {format_bytes(size)} "
                                          f"in {folder}, {format_bytes(free_bytes(folder))} "
                                          "free") from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
