"""Write chosen rows of a user's particle file, unchanged: the file RELION or cryoSPARC reads
back to refine a subset at full resolution.

Unlike :func:`~flexcore.core.io.write_star` (which rewrites poses, origins and CTF columns from a
:class:`~flexcore.core.io.ParticleTable`), these writers copy the input's rows as they are:

* STAR: every block of the input in its order — the ``data_optics`` table (RELION 3.1+)
  untouched, simple (key–value) blocks untouched, and the particle loop restricted to the
  chosen rows, every column kept. Numbers are written with the shortest text that reads
  back to the same float64 value (``repr``), so a reader sees exactly the original values;
  a ``# version NNNNN`` line of the input is repeated before every block, as RELION writes it.
* cryoSPARC ``.cs``: the input's structured array indexed by the rows (every field, ``uid``
  included, with its dtype), and a ``.csg`` result-group file beside it for cryoSPARC's
  "Import Result Group".

Image paths (``rlnImageName`` / ``blob/path``) stay as the input names them
(``image_paths="original"``; RELION and cryoSPARC resolve relative names against their
project folder, so the file works where the input did), or become absolute paths of the
stacks found from the input's folder (``"absolute"``; the file then works from anywhere).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from ..errors import ConfigError, InputFileError
from ..utils.atomic import atomic_path
from ..utils.logging import get_logger
from .cryosparc import _load as load_cs_array
from .cryosparc_group import write_csg
from .particles import resolve_image_path
from .readers import detect_particle_format
from .star import _STRING_COLUMNS, _particle_block

log = get_logger("flexcore.io.subset")

IMAGE_PATH_MODES = ("original", "absolute")
_VERSION_LINE = re.compile(r"^#\s*version\s+\d+\s*$", re.MULTILINE)


def write_source_rows(source, rows, out_path, image_paths: str = "original",
                      project_dir=None, extra_columns: dict | None = None) -> Path:
    """Write rows ``rows`` (0-based, in that order) of particle file ``source`` to ``out_path``.

    The output format is the input's (``.star`` or ``.cs``, by content); ``out_path`` gets
    that extension if it has another. With ``image_paths="absolute"``, stacks are looked up as
    the readers do (beside ``source``, in the folders above it, and under ``project_dir``).
    ``extra_columns`` (STAR only: label without ``_`` → ``(len(rows),)`` values) are set in
    the particle loop, replacing a column of that name (e.g. ``rlnClassNumber``).
    Returns the path written (atomically).

    Raises ``InputFileError`` naming ``source`` when it cannot be read or a row is out of
    range, ``ValueError`` for an unknown ``image_paths`` mode.
    """
    if image_paths not in IMAGE_PATH_MODES:
        raise ConfigError(f"image_paths must be one of {IMAGE_PATH_MODES}, got {image_paths!r}")
    source = Path(source)
    kind = detect_particle_format(source)
    out = Path(out_path).with_suffix(f".{kind}")
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if kind == "cs":
        if extra_columns:
            raise ValueError("extra_columns are for STAR files")
        _write_cs_rows(source, rows, out, image_paths, project_dir)
    else:
        _write_star_rows(source, rows, out, image_paths, project_dir, extra_columns)
    return out


def _check_rows(rows: np.ndarray, n: int, source: Path) -> None:
    if len(rows) and (rows.min() < 0 or rows.max() >= n):
        raise InputFileError(source, f"holds {n} particles but row {int(rows.max()) + 1} was asked "
                                     "for (is this the file prep was run on?)")


def _read_all_blocks(path: Path) -> dict:
    """Every block of a STAR file (loops as DataFrames, simple blocks as dicts), in order."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return starfile.read(path, always_dict=True, parse_as_string=_STRING_COLUMNS)
    except Exception as exc:  # starfile/pandas raise many types with terse messages
        raise InputFileError(path, f"cannot be parsed as a STAR file: {exc}") from exc


