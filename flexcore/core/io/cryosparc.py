"""cryoSPARC ``.cs`` particle files: a NumPy structured array with ``prefix/name`` fields.

Conventions (docs/conventions.md):

* ``alignments3D/pose`` is an axis-angle vector (radians) whose exponential map is RELION's
  matrix ``A`` (reference → particle frame), see :func:`flexcore.core.rotations.axis_angle_to_matrix`.
* ``alignments3D/shift`` is in pixels of the blob with the same sign as RELION's origins; the
  table stores it in Å (× ``blob/psize_A``).
* ``blob/idx`` is 0-based (RELION's ``N@`` is ``idx + 1``); ``blob/path`` is bytes, and
  exported files may prefix it with ``>``, which is stripped.
* ``ctf/df_angle_rad`` and ``ctf/phase_shift_rad`` are radians; the table holds degrees.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import numpy as np

from ..errors import InputFileError
from ..rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..utils.atomic import atomic_path
from ..utils.logging import get_logger
from .cryosparc_group import imported_particle_fields, stable_uids, uid_seed, write_csg
from .particles import OpticsGroup, ParticleTable, resolve_image_path, unique_row_groups
from .readers import NUMPY_MAGIC

log = get_logger("flexcore.io.cryosparc")

_REQUIRED = (
    "blob/path", "blob/idx", "blob/shape", "ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad",
    "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast",
)
# Generous header limit: .cs files with many fields have headers beyond NumPy's 10 kB default.
_MAX_HEADER = 1_000_000
_LOAD_ACCEPTS_MAX_HEADER = "max_header_size" in inspect.signature(np.load).parameters


def read_cs(path, pixel_size_A: float | None = None) -> ParticleTable:
    """Read a cryoSPARC particle ``.cs`` file into a :class:`ParticleTable`.

    Parameters
    ----------
    path : the ``.cs`` file (NumPy ``.npy`` structured array).
    pixel_size_A : used only when the file has no ``blob/psize_A`` field.

    Returns
    -------
    ParticleTable with ``source_format="cryosparc"``; ``raw`` is the structured array.
    ``rotations`` is ``None`` when there is no ``alignments3D/pose`` (e.g. 2-D classification
    output); ``half_set`` comes from ``alignments3D/split`` (-1 when absent). Optics groups
    are the unique combinations of pixel size, box, kV, Cs, amplitude contrast and
    ``ctf/exp_group_id``.
    """
    path = Path(path)
    arr = _load(path)
    _check_particle_fields(arr, path)
    groups, optics = _optics_groups(arr, path, pixel_size_A)
    # One pixel size per group (the decimal value cryoSPARC stored as float32).
    pixel = np.array([o.pixel_size_A for o in optics])[groups]
    rotations, shifts, half = _alignments(arr, path, pixel)
    table = ParticleTable(
        rotations=rotations,
        shifts_A=shifts,
        defocus_u_A=arr["ctf/df1_A"].astype(np.float64),
        defocus_v_A=arr["ctf/df2_A"].astype(np.float64),
        defocus_angle_deg=np.rad2deg(arr["ctf/df_angle_rad"].astype(np.float64)),
        phase_shift_deg=_field(arr, "ctf/phase_shift_rad", 0.0, np.rad2deg),
        bfactor_A2=_field(arr, "ctf/bfactor", 0.0),
        ctf_scale=_field(arr, "ctf/scale", 1.0),
        optics_group=groups,
        optics=optics,
        image_paths=_decode_paths(arr["blob/path"], path),
        image_indices=arr["blob/idx"].astype(np.int64),
        half_set=half,
        raw=arr,
        raw_optics=None,
        source_path=str(path),
        source_format="cryosparc",
    )
    table.validate()
    return table


def _check_particle_fields(arr: np.ndarray, path: Path) -> None:
    """The fields every particle file has (:data:`_REQUIRED`) and at least one particle."""
    names = set(arr.dtype.names)
    missing = [f for f in _REQUIRED if f not in names]
    if missing:
        prefixes = sorted({f.split("/")[0] for f in names})
        raise InputFileError(
            path,
            f"missing field(s) {', '.join(missing)}; a particle .cs file needs blob/* and ctf/* "
            f"fields (this file has prefixes: {', '.join(prefixes)})",
        )
    if len(arr) == 0:
        raise InputFileError(path, "contains no particles")


def _optics_groups(arr: np.ndarray, path: Path, pixel_size_A: float | None
                   ) -> tuple[np.ndarray, list[OpticsGroup]]:
    """Each particle's optics group ``(n,)`` and the groups: the unique combinations of pixel
    size, box, kV, Cs, amplitude contrast and ``ctf/exp_group_id``."""
    n, names = len(arr), set(arr.dtype.names)
    if "blob/psize_A" in names:
        pixel = arr["blob/psize_A"].astype(np.float64)
    elif pixel_size_A is not None:
        pixel = np.full(n, float(pixel_size_A))
    else:
        raise InputFileError(path, "no blob/psize_A field; pass pixel_size_A explicitly")
    if not (np.isfinite(pixel) & (pixel > 0)).all():
        raise InputFileError(path, "blob/psize_A must be a positive number of Å for every particle")
    shape = np.asarray(arr["blob/shape"]).reshape(n, -1)
    if shape.shape[1] != 2 or (shape[:, 0] != shape[:, 1]).any():
        raise InputFileError(path, "blob/shape must give square 2-D images (ny, nx) for every row")
    box = shape[:, 0].astype(np.int64)
    kv, cs, q0 = (arr[f].astype(np.float64) for f in ("ctf/accel_kv", "ctf/cs_mm",
                                                      "ctf/amp_contrast"))
    exp_group = arr["ctf/exp_group_id"] if "ctf/exp_group_id" in names else np.zeros(n)
    groups, first = unique_row_groups(pixel, box, kv, cs, q0, exp_group)
    optics = [
        OpticsGroup(
            name=f"opticsGroup{k + 1}", pixel_size_A=_short(pixel[r]), image_size=int(box[r]),
            voltage_kv=_short(kv[r]), spherical_aberration_mm=_short(cs[r]),
            amplitude_contrast=_short(q0[r]),
        )
        for k, r in enumerate(first)
    ]
    return groups, optics


def _alignments(arr: np.ndarray, path: Path, pixel: np.ndarray
                ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Rotations ``(n, 3, 3)`` or None, shifts ``(n, 2)`` in Å and half-sets ``(n,)`` int8
    (-1 unknown) from the ``alignments3D/*`` fields."""
    n, names = len(arr), set(arr.dtype.names)
    rotations = None
    shifts = np.zeros((n, 2))
    half = np.full(n, -1, dtype=np.int8)
    if "alignments3D/pose" in names:
        rotations = axis_angle_to_matrix(arr["alignments3D/pose"])
    if "alignments3D/shift" in names:
        shift_px = np.asarray(arr["alignments3D/shift"], dtype=np.float64).reshape(n, 2)
        shifts = shift_px * pixel[:, None]
    elif rotations is not None:
        log.warning("%s: has alignments3D/pose but no alignments3D/shift; the particles' "
                    "shifts are taken as zero (if they were refined, export the .cs that holds "
                    "them)", path)
    if "alignments3D/split" in names:
        split = np.asarray(arr["alignments3D/split"]).astype(np.int64)
        half = np.where((split == 0) | (split == 1), split, -1).astype(np.int8)
    return rotations, shifts, half


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputFileError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise InputFileError(path, "file is empty; expected a cryoSPARC .cs file")
    with open(path, "rb") as f:
        magic = f.read(len(NUMPY_MAGIC))
    if magic != NUMPY_MAGIC:
        raise InputFileError(
            path, "does not start with the NumPy magic bytes; expected a cryoSPARC .cs file "
            "(a NumPy structured array)"
        )
    kwargs = {"max_header_size": _MAX_HEADER} if _LOAD_ACCEPTS_MAX_HEADER else {}
    try:
        arr = np.load(path, allow_pickle=False, **kwargs)
    except Exception as exc:  # numpy raises ValueError/EOFError with terse messages
        raise InputFileError(path, f"cannot be read as a cryoSPARC .cs file (truncated?): {exc}"
                             ) from exc
    if not isinstance(arr, np.ndarray) or arr.dtype.names is None or arr.ndim != 1:
        raise InputFileError(
            path, "holds a plain NumPy array, not a cryoSPARC dataset (1-D structured array)"
        )
    return arr


