"""One entry point for particle metadata: RELION ``.star``, cryoSPARC ``.cs`` (by extension
or, for other names, by content) or a cryoDRGN dataset (a ``.mrcs`` stack or ``.txt`` list of
stacks with its ``poses.pkl`` and ``ctf.pkl``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputFileError
from ..utils.logging import get_logger
from .cryodrgn import read_cryodrgn, read_stack_list
from .particles import ParticleTable

# The first bytes of a .npy/.cs file. The STAR and .cs readers are imported where they are
# used: they pull in pandas and scipy.spatial, and count_particles (job sizing) needs neither.
NUMPY_MAGIC = b"\x93NUMPY"

log = get_logger("flexcore.io")

_EXPECTED = ("expected a RELION .star file (with a data_ block), a cryoSPARC .cs file or a "
             "cryoDRGN .mrcs stack / .txt list of .mrcs stacks")
_DATA_BLOCK = re.compile(rb"^\s*data_", re.MULTILINE)
_SNIFF_BYTES = 65536


def detect_particle_format(path) -> str:
    """``"star"``, ``"cs"`` or ``"cryodrgn"`` for a particle file.

    The extension decides (``.star``, ``.cs``; ``.mrcs``/``.mrc`` are cryoDRGN image stacks);
    for any other name the content does: the NumPy magic bytes ``\\x93NUMPY`` mean ``.cs``, a
    line starting with ``data_`` means STAR, and a ``.txt`` without one is a cryoDRGN list of
    stacks.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, f"file does not exist; {_EXPECTED}")
    suffix = path.suffix.lower()
    if suffix == ".star":
        return "star"
    if suffix == ".cs":
        return "cs"
    if suffix in (".mrcs", ".mrc"):
        return "cryodrgn"
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if not head:
        raise InputFileError(path, f"file is empty; {_EXPECTED}")
    if head.startswith(NUMPY_MAGIC):
        return "cs"
    if b"\0" not in head and _DATA_BLOCK.search(head):
        return "star"
    if suffix == ".txt" and b"\0" not in head and _lists_stacks(head):
        return "cryodrgn"
    raise InputFileError(
        path, f"is neither a STAR file (no data_ block) nor a NumPy .cs file; {_EXPECTED}"
    )


def _lists_stacks(head: bytes) -> bool:
    """True when every non-empty line of ``head`` names an ``.mrcs``/``.mrc`` file."""
    lines = [x.strip() for x in head.decode("utf-8", "replace").splitlines() if x.strip()]
    if len(head) == _SNIFF_BYTES:
        lines = lines[:-1]  # the read may end inside the last name
    return bool(lines) and all(x.lower().endswith((".mrcs", ".mrc")) for x in lines)


def read_particles(path, pixel_size_A: float | None = None, project_dir=None, *,
                   poses=None, ctf=None) -> ParticleTable:
    """Read RELION STAR (3.0, 3.1/4, 5), cryoSPARC ``.cs`` or cryoDRGN particles into a
    ParticleTable.

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
    poses, ctf : cryoDRGN ``poses.pkl`` and ``ctf.pkl``, needed (and only allowed) when
        ``path`` is a cryoDRGN ``.mrcs`` stack or ``.txt`` list of stacks
        (:func:`~flexcore.core.io.cryodrgn.read_cryodrgn`).

    Every reader validates the table (finite values, lengths, optics groups) before it
    returns; errors are :class:`~flexcore.core.errors.InputFileError` naming the file.
    """
    if project_dir and not Path(project_dir).is_dir():
        raise InputFileError(project_dir, "project_dir is not a folder (the RELION/cryoSPARC "
                                          "project folder the image paths are relative to)")
    if pixel_size_A is not None and not (np.isfinite(pixel_size_A) and pixel_size_A > 0):
        raise ConfigError(f"pixel_size_A (--pixel-size) must be a positive size in Å, got "
                          f"{pixel_size_A:g}")
    kind = detect_particle_format(path)
    if (kind == "cryodrgn") != (poses is not None and ctf is not None):
        if kind == "cryodrgn":
            raise InputFileError(path, "is an image stack (cryoDRGN dataset): give its poses.pkl "
                                       "and ctf.pkl too (input.poses/input.ctf, --poses/--ctf)")
        raise InputFileError(path, "poses and ctf pickles go with a cryoDRGN .mrcs or .txt "
                                   "particle stack, not with a .star or .cs file")
    if kind == "cryodrgn":
        table = read_cryodrgn(path, poses, ctf)
    elif kind == "cs":
        from .cryosparc import read_cs

        table = read_cs(path, pixel_size_A=pixel_size_A)
    else:
        from .star import read_star

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
        from .star import write_star

        write_star(table, path, extra_columns=extra)
    elif suffix == ".cs":
        from .cryosparc import write_cs

        write_cs(table, path, extra_fields=extra)
    else:
        raise ValueError(f"{path}: cannot tell the format from the extension; use .star or .cs")


def count_particles(path) -> int:
    """Rows of a particle file without parsing it: the ``data_particles`` loop of a STAR file
    (the first loop of a RELION 3.0 file), the length of a ``.cs`` array, or the images of a
    cryoDRGN stack or list. For sizing jobs before the file is read in full."""
    path = Path(path)
    kind = detect_particle_format(path)
    if kind == "cs":
        return int(len(np.load(path, mmap_mode="r", allow_pickle=False)))
    if kind == "cryodrgn":
        return len(read_stack_list(path)[1])
    rows: dict[str, int] = {}  # loop rows of each data block, in file order
    block, in_loop = "", False
    with open(path, errors="replace") as f:
        for raw in f:
            line = raw.strip()
            if line.startswith("data_"):
                block, in_loop = line, False
                continue
            if line.startswith("loop_"):
                in_loop = True
                rows.setdefault(block, 0)
                continue
            if in_loop and line and not line.startswith(("#", "_")):
                rows[block] += 1
    if "data_particles" in rows:
        return rows["data_particles"]
    return next((v for k, v in rows.items() if k != "data_optics"), 0)
