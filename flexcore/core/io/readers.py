"""One entry point for particle metadata: RELION ``.star`` or cryoSPARC ``.cs``, by extension
or, for other names, by content.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputFileError
from ..utils.logging import get_logger
from .cryosparc import NUMPY_MAGIC, read_cs, write_cs
from .particles import ParticleTable
from .star import read_star, write_star

log = get_logger("flexcore.io")

_EXPECTED = "expected a RELION .star file (with a data_ block) or a cryoSPARC .cs file"
_DATA_BLOCK = re.compile(rb"^\s*data_", re.MULTILINE)
_SNIFF_BYTES = 65536


def detect_particle_format(path) -> str:
    """``"star"`` or ``"cs"`` for a particle metadata file.

    The extension decides (``.star``, ``.cs``); for any other name the content does: the NumPy
    magic bytes ``\\x93NUMPY`` mean ``.cs``, a line starting with ``data_`` means STAR.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, f"file does not exist; {_EXPECTED}")
    suffix = path.suffix.lower()
    if suffix == ".star":
        return "star"
    if suffix == ".cs":
        return "cs"
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if not head:
        raise InputFileError(path, f"file is empty; {_EXPECTED}")
    if head.startswith(NUMPY_MAGIC):
        return "cs"
    if b"\0" not in head and _DATA_BLOCK.search(head):
        return "star"
    raise InputFileError(
        path, f"is neither a STAR file (no data_ block) nor a NumPy .cs file; {_EXPECTED}"
    )


def read_particles(path, pixel_size_A: float | None = None, project_dir=None) -> ParticleTable:
    """Read RELION STAR (3.0, 3.1/4, 5) or cryoSPARC ``.cs`` particles into a ParticleTable.

    Parameters
    ----------
    path : particle metadata file; the format comes from :func:`detect_particle_format`.
    pixel_size_A : pixel size in Å for files that carry none (e.g. a RELION 3.0 STAR
        without ``rlnImagePixelSize`` or detector pixel size and magnification); ignored
        when the file has its own.
    project_dir : the RELION or cryoSPARC project folder that relative image paths
        (``Extract/job005/p.mrcs``, ``J1/imported/p.mrc``) start from; stored in the table's
        ``project_dir`` and searched first when images are read. Without it the folders
        above the metadata file are searched (see :func:`~flexcore.core.io.particles.image_path_candidates`).

    Every reader validates the table (finite values, lengths, optics groups) before it
    returns; errors are :class:`~flexcore.core.errors.InputFileError` naming the file.
    """
    if project_dir and not Path(project_dir).is_dir():
        raise InputFileError(project_dir, "project_dir is not a folder (the RELION/cryoSPARC "
                                          "project folder the image paths are relative to)")
    if pixel_size_A is not None and not (np.isfinite(pixel_size_A) and pixel_size_A > 0):
        raise ConfigError(f"pixel_size_A (--pixel-size) must be a positive size in Å, got "
                          f"{pixel_size_A:g}")
    if detect_particle_format(path) == "cs":
        table = read_cs(path, pixel_size_A=pixel_size_A)
    else:
        table = read_star(path, pixel_size_A=pixel_size_A, project_dir=project_dir)
    table.project_dir = str(project_dir) if project_dir else ""
    if pixel_size_A is not None:
        used = {round(g.pixel_size_A, 5) for g in table.optics}
        if used != {round(float(pixel_size_A), 5)}:
            log.warning("%s carries its own pixel size (%s Å), which is used; --pixel-size "
                        "%g (pixel_size_A) only applies to files without one", path,
                        ", ".join(f"{v:g}" for v in sorted(used)), pixel_size_A)
    return table


def write_particles(table: ParticleTable, path, extra: dict[str, np.ndarray] | None = None
                    ) -> None:
    """Write ``table`` as ``.star`` or ``.cs`` by the extension of ``path``.

    ``extra`` goes to ``write_star``'s ``extra_columns`` or ``write_cs``'s ``extra_fields``.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".star":
        write_star(table, path, extra_columns=extra)
    elif suffix == ".cs":
        write_cs(table, path, extra_fields=extra)
    else:
        raise ValueError(f"{path}: cannot tell the format from the extension; use .star or .cs")
