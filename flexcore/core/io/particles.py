"""The one particle table every reader produces, and a lazy image source over it.

Readers (RELION 3.0/3.1+/5 STAR, cryoSPARC ``.cs``) all return a :class:`ParticleTable`;
writers take one back. The original table (a pandas DataFrame for STAR, a NumPy structured
array for ``.cs``) rides along in ``raw`` so writers can carry every input column through.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import InputFileError
from .mrc import StackReader
from .pixels import check_images


def _candidate_groups(name: str, root: Path, project_dir) -> tuple[list[Path], list[Path]]:
    """``(direct, above)``: the places tried for ``name`` besides the folders above ``root``
    (in order, the bare-name fallback last) and those folders' candidates."""
    p = Path(name)
    if p.is_absolute():
        return [p], []
    direct = [Path(project_dir) / p] if project_dir else []
    direct += [root / p, p]
    above = []
    if len(p.parts) > 1:
        lexical = Path(os.path.abspath(root))
        seen = {lexical}
        for a in [*lexical.parents, *root.resolve().parents]:
            if a not in seen:
                seen.add(a)
                above.append(a / p)
    return direct + [root / p.name], above


def image_path_candidates(name: str, root: str | Path, project_dir: str | Path | None = None
                          ) -> list[Path]:
    """Where a stack named ``name`` in a metadata file in folder ``root`` may be, in order.

    An absolute ``name`` is taken as is. A relative one is tried against ``project_dir``
    when given, ``root`` (the metadata file's folder), the current directory, then — for a
    name with a folder part, as RELION (``Extract/job005/p.mrcs``) and cryoSPARC
    (``J1/imported/p.mrc``) write them, relative to their project folder — every folder
    above ``root``, and last as a bare file name in ``root`` (a metadata file moved next
    to its stacks).
    """
    direct, above = _candidate_groups(name, Path(root), project_dir)
    return direct[:-1] + above + direct[-1:] if len(direct) > 1 else direct


def resolve_image_path(name: str, root: str | Path, project_dir: str | Path | None = None
                       ) -> Path | None:
    """Find stack file ``name`` as RELION/cryoSPARC tools would (see
    :func:`image_path_candidates` for where it looks), or return ``None``."""
    for c in image_path_candidates(name, root, project_dir):
        if c.is_file():
            return c
    return None


def describe_search(name: str, root: str | Path, project_dir: str | Path | None = None) -> str:
    """Where :func:`resolve_image_path` looked, for an error message."""
    direct, above = _candidate_groups(name, Path(root), project_dir)
    text = ", ".join(str(c) for c in direct)
    if above:
        text += f", and under each of the {len(above)} folders above {root}"
    if not project_dir and not Path(name).is_absolute():
        text += "; if the paths are relative to a RELION/cryoSPARC project folder, give it as " \
                "project_dir"
    return text


def unique_row_groups(*columns) -> tuple[np.ndarray, np.ndarray]:
    """Group rows by their combination of values (e.g. to build optics groups).

    Parameters
    ----------
    columns : ``(n,)`` numeric arrays; values are compared after rounding to 6 decimals.

    Returns
    -------
    codes : ``(n,)`` int64, the 0-based group of each row, numbered by first appearance.
    first : ``(g,)`` int64, the first row of each group.
    """
    keys = np.round(np.column_stack([np.asarray(c, dtype=np.float64) for c in columns]), 6)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.ravel()].astype(np.int64), first[order].astype(np.int64)


@dataclass
class OpticsGroup:
    """Microscope and image parameters shared by a group of particles.

    Units: pixel size in Å, image size in pixels, voltage in kV, Cs in mm, amplitude
    contrast as a fraction, beam tilt in mrad (RELION ``rlnBeamTiltX/Y``), Zernike
    coefficients as RELION stores them (``rlnOddZernike``/``rlnEvenZernike``).
    ``image_size`` 0 means unknown (a RELION 3.0 file whose stacks were not found).
    """

    name: str
    pixel_size_A: float
    image_size: int
    voltage_kv: float
    spherical_aberration_mm: float
    amplitude_contrast: float
    beam_tilt_x_mrad: float = 0.0
    beam_tilt_y_mrad: float = 0.0
    odd_zernike: tuple[float, ...] = ()
    even_zernike: tuple[float, ...] = ()
    ctf_premultiplied: bool = False