def _short(value) -> float:
    """A float32 value as the shortest decimal that rounds to it (2.95, not 2.950000047)."""
    return float(str(np.float32(value)))


def _field(arr: np.ndarray, name: str, default: float, convert=None) -> np.ndarray:
    if name not in arr.dtype.names:
        return np.full(len(arr), float(default))
    values = arr[name].astype(np.float64)
    return convert(values) if convert is not None else values


def _decode_paths(paths: np.ndarray, path: Path) -> np.ndarray:
    """``blob/path`` bytes → ``(n,)`` object array of str, a leading ``>`` stripped."""
    uniques, codes = np.unique(paths, return_inverse=True)
    names = []
    for u in uniques:
        try:
            text = u.decode("utf-8") if isinstance(u, bytes) else str(u)
        except UnicodeDecodeError:
            raise InputFileError(path, f"blob/path {u!r} is not UTF-8 text") from None
        text = text[1:] if text.startswith(">") else text
        if not text:
            raise InputFileError(path, "blob/path is empty for some particles")
        names.append(text)
    return np.asarray(names, dtype=object)[codes.ravel()]


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------

def latents_to_cs_fields(latents: np.ndarray) -> dict[str, np.ndarray]:
    """Per-particle latents ``(n, K)`` → cryoSPARC 3DFlex fields for ``write_cs``.

    Returns ``components_mode_{k}/component`` (u4, value ``k``) and
    ``components_mode_{k}/value`` (f4, ``latents[:, k]``) for ``k < K``, as 3D Flex Train
    writes them.
    """
    latents = np.asarray(latents)
    if latents.ndim != 2:
        raise ValueError(f"latents must be (n, K), got shape {latents.shape}")
    n, k_dim = latents.shape
    fields = {}
    for k in range(k_dim):
        fields[f"components_mode_{k}/component"] = np.full(n, k, dtype=np.uint32)
        fields[f"components_mode_{k}/value"] = latents[:, k].astype(np.float32)
    return fields


