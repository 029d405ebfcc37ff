"""Checks every step makes on its output folder before it does any work.

:func:`prepare_outputs` creates the folder and proves it can be written (a file in the
way, no permission and a read-only file system become one-line
:class:`~flexcore.core.errors.OutputPathError` messages instead of tracebacks half-way
through), refuses outputs that would replace one of the step's inputs (compared as
resolved paths and, for existing files, by inode: links and ``..`` do not fool it), and
removes the temporary files (:func:`~flexcore.core.utils.atomic.partial_pattern`) that an
interrupted earlier run of the same step left beside its outputs.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import OutputPathError
from .atomic import partial_pattern
from .logging import get_logger

log = get_logger("flexcore.outputs")

_WHY = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "it is on a read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
}


def _blocking_file(folder: Path) -> Path | None:
    """The first existing ancestor of ``folder`` (itself included) that is not a folder."""
    for p in [folder, *folder.parents]:
        if p.exists():
            return None if p.is_dir() else p
    return None


def ensure_writable_folder(folder, step: str) -> Path:
    """Create ``folder`` (with parents) and check a file can be created in it.

    Raises :class:`OutputPathError` naming the folder and the reason.
    """
    folder = Path(folder)
    blocker = _blocking_file(folder)
    if blocker is not None:
        raise OutputPathError(folder, f"cannot be the {step} output folder: {blocker} is a file, "
                                      "not a folder; choose another output folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".flexcore-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = _WHY.get(exc.errno, exc.strerror or str(exc))
        raise OutputPathError(folder, f"cannot write the {step} outputs here: {why}") from exc
    return folder


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwriting_inputs(outputs: Iterable, inputs: Mapping[str, object], step: str) -> None:
    """Raise :class:`OutputPathError` when an output is one of the inputs.

    ``outputs`` are paths; a name with ``*`` is a pattern (e.g. ``frame_*.mrc``).
    ``inputs`` maps a description (``"particles"``, ``"mask"``) to a path or ``None``.
    """
    given = [(what, Path(p)) for what, p in inputs.items() if p not in (None, "")]
    for out in map(Path, outputs):
        for what, inp in given:
            if "*" in out.name:
                hit = fnmatch.fnmatch(str(inp.resolve()), str(out.parent.resolve() / out.name))
            else:
                hit = _same_file(out, inp)
            if hit:
                raise OutputPathError(
                    inp, f"is the {what} given to {step}, and {step} would write its output "
                         f"{out.name} there, replacing it; choose another output folder")


def remove_stale_partials(outputs: Iterable) -> list[Path]:
    """Remove the temporary files of ``outputs`` left by an interrupted earlier run."""
    removed = []
    for out in map(Path, outputs):
        if not out.parent.is_dir():
            continue
        for stale in out.parent.glob(partial_pattern(out)):
            try:
                stale.unlink()
                removed.append(stale)
            except FileNotFoundError:
                pass
    if removed:
        log.info("removed %d temporary file(s) an interrupted run left behind: %s", len(removed),
                 ", ".join(str(p) for p in removed[:5]) + (" …" if len(removed) > 5 else ""))
    return removed


def prepare_outputs(step: str, out_dir, outputs: Iterable, inputs: Mapping[str, object] | None = None
                    ) -> Path:
    """Before ``step`` does any work: check no output replaces an input, make ``out_dir``
    and check it can be written, and clean temporary files of the step's outputs.

    Parameters
    ----------
    step : the step's name, for messages (``"prep"``).
    out_dir : the output folder.
    outputs : file names relative to ``out_dir`` (or absolute paths); ``*`` patterns allowed.
    inputs : description → input path (``None`` entries are skipped).

    Returns the output folder as a :class:`~pathlib.Path`.
    """
    out = Path(out_dir)
    paths = [p if Path(p).is_absolute() else out / p for p in outputs]
    refuse_overwriting_inputs(paths, inputs or {}, step)
    ensure_writable_folder(out, step)
    remove_stale_partials(paths)
    return out