@dataclass
class ParticleTable:
    """Per-particle metadata in flexcore's conventions.

    Attributes
    ----------
    rotations : ``(n, 3, 3)`` float64 RELION matrices ``A`` (reference → particle frame), or
        ``None`` when the file carries no 3-D alignment (then it cannot be used for 3DFlex).
    shifts_A : ``(n, 2)`` RELION origins ``(x, y)`` in Å: the observed image equals the
        projection translated by ``-shift``.
    defocus_u_A, defocus_v_A, defocus_angle_deg, phase_shift_deg, bfactor_A2, ctf_scale :
        ``(n,)`` CTF parameters (RELION definition; angle of U from x).
    optics_group : ``(n,)`` 0-based index into ``optics``.
    image_paths : ``(n,)`` stack file of each image as the metadata file names it (a
        cryoSPARC ``>`` prefix removed); relative names are resolved against
        ``project_dir``, the metadata file's folder, the current directory and the folders
        above the metadata file (:func:`resolve_image_path`).
    image_indices : ``(n,)`` 0-based image index within its stack.
    half_set : ``(n,)`` int8: 0 or 1 for the gold-standard halves, -1 when unknown.
    raw : the input table as read (DataFrame or structured array), row-aligned.
    source_path : the metadata file this came from; ``source_format`` is
        ``"relion30"``, ``"relion31"`` or ``"cryosparc"``.
    project_dir : the RELION/cryoSPARC project folder the image paths are relative to
        (``""``: found by searching, see :func:`image_path_candidates`).
    """

    rotations: np.ndarray | None
    shifts_A: np.ndarray
    defocus_u_A: np.ndarray
    defocus_v_A: np.ndarray
    defocus_angle_deg: np.ndarray
    phase_shift_deg: np.ndarray
    bfactor_A2: np.ndarray
    ctf_scale: np.ndarray
    optics_group: np.ndarray
    optics: list[OpticsGroup]
    image_paths: np.ndarray
    image_indices: np.ndarray
    half_set: np.ndarray
    raw: object = None
    raw_optics: object = None
    source_path: str = ""
    source_format: str = ""
    extra: dict = field(default_factory=dict)
    project_dir: str = ""

    def __len__(self) -> int:
        return len(self.image_indices)

    @property
    def has_poses(self) -> bool:
        return self.rotations is not None

    @property
    def pixel_size_A(self) -> float:
        """The pixel size shared by every optics group (error if they differ)."""
        sizes = {round(g.pixel_size_A, 5) for g in self.optics}
        if len(sizes) != 1:
            raise InputFileError(
                self.source_path,
                f"optics groups have different pixel sizes {sorted(sizes)} Å; "
                "re-extract or rescale the particles to one pixel size first",
            )
        return self.optics[0].pixel_size_A

    @property
    def box(self) -> int:
        """The image size shared by every optics group (error if they differ)."""
        sizes = {g.image_size for g in self.optics}
        if len(sizes) != 1:
            raise InputFileError(
                self.source_path, f"optics groups have different image sizes {sorted(sizes)}"
            )
        return self.optics[0].image_size

    def image_paths_relative_to(self, folder: str | Path) -> np.ndarray:
        """Image paths as a file written into ``folder`` should name them, ``(n,)`` object.

        A stack that resolves (see :func:`resolve_image_path`, against the metadata
        file's folder) is given relative to ``folder``; one that does not is kept as given.
        """
        root = Path(self.source_path).parent if self.source_path else Path(".")
        folder = os.path.abspath(folder)
        names, codes = np.unique(np.asarray(self.image_paths, dtype=object), return_inverse=True)
        out = []
        for name in names:
            found = resolve_image_path(str(name), root, self.project_dir or None)
            if found is None:
                out.append(str(name))
                continue
            try:
                out.append(os.path.relpath(os.path.abspath(found), folder))
            except ValueError:  # another drive on Windows: no relative path exists
                out.append(os.path.abspath(found))
        return np.asarray(out, dtype=object)[codes.ravel()]

    def image_paths_for(self, folder: str | Path, mode: str = "relative") -> np.ndarray:
        """Image paths as a file written into ``folder`` should name them, ``(n,)`` object.

        ``relative``: :meth:`image_paths_relative_to` ``folder``; ``original``: as the input
        names them (RELION and cryoSPARC resolve relative names against their project
        folder, so a file written with these opens where the input did); ``absolute``: the
        absolute path of every stack that resolves (others kept as given).
        """
        if mode == "relative":
            return self.image_paths_relative_to(folder)
        given = np.asarray(self.image_paths, dtype=object)
        if mode == "original":
            return given.copy()
        if mode != "absolute":
            raise ValueError(f"image path mode must be relative, original or absolute, got {mode!r}")
        root = Path(self.source_path).parent if self.source_path else Path(".")
        names, codes = np.unique(given, return_inverse=True)
        out = []
        for name in names:
            found = resolve_image_path(str(name), root, self.project_dir or None)
            out.append(str(name) if found is None else os.path.abspath(found))
        return np.asarray(out, dtype=object)[codes.ravel()]

    def require_poses(self) -> None:
        """Raise a clear error when the table has no consensus 3-D alignment."""
        if self.rotations is None:
            raise InputFileError(
                self.source_path,
                "has no 3-D poses (RELION rlnAngleRot/Tilt/Psi or cryoSPARC alignments3D/pose); "
                "3DFlex starts from a consensus refinement",
            )

    def subset(self, indices) -> ParticleTable:
        """A new table holding rows ``indices`` (in that order); optics groups are copied."""
        idx = np.asarray(indices)
        raw = self.raw
        if raw is not None:
            raw = raw.iloc[idx].reset_index(drop=True) if hasattr(raw, "iloc") else raw[idx]
        return ParticleTable(
            rotations=None if self.rotations is None else self.rotations[idx],
            shifts_A=self.shifts_A[idx],
            defocus_u_A=self.defocus_u_A[idx],
            defocus_v_A=self.defocus_v_A[idx],
            defocus_angle_deg=self.defocus_angle_deg[idx],
            phase_shift_deg=self.phase_shift_deg[idx],
            bfactor_A2=self.bfactor_A2[idx],
            ctf_scale=self.ctf_scale[idx],
            optics_group=self.optics_group[idx],
            optics=[replace(g) for g in self.optics],  # copies: edits stay local
            image_paths=self.image_paths[idx],
            image_indices=self.image_indices[idx],
            half_set=self.half_set[idx],
            raw=raw,
            raw_optics=self.raw_optics,
            source_path=self.source_path,
            source_format=self.source_format,
            extra={k: np.asarray(v)[idx] for k, v in self.extra.items()},
            project_dir=self.project_dir,
        )

    def validate(self) -> None:
        """Check array lengths agree and values are finite; raise naming the source file."""
        n = len(self)
        arrays = {
            "shifts": self.shifts_A, "defocus U": self.defocus_u_A, "defocus V": self.defocus_v_A,
            "defocus angle": self.defocus_angle_deg, "phase shift": self.phase_shift_deg,
            "B-factor": self.bfactor_A2, "CTF scale": self.ctf_scale,
        }
        if self.rotations is not None:
            arrays["rotations"] = self.rotations
        for name, arr in arrays.items():
            if len(arr) != n:
                raise InputFileError(self.source_path, f"{name}: {len(arr)} rows for {n} particles")
            bad = ~np.isfinite(np.asarray(arr, dtype=np.float64)).reshape(n, -1).all(axis=1)
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise InputFileError(
                    self.source_path,
                    f"{name} is NaN or infinite for {int(bad.sum())} particle(s), "
                    f"first at row {first + 1}",
                )
        if n == 0:
            raise InputFileError(self.source_path, "contains no particles")
        if self.optics_group.min() < 0 or self.optics_group.max() >= len(self.optics):
            raise InputFileError(
                self.source_path, "a particle refers to an optics group that is not defined"
            )