def write_cs(table: ParticleTable, path, extra_fields: dict[str, np.ndarray] | None = None,
             image_paths: str = "relative", source_rows=None) -> None:
    """Write ``table`` as a cryoSPARC ``.cs`` file, atomically.

    When the table came from a ``.cs`` file all its fields are carried through, with
    ``alignments3D/pose`` (axis-angle of ``A``), ``alignments3D/shift`` (Å / blob pixel size),
    ``alignments3D/split`` and the ``ctf/*`` values updated from the table. Otherwise the
    standard fields are built: ``uid`` (stable random 64-bit values of the rows
    ``source_rows`` of the table's source file, default ``0…n−1``;
    :func:`~flexcore.core.io.cryosparc_group.stable_uids`), ``blob/path``, ``blob/idx``
    (0-based), ``blob/shape``, ``blob/psize_A``, ``ctf/*``, the other fields cryoSPARC writes
    for imported particles (``blob/sign``, ``blob/import_sig``, ``ctf/type``, the aberration
    fields; :func:`~flexcore.core.io.cryosparc_group.imported_particle_fields`) and, when the
    table has poses, ``alignments3D/pose``, ``shift``, ``psize_A`` and ``split`` (only when
    every half-set is known; cryoSPARC has no "unknown" value). A ``.csg`` result-group file
    for cryoSPARC's "Import Result Group" is written beside it
    (:func:`~flexcore.core.io.cryosparc_group.write_csg`).

    ``blob/path`` is written relative to the output file's folder when the stack was found,
    else as given (``image_paths="relative"``), as the input names it (``"original"``) or
    absolute (``"absolute"``); an input path written unchanged keeps its ``>`` prefix.
    ``extra_fields`` (``(n,)`` or ``(n, k)`` arrays) are added with their own dtypes, e.g.
    :func:`latents_to_cs_fields`.
    """
    path = Path(path)
    n = len(table)
    extra = {}
    for name, values in (extra_fields or {}).items():
        values = np.asarray(values)
        if values.ndim == 0 or values.shape[0] != n:
            raise ValueError(f"extra field {name!r} has shape {values.shape}, expected ({n}, ...)")
        extra[str(name)] = values
    raw = table.raw
    carry = (table.source_format == "cryosparc" and isinstance(raw, np.ndarray)
             and raw.dtype.names is not None and len(raw) == n)
    fields: dict[str, np.ndarray] = {}
    if carry:
        fields.update({name: raw[name] for name in raw.dtype.names})
    else:
        source = table.source_path if table.source_path and Path(table.source_path).is_file() \
            else None
        seed = uid_seed(source) if source else hashlib.sha256(str(path).encode()).digest()
        rows = np.arange(n) if source_rows is None else np.asarray(source_rows)
        fields["uid"] = stable_uids(seed, rows)
    _update(fields, _standard_fields(table, path, raw if carry else None, image_paths))
    if not carry:
        fields.update({k: v for k, v in imported_particle_fields(n, seed, table.optics).items()
                       if k not in fields})
    fields.update(extra)
    arr = _structured(fields, n)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file handle: np.save would append .npy to a name
            np.save(f, arr, allow_pickle=False)
    write_csg(path, n, arr.dtype.names)


