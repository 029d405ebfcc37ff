"""RELION STAR particle files: read 3.0, 3.1/4 and 5 into a :class:`ParticleTable`; write 3.1.

Reading (``read_star``):

* RELION 3.1/4/5 files hold a ``data_optics`` loop (one row per optics group) and a
  ``data_particles`` loop joined on ``rlnOpticsGroup``; origins are ``rlnOriginXAngst/YAngst``
  (Å). RELION 3.0 files hold one loop (``data_images``, ``data_`` …) with voltage, Cs and
  amplitude contrast per particle and origins ``rlnOriginX/Y`` in pixels; optics groups are
  built from the unique combinations of those values.
* Poses: ``rlnAngleRot/Tilt/Psi`` (degrees) → RELION matrices ``A`` (reference → particle
  frame, :func:`flexcore.core.rotations.euler_relion_to_matrix`); ``rotations`` is ``None`` when
  any of the three columns is absent.
* ``rlnImageName`` ``N@stack`` is 1-based; the table stores 0-based indices and the stack
  path as written in the file (resolved against the STAR file's folder when images are read).

Writing (``write_star``) produces the RELION 3.1 layout, with a ``# version 30001`` line
before each block as RELION writes it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

from ... import __version__
from ..errors import InputFileError
from ..rotations import euler_relion_to_matrix, matrix_to_euler_relion
from ..utils.atomic import atomic_path
from ..utils.logging import get_logger
from .particles import OpticsGroup, ParticleTable, resolve_image_path, unique_row_groups

log = get_logger("flexcore.io.star")

# Columns kept as text even when every value looks like a number.
_STRING_COLUMNS = [
    "rlnImageName", "rlnMicrographName", "rlnImageOriginalName", "rlnOpticsGroupName",
    "rlnOddZernike", "rlnEvenZernike",
]
_ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
_CTF_PARTICLE = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")
_CTF_OPTICS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")
# Per-particle columns of RELION 3.0 that RELION 3.1 moves into (or drops for) data_optics.
_RELION30_OPTICS_COLUMNS = (
    "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImagePixelSize",
    "rlnDetectorPixelSize", "rlnMagnification", "rlnBeamTiltX", "rlnBeamTiltY",
)
# RELION writes this line before every block of a 3.1/4.x file.
STAR_VERSION_LINE = "# version 30001"
# RELION 3.0 uses this amplitude contrast when a file has none.
RELION_DEFAULT_AMPLITUDE_CONTRAST = 0.1
_FLOAT_FORMAT = "%.10g"  # keeps input precision (angles to 1e-7 degree, MagMat to 1e-10)
_PIXEL_SIZE_HELP = (
    "give rlnImagePixelSize (Å), or rlnDetectorPixelSize (µm) with rlnMagnification, "
    "or pass pixel_size_A explicitly"
)


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------

def read_star(path, pixel_size_A: float | None = None, project_dir=None) -> ParticleTable:
    """Read a RELION particle STAR file (3.0, 3.1/4 or 5) into a :class:`ParticleTable`.

    Parameters
    ----------
    path : the ``.star`` file.
    pixel_size_A : pixel size in Å, used only when the file has none (no
        ``rlnImagePixelSize`` and, for 3.0 files, no ``rlnDetectorPixelSize`` ×
        ``rlnMagnification``).
    project_dir : RELION project folder of relative image paths (used here only to find
        the first stack of a RELION 3.0 file, whose header gives the box).

    Returns
    -------
    ParticleTable with ``source_format`` ``"relion31"`` (a ``data_optics`` block is present)
    or ``"relion30"``; ``raw`` is the particle loop as read, ``raw_optics`` the optics loop
    (``None`` for 3.0).

    Raises
    ------
    InputFileError naming the file and the problem (missing columns, no pixel size,
    unknown optics group, non-numeric or NaN values, no particles).
    """
    path = Path(path)
    blocks = _read_blocks(path)
    optics_df = blocks.get("optics")
    particles = _particle_block(blocks, path)
    if len(particles) == 0:
        raise InputFileError(path, "the particle loop holds no rows (contains no particles)")
    _require(particles, ("rlnImageName",) + _CTF_PARTICLE, path, "the particle loop")
    image_paths, image_indices = _parse_image_names(particles["rlnImageName"], path)

    if optics_df is not None:
        optics, groups, pixel_size = _optics_relion31(optics_df, particles, path, pixel_size_A)
        source_format = "relion31"
    else:
        optics, groups, pixel_size = _optics_relion30(particles, path, pixel_size_A)
        source_format = "relion30"
    if any(g.image_size == 0 for g in optics):
        box = _box_of_first_stack(image_paths, path.parent, project_dir)
        for g in optics:
            g.image_size = g.image_size or box

    table = ParticleTable(
        rotations=_rotations(particles, path),
        shifts_A=_shifts_A(particles, pixel_size, path),
        defocus_u_A=_numeric(particles, "rlnDefocusU", path),
        defocus_v_A=_numeric(particles, "rlnDefocusV", path),
        defocus_angle_deg=_numeric(particles, "rlnDefocusAngle", path),
        phase_shift_deg=_numeric(particles, "rlnPhaseShift", path, default=0.0),
        bfactor_A2=_numeric(particles, "rlnCtfBfactor", path, default=0.0),
        ctf_scale=_numeric(particles, "rlnCtfScalefactor", path, default=1.0),
        optics_group=groups,
        optics=optics,
        image_paths=image_paths,
        image_indices=image_indices,
        half_set=_half_sets(particles, path),
        raw=particles,
        raw_optics=optics_df,
        source_path=str(path),
        source_format=source_format,
        project_dir=str(project_dir) if project_dir else "",
    )
    table.validate()
    return table


def _read_blocks(path: Path) -> dict[str, pd.DataFrame]:
    """The loop blocks of a STAR file, keyed by block name without ``data_``."""
    if not path.is_file():
        raise InputFileError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise InputFileError(path, "file is empty; expected a RELION STAR file with particles")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = starfile.read(path, always_dict=True, parse_as_string=_STRING_COLUMNS)
    except Exception as exc:  # starfile/pandas raise many types with terse messages
        raise InputFileError(path, f"cannot be parsed as a STAR file: {exc}") from exc
    loops = {name: b for name, b in blocks.items() if isinstance(b, pd.DataFrame)}
    if not loops:
        raise InputFileError(
            path, "no data_ block with a loop_ found; expected a RELION STAR file with particles"
        )
    return loops


def _particle_block(blocks: dict[str, pd.DataFrame], path: Path) -> pd.DataFrame:
    if "particles" in blocks:
        return blocks["particles"]
    others = {k: v for k, v in blocks.items() if k != "optics"}
    for df in others.values():
        if "rlnImageName" in df.columns:
            return df
    if others:
        return next(iter(others.values()))
    raise InputFileError(
        path, "has a data_optics block but no particle loop (data_particles or data_images)"
    )


def _require(df: pd.DataFrame, columns, path: Path, where: str, why: str = "") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputFileError(
            path, f"missing column(s) {', '.join(missing)} in {where}{why}"
        )


def _numeric(df: pd.DataFrame, column: str, path: Path, default: float | None = None) -> np.ndarray:
    """Column ``column`` as float64 ``(n,)``; ``default`` fills an absent column.

    NaN entries stay NaN (``ParticleTable.validate`` reports them); text that is not a
    number raises, naming the column, row and value.
    """
    if column not in df.columns:
        if default is None:
            raise InputFileError(path, f"missing column {column}")
        return np.full(len(df), float(default))
    col = df[column]
    if pd.api.types.is_numeric_dtype(col.dtype):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    values = pd.to_numeric(col, errors="coerce")
    text = col.astype(str).str.strip().str.lower()
    bad = values.isna() & col.notna() & ~text.isin(["nan", "<na>", "-nan", "inf", "-inf"])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputFileError(
            path, f"column {column} holds {col.iloc[row]!r} at row {row + 1}; expected a number"
        )
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _parse_image_names(names: pd.Series, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``N@stack`` (1-based N) → stack paths ``(n,)`` object and 0-based indices ``(n,)``.

    A name without ``@`` is a single-image file (index 0).
    """
    if names.isna().any():
        row = int(np.flatnonzero(names.isna().to_numpy())[0])
        raise InputFileError(path, f"rlnImageName is empty at row {row + 1}")
    names = names.astype(str).str.strip()
    parts = names.str.split("@", n=1, expand=True)
    if parts.shape[1] == 1:
        index_text = pd.Series("1", index=names.index)
        stacks = parts[0]
    else:
        has_at = parts[1].notna()
        index_text = parts[0].where(has_at, "1")
        stacks = parts[1].where(has_at, parts[0])
    index = pd.to_numeric(index_text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(index) | (index < 1) | (index != np.round(index))
    if stacks.eq("").any():
        bad |= stacks.eq("").to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputFileError(
            path,
            f"rlnImageName {names.iloc[row]!r} at row {row + 1} is not N@stack "
            "(N a 1-based image number)",
        )
    codes, uniques = pd.factorize(stacks)
    image_paths = np.asarray([str(u) for u in uniques], dtype=object)[codes]
    return image_paths, index.astype(np.int64) - 1


def _pixel_size_relion30(df: pd.DataFrame, path: Path, pixel_size_A: float | None) -> np.ndarray:
    if "rlnImagePixelSize" in df.columns:
        size = _numeric(df, "rlnImagePixelSize", path)
    elif "rlnDetectorPixelSize" in df.columns and "rlnMagnification" in df.columns:
        # Detector pixel in µm over magnification, in Å.
        size = _numeric(df, "rlnDetectorPixelSize", path) * 1e4 / _numeric(
            df, "rlnMagnification", path
        )
    elif pixel_size_A is not None:
        size = np.full(len(df), float(pixel_size_A))
    else:
        raise InputFileError(path, f"no pixel size in the file: {_PIXEL_SIZE_HELP}")
    _check_pixel_size(size, path)
    return size


def _check_pixel_size(size: np.ndarray, path: Path) -> None:
    bad = ~(np.isfinite(size) & (size > 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputFileError(
            path, f"pixel size must be a positive number of Å, got {size[row]} at row {row + 1}"
        )


def _optics_relion30(df: pd.DataFrame, path: Path, pixel_size_A: float | None):
    """Optics groups from unique per-particle (pixel size, kV, Cs, Q0[, beam tilt])."""
    _require(df, _CTF_OPTICS[:2], path, "the particle loop",
             " (RELION 3.0 files carry the CTF microscope values per particle)")
    pixel = _pixel_size_relion30(df, path, pixel_size_A)
    kv, cs = (_numeric(df, c, path) for c in _CTF_OPTICS[:2])
    if "rlnAmplitudeContrast" not in df.columns:
        # RELION 3.0 itself falls back to Q0 = 0.1 when the column is absent (ctf.cpp).
        log.warning("%s: no rlnAmplitudeContrast column; using RELION's default 0.1", path)
    q0 = _numeric(df, "rlnAmplitudeContrast", path, default=RELION_DEFAULT_AMPLITUDE_CONTRAST)
    tilt_x = _numeric(df, "rlnBeamTiltX", path, default=0.0)
    tilt_y = _numeric(df, "rlnBeamTiltY", path, default=0.0)
    for name, values in zip(_CTF_OPTICS, (kv, cs, q0)):
        if not np.isfinite(values).all():
            raise InputFileError(path, f"column {name} holds NaN or infinite values")
    groups, first = unique_row_groups(pixel, kv, cs, q0, tilt_x, tilt_y)
    optics = [
        OpticsGroup(
            name=f"opticsGroup{k + 1}", pixel_size_A=float(pixel[r]), image_size=0,
            voltage_kv=float(kv[r]), spherical_aberration_mm=float(cs[r]),
            amplitude_contrast=float(q0[r]), beam_tilt_x_mrad=float(tilt_x[r]),
            beam_tilt_y_mrad=float(tilt_y[r]),
        )
        for k, r in enumerate(first)
    ]
    return optics, groups, pixel


def _optics_relion31(optics_df: pd.DataFrame, particles: pd.DataFrame, path: Path,
                     pixel_size_A: float | None):
    """Optics groups from ``data_optics`` and each particle's 0-based group index."""
    if len(optics_df) == 0:
        raise InputFileError(path, "the data_optics loop holds no rows")
    _require(optics_df, _CTF_OPTICS, path, "data_optics")
    if "rlnOpticsGroup" in optics_df.columns:
        numbers = _numeric(optics_df, "rlnOpticsGroup", path)
    elif len(optics_df) == 1:
        numbers = np.array([1.0])
    else:
        raise InputFileError(path, "missing column rlnOpticsGroup in data_optics")
    if len(set(numbers.tolist())) != len(numbers):
        raise InputFileError(path, f"data_optics defines optics group(s) twice: {numbers.tolist()}")
    if "rlnOpticsGroup" in particles.columns:
        wanted = _numeric(particles, "rlnOpticsGroup", path)
    elif len(optics_df) == 1:
        wanted = np.full(len(particles), numbers[0])
    else:
        raise InputFileError(
            path, "missing column rlnOpticsGroup in data_particles (data_optics has several groups)"
        )
    groups = pd.Index(numbers).get_indexer(wanted)
    if (groups < 0).any():
        unknown = sorted(set(wanted[groups < 0].tolist()))
        raise InputFileError(
            path, f"particles refer to optics group(s) {unknown} that data_optics does not define"
        )

    if "rlnImagePixelSize" in optics_df.columns:
        pixel = _numeric(optics_df, "rlnImagePixelSize", path)
    elif pixel_size_A is not None:
        pixel = np.full(len(optics_df), float(pixel_size_A))
    else:
        raise InputFileError(path, f"no rlnImagePixelSize in data_optics: {_PIXEL_SIZE_HELP}")
    _check_pixel_size(pixel, path)
    if "rlnImageDimensionality" in optics_df.columns:
        dims = _numeric(optics_df, "rlnImageDimensionality", path)
        if (dims != 2).any():
            raise InputFileError(
                path, "rlnImageDimensionality is not 2: only 2-D particle images are supported"
            )
    size = _numeric(optics_df, "rlnImageSize", path, default=0.0)
    kv, cs, q0 = (_numeric(optics_df, c, path) for c in _CTF_OPTICS)
    tilt_x = _numeric(optics_df, "rlnBeamTiltX", path, default=0.0)
    tilt_y = _numeric(optics_df, "rlnBeamTiltY", path, default=0.0)
    premult = _numeric(optics_df, "rlnCtfDataAreCtfPremultiplied", path, default=0.0)
    optics = []
    for k in range(len(optics_df)):
        row = optics_df.iloc[k]
        name = row["rlnOpticsGroupName"] if "rlnOpticsGroupName" in optics_df.columns else None
        optics.append(OpticsGroup(
            name=str(name) if name is not None and not pd.isna(name) else f"opticsGroup{k + 1}",
            pixel_size_A=float(pixel[k]),
            image_size=int(size[k]) if np.isfinite(size[k]) else 0,
            voltage_kv=float(kv[k]),
            spherical_aberration_mm=float(cs[k]),
            amplitude_contrast=float(q0[k]),
            beam_tilt_x_mrad=float(tilt_x[k]),
            beam_tilt_y_mrad=float(tilt_y[k]),
            odd_zernike=_parse_float_list(row.get("rlnOddZernike"), path, "rlnOddZernike"),
            even_zernike=_parse_float_list(row.get("rlnEvenZernike"), path, "rlnEvenZernike"),
            ctf_premultiplied=bool(premult[k]),
        ))
    return optics, groups.astype(np.int64), pixel[groups]


def _parse_float_list(value, path: Path, column: str) -> tuple[float, ...]:
    """RELION vector value ``[a,b,c]`` (or a bare number) → tuple of floats; absent → ``()``."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ()
    if not isinstance(value, str):
        return (float(value),)
    text = value.strip().strip("[]").replace(",", " ")
    try:
        return tuple(float(v) for v in text.split())
    except ValueError:
        raise InputFileError(
            path, f"column {column} holds {value!r}; expected a list of numbers like [0.1,0.2]"
        ) from None


def _box_of_first_stack(image_paths: np.ndarray, root: Path, project_dir=None) -> int:
    """Image size from the header of the first stack that exists (0 when none is found).

    RELION 3.0 files do not record the box; reading one header is cheap.
    """
    for name in pd.unique(image_paths)[:1]:
        found = resolve_image_path(str(name), root, project_dir)
        if found is None:
            return 0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with mrcfile.open(found, header_only=True, permissive=True) as m:
                    return int(m.header.nx)
        except Exception:  # an unreadable stack is reported when images are read
            return 0
    return 0


def _rotations(df: pd.DataFrame, path: Path) -> np.ndarray | None:
    if not all(c in df.columns for c in _ANGLES):
        return None
    rot, tilt, psi = (_numeric(df, c, path) for c in _ANGLES)
    return euler_relion_to_matrix(rot, tilt, psi)


def _shifts_A(df: pd.DataFrame, pixel_size: np.ndarray, path: Path) -> np.ndarray:
    """Origins in Å ``(n, 2)``: ``rlnOriginX/YAngst``, else pixel ``rlnOriginX/Y`` × pixel size."""
    if "rlnOriginXAngst" in df.columns or "rlnOriginYAngst" in df.columns:
        x = _numeric(df, "rlnOriginXAngst", path, default=0.0)
        y = _numeric(df, "rlnOriginYAngst", path, default=0.0)
    else:
        x = _numeric(df, "rlnOriginX", path, default=0.0) * pixel_size
        y = _numeric(df, "rlnOriginY", path, default=0.0) * pixel_size
    return np.stack([x, y], axis=1)


def _half_sets(df: pd.DataFrame, path: Path) -> np.ndarray:
    """``rlnRandomSubset`` 1, 2 → 0, 1; anything else (or no column) → -1, as int8."""
    subset = _numeric(df, "rlnRandomSubset", path, default=0.0)
    return np.where(subset == 1, 0, np.where(subset == 2, 1, -1)).astype(np.int8)


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------

def latents_to_star_columns(latents: np.ndarray, prefix: str = "flexLatent") -> dict:
    """Per-particle latents ``(n, K)`` → ``{"flexLatent1": (n,), …}`` for ``write_star``."""
    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim != 2:
        raise ValueError(f"latents must be (n, K), got shape {latents.shape}")
    return {f"{prefix}{k + 1}": latents[:, k] for k in range(latents.shape[1])}


def write_star(table: ParticleTable, path, extra_columns: dict[str, np.ndarray] | None = None,
               image_paths: str = "relative") -> None:
    """Write ``table`` as a RELION 3.1 STAR file (``data_optics`` + ``data_particles``).

    When the table came from a STAR file every input column is carried through, with the
    image names, poses (``rlnAngleRot/Tilt/Psi`` from the matrices ``A``), origins
    (``rlnOriginXAngst/YAngst``), CTF, optics group and half-set columns rewritten from the
    table, so subsets and edits are reflected. RELION 3.0 input is converted: per-particle
    microscope columns move to ``data_optics`` and pixel origins become Å origins. From any
    other source the RELION columns are built from the table.

    Image paths are written relative to the output file's folder when the stack was found,
    else as given (``image_paths="relative"``), as the input names them (``"original"``) or
    absolute (``"absolute"``; :meth:`ParticleTable.image_paths_for`).
    ``rlnRandomSubset`` is written as ``half_set + 1`` (0 for unknown) when any
    half-set is known. ``extra_columns`` (names without the leading ``_``, arrays of length
    ``n``) are appended, e.g. ``{"flexLatent1": z[:, 0]}``. The file appears atomically.
    """
    path = Path(path)
    extra = _check_extra(extra_columns, len(table))
    names = table.image_paths_for(path.parent, image_paths)
    optics_df = _optics_block(table)
    particles_df = _particles_block(table, names)
    for name, values in extra.items():
        particles_df[name] = values
    with atomic_path(path) as tmp:
        starfile.write({"optics": optics_df, "particles": particles_df}, tmp,
                       float_format=_FLOAT_FORMAT, overwrite=True)
        tmp.write_text(_with_version_lines(tmp.read_text()))


def _check_extra(extra: dict | None, n: int) -> dict[str, np.ndarray]:
    out = {}
    for name, values in (extra or {}).items():
        values = np.asarray(values)
        if values.shape != (n,):
            raise ValueError(f"extra column {name!r} has shape {values.shape}, expected ({n},)")
        out[str(name).lstrip("_")] = values
    return out


def _with_version_lines(text: str) -> str:
    """Replace starfile's banner and put RELION's version line before every block."""
    out = [f"# written by flexcore {__version__} (RELION 3.1 STAR layout)"]
    for line in text.splitlines()[1:]:
        if not line and out[-1] == "":
            continue  # collapse starfile's runs of blank lines
        if line.startswith("data_"):
            out += ([] if out[-1] == "" else [""]) + [STAR_VERSION_LINE, ""]
        out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"


def _format_float_list(values) -> str:
    return "[" + ",".join(f"{v:.12g}" for v in values) + "]"


def _optics_block(table: ParticleTable) -> pd.DataFrame:
    """``data_optics`` rows from ``table.optics`` (input optics columns carried through)."""
    g = table.optics
    raw = table.raw_optics
    if isinstance(raw, pd.DataFrame) and len(raw) == len(g):
        df = raw.copy().reset_index(drop=True)
    else:
        df = pd.DataFrame(index=range(len(g)))
    df["rlnOpticsGroup"] = np.arange(1, len(g) + 1)
    df["rlnOpticsGroupName"] = [o.name for o in g]
    df["rlnAmplitudeContrast"] = [o.amplitude_contrast for o in g]
    df["rlnSphericalAberration"] = [o.spherical_aberration_mm for o in g]
    df["rlnVoltage"] = [o.voltage_kv for o in g]
    df["rlnImagePixelSize"] = [o.pixel_size_A for o in g]
    if all(o.image_size > 0 for o in g):
        df["rlnImageSize"] = [o.image_size for o in g]
    if "rlnImageDimensionality" not in df.columns:
        df["rlnImageDimensionality"] = 2
    if "rlnCtfDataAreCtfPremultiplied" in df.columns or any(o.ctf_premultiplied for o in g):
        df["rlnCtfDataAreCtfPremultiplied"] = [int(o.ctf_premultiplied) for o in g]
    if "rlnBeamTiltX" in df.columns or any(o.beam_tilt_x_mrad or o.beam_tilt_y_mrad for o in g):
        df["rlnBeamTiltX"] = [o.beam_tilt_x_mrad for o in g]
        df["rlnBeamTiltY"] = [o.beam_tilt_y_mrad for o in g]
    for column, attr in (("rlnOddZernike", "odd_zernike"), ("rlnEvenZernike", "even_zernike")):
        if column in df.columns or any(getattr(o, attr) for o in g):
            df[column] = [_format_float_list(getattr(o, attr)) for o in g]
    return df


def _particles_block(table: ParticleTable, image_paths: np.ndarray) -> pd.DataFrame:
    """``data_particles``: the input loop (if STAR) with the table's values written in."""
    n = len(table)
    raw = table.raw
    if isinstance(raw, pd.DataFrame) and len(raw) == n and table.source_format.startswith("relion"):
        df = raw.copy().reset_index(drop=True)
        # RELION 3.1 keeps microscope values in data_optics and origins in Å.
        drop = ["rlnOriginX", "rlnOriginY"]
        if table.source_format == "relion30":
            drop += list(_RELION30_OPTICS_COLUMNS)
        df = df.drop(columns=[c for c in drop if c in df.columns])
    else:
        df = pd.DataFrame(index=range(n))
    df["rlnImageName"] = [
        f"{i + 1:06d}@{p}" for i, p in zip(table.image_indices.tolist(), image_paths.tolist())
    ]
    df["rlnOpticsGroup"] = np.asarray(table.optics_group, dtype=np.int64) + 1
    if table.rotations is not None:
        angles = matrix_to_euler_relion(table.rotations)
        for k, column in enumerate(_ANGLES):
            df[column] = angles[:, k]
    df["rlnOriginXAngst"] = table.shifts_A[:, 0]
    df["rlnOriginYAngst"] = table.shifts_A[:, 1]
    df["rlnDefocusU"] = table.defocus_u_A
    df["rlnDefocusV"] = table.defocus_v_A
    df["rlnDefocusAngle"] = table.defocus_angle_deg
    df["rlnPhaseShift"] = table.phase_shift_deg
    df["rlnCtfBfactor"] = table.bfactor_A2
    df["rlnCtfScalefactor"] = table.ctf_scale
    half = np.asarray(table.half_set)
    if (half >= 0).any():
        df["rlnRandomSubset"] = np.where(half >= 0, half + 1, 0).astype(np.int64)
    return df