class ImageSource:
    """Lazy reader of particle images: opens each stack once (memory-mapped) and reads
    batches in any order without loading whole stacks.

    ``root`` resolves relative image paths (by default the metadata file's folder; see
    :func:`resolve_image_path` for the other places searched, ``table.project_dir`` first).
    Every image is checked for being unusable the first time it is read
    (:func:`~flexcore.core.io.pixels.check_images`: NaN/infinite pixels, constant or all-zero
    images), naming the stack, the image and the metadata row; reading it again (the
    reconstruction streams each half once per L-BFGS pass) does not check it again.
    """

    def __init__(self, table: ParticleTable, root: str | Path | None = None):
        self.table = table
        self._root = Path(root) if root is not None else (
            Path(table.source_path).parent if table.source_path else Path(".")
        )
        self._readers: dict[str, StackReader] = {}
        self._resolved: dict[str, Path] = {}
        self._checked = np.zeros(len(table), dtype=bool)  # rows whose pixels passed

    def _resolve(self, name: str) -> Path:
        if name in self._resolved:
            return self._resolved[name]
        project = self.table.project_dir or None
        found = resolve_image_path(name, self._root, project)
        if found is not None:
            self._resolved[name] = found
            return found
        raise InputFileError(
            self.table.source_path or name,
            f"image stack {name!r} not found (looked in "
            f"{describe_search(name, self._root, project)})",
        )

    def reader(self, name: str) -> StackReader:
        if name not in self._readers:
            r = StackReader(self._resolve(name))
            if r.box != self.table.optics[0].image_size and self.table.optics[0].image_size:
                expected = {g.image_size for g in self.table.optics}
                if r.box not in expected:
                    raise InputFileError(
                        r.path, f"images are {r.box} px but the metadata says {sorted(expected)} px"
                    )
            self._readers[name] = r
        return self._readers[name]

    @property
    def box(self) -> int:
        return self.reader(str(self.table.image_paths[0])).box

    def read(self, indices) -> np.ndarray:
        """Images of particles ``indices`` as a float32 ``(k, D, D)`` array, in order."""
        idx = np.asarray(indices, dtype=np.int64)
        paths = self.table.image_paths[idx]
        within = self.table.image_indices[idx]
        out = None
        for name in np.unique(paths):
            sel = np.flatnonzero(paths == name)
            order = np.argsort(within[sel])
            reader = self.reader(str(name))
            imgs = reader.read(within[sel][order])
            rows = idx[sel][order]
            new = ~self._checked[rows]
            if new.all():
                check_images(imgs, reader.path, within[sel][order], rows=rows,
                             metadata=self.table.source_path)
            elif new.any():
                check_images(imgs[new], reader.path, within[sel][order][new], rows=rows[new],
                             metadata=self.table.source_path)
            self._checked[rows] = True
            if out is None:
                out = np.empty((len(idx),) + imgs.shape[1:], dtype=np.float32)
            out[sel[order]] = imgs
        if out is None:
            return np.empty((0, self.box, self.box), dtype=np.float32)
        return out

    def check_all_present(self) -> None:
        """Open every stack once and check every index is in range (fails early, clearly)."""
        for name in np.unique(self.table.image_paths):
            r = self.reader(str(name))
            top = int(self.table.image_indices[self.table.image_paths == name].max())
            if top >= r.n:
                raise InputFileError(
                    r.path, f"metadata asks for image {top + 1} but the stack holds only {r.n}"
                )

    def close(self) -> None:
        for r in self._readers.values():
            r.close()
        self._readers.clear()