def _write_star_rows(source: Path, rows: np.ndarray, out: Path, image_paths: str,
                     project_dir=None, extra_columns: dict | None = None) -> None:
    blocks = _read_all_blocks(source)
    loops = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    if not loops:
        raise InputFileError(source, "no data_ block with a loop_ found")
    particles = _particle_block(loops, source)
    name = next(k for k, v in loops.items() if v is particles)
    _check_rows(rows, len(particles), source)
    chosen = particles.iloc[rows].reset_index(drop=True)
    if image_paths == "absolute" and "rlnImageName" in chosen.columns:
        chosen["rlnImageName"] = _absolute_image_names(chosen["rlnImageName"], source,
                                                         project_dir)
    for label, values in (extra_columns or {}).items():
        chosen[label] = np.asarray(values)
    blocks = dict(blocks)
    blocks[name] = chosen
    text = starfile.writer.StarWriter(blocks, float_format=None).to_string()
    head = source.read_text(errors="replace")[:65536]
    version = _VERSION_LINE.search(head)
    with atomic_path(out) as tmp:
        tmp.write_text(_tidy_star_text(text, version.group(0).strip() if version else None,
                                       f"{len(rows)} of {len(particles)} particles of {source}"))


def _tidy_star_text(text: str, version_line: str | None, what: str) -> str:
    """starfile's text with its banner replaced, blank-line runs collapsed and the input's
    version line before every block."""
    out = [f"# flexcore select: {what}"]
    for line in text.splitlines()[1:]:
        if not line and out[-1] == "":
            continue
        if line.startswith("data_"):
            if out[-1] != "":
                out.append("")
            if version_line:
                out += [version_line, ""]
        out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"


def _absolute_image_names(names: pd.Series, source: Path, project_dir=None) -> list[str]:
    """``N@stack`` names with every stack that resolves from ``source``'s folder made absolute."""
    root = source.parent
    out, missing = [], set()
    cache: dict[str, str] = {}
    for name in names.astype(str):
        index, sep, stack = name.rpartition("@") if "@" in name else ("", "", name)
        if stack not in cache:
            found = resolve_image_path(stack, root, project_dir)
            cache[stack] = str(found.resolve()) if found is not None else stack
            if found is None:
                missing.add(stack)
        out.append(f"{index}{sep}{cache[stack]}")
    if missing:
        log.warning("%s: %d image stack(s) not found (e.g. %s); their names are kept as given",
                    source, len(missing), sorted(missing)[0])
    return out


def _write_cs_rows(source: Path, rows: np.ndarray, out: Path, image_paths: str,
                   project_dir=None) -> None:
    arr = load_cs_array(source)
    _check_rows(rows, len(arr), source)
    chosen = arr[rows]
    if image_paths == "absolute" and "blob/path" in (arr.dtype.names or ()):
        chosen = _absolute_blob_paths(chosen, source, project_dir)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:  # a handle: np.save would add .npy
        np.save(fh, chosen, allow_pickle=False)
    write_csg(out, len(chosen), chosen.dtype.names,
              description=f"{len(rows)} of {len(arr)} particles of {source.name}")


def _absolute_blob_paths(arr: np.ndarray, source: Path, project_dir=None) -> np.ndarray:
    """A copy of ``arr`` whose ``blob/path`` entries that resolve are absolute (the field's
    byte width grows to fit; a leading ``>`` export marker is dropped from rewritten names)."""
    root = source.parent
    uniques, codes = np.unique(arr["blob/path"], return_inverse=True)
    new = []
    for u in uniques:
        text = u.decode("utf-8", errors="replace")
        stripped = text[1:] if text.startswith(">") else text
        found = resolve_image_path(stripped, root, project_dir)
        new.append(str(found.resolve()).encode("utf-8") if found is not None else u)
    paths = np.asarray(new, dtype=bytes)[codes.ravel()]
    descr = [(n, paths.dtype if n == "blob/path" else arr.dtype.fields[n][0])
             for n in arr.dtype.names]
    out = np.empty(len(arr), dtype=descr)
    for n in arr.dtype.names:
        out[n] = paths if n == "blob/path" else arr[n]
    return out