def _update(fields: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> None:
    """Set ``new`` into ``fields``, keeping the dtype of fields that already exist."""
    for name, values in new.items():
        if name in fields and fields[name].dtype.kind == values.dtype.kind != "S":
            values = values.astype(fields[name].dtype)
        fields[name] = values


def _standard_fields(table: ParticleTable, path: Path, raw: np.ndarray | None,
                     image_paths: str = "relative") -> dict:
    g = table.optics_group
    optics = table.optics
    pixel = np.array([o.pixel_size_A for o in optics])[g]
    box = np.array([o.image_size for o in optics])[g]
    out = {}
    out["blob/path"] = _encode_paths(table, path, raw, image_paths)
    out["blob/idx"] = np.asarray(table.image_indices, dtype=np.uint32)
    if raw is None and (box <= 0).any():
        raise InputFileError(
            table.source_path or path,
            "image size unknown (the stacks were not found when the metadata was read), "
            f"so blob/shape cannot be written to {path}",
        )
    if (box > 0).all():
        out["blob/shape"] = np.repeat(box[:, None], 2, axis=1).astype(np.uint32)
    out["blob/psize_A"] = pixel.astype(np.float32)
    out["ctf/accel_kv"] = np.array([o.voltage_kv for o in optics], dtype=np.float32)[g]
    out["ctf/cs_mm"] = np.array([o.spherical_aberration_mm for o in optics], dtype=np.float32)[g]
    out["ctf/amp_contrast"] = np.array([o.amplitude_contrast for o in optics],
                                       dtype=np.float32)[g]
    out["ctf/df1_A"] = table.defocus_u_A.astype(np.float32)
    out["ctf/df2_A"] = table.defocus_v_A.astype(np.float32)
    out["ctf/df_angle_rad"] = np.deg2rad(table.defocus_angle_deg).astype(np.float32)
    out["ctf/phase_shift_rad"] = np.deg2rad(table.phase_shift_deg).astype(np.float32)
    out["ctf/scale"] = table.ctf_scale.astype(np.float32)
    out["ctf/bfactor"] = table.bfactor_A2.astype(np.float32)
    if raw is None:
        out["ctf/exp_group_id"] = np.asarray(g, dtype=np.uint32)
    if table.rotations is not None:
        out["alignments3D/pose"] = matrix_to_axis_angle(table.rotations).astype(np.float32)
        out["alignments3D/shift"] = (table.shifts_A / pixel[:, None]).astype(np.float32)
        if raw is None or "alignments3D/psize_A" not in raw.dtype.names:
            out["alignments3D/psize_A"] = pixel.astype(np.float32)
        half = np.asarray(table.half_set)
        if (half >= 0).all():
            out["alignments3D/split"] = half.astype(np.uint32)
    return out


def _encode_paths(table: ParticleTable, path: Path, raw: np.ndarray | None,
                  mode: str = "relative") -> np.ndarray:
    """``blob/path`` bytes in ``mode`` (:meth:`ParticleTable.image_paths_for`).

    A path written as the input ``.cs`` names it (``original`` mode, or an unresolved one)
    keeps its original bytes, ``>`` export prefix included.
    """
    written = table.image_paths_for(path.parent, mode).tolist()
    given = np.asarray(table.image_paths, dtype=object)
    root = Path(table.source_path).parent if table.source_path else Path(".")
    project = table.project_dir or None
    found = {str(p) for p in np.unique(given)
             if resolve_image_path(str(p), root, project) is not None}
    original = raw["blob/path"].tolist() if raw is not None else None
    out = []
    for i, name in enumerate(given.tolist()):
        if original is not None and (mode == "original" or name not in found):
            o = original[i]
            if (o[1:] if o.startswith(b">") else o) == name.encode("utf-8"):
                out.append(o)
                continue
        out.append(written[i].encode("utf-8"))
    return np.asarray(out, dtype=bytes)


def _structured(fields: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Build a 1-D structured array from ``{name: (n, ...) array}`` in insertion order."""
    descr = []
    for name, values in fields.items():
        descr.append((name, values.dtype, values.shape[1:]) if values.ndim > 1
                     else (name, values.dtype))
    arr = np.empty(n, dtype=descr)
    for name, values in fields.items():
        arr[name] = values
    return arr
