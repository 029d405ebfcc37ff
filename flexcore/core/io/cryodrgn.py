"""cryoDRGN's particle format (also DRGN-AI, RECOVAR and the CryoBench datasets).

A cryoDRGN dataset is three files:

* images: one ``.mrcs`` stack, or a ``.txt`` listing one stack per line (relative names
  are relative to the ``.txt`` file's folder, as cryoDRGN reads them);
* ``poses.pkl``: a pickled tuple ``(rot, trans)``: ``rot`` ``(N, 3, 3)`` and ``trans``
  ``(N, 2)``, or ``rot`` alone (no shifts);
* ``ctf.pkl``: a pickled ``(N, 9)`` float32 array with columns ``D`` (box, px), ``Apix``
  (Å/px), ``dfu``, ``dfv`` (defocus U/V, Å), ``dfang`` (°), ``volt`` (kV), ``cs`` (mm),
  ``w`` (amplitude contrast) and ``phase_shift`` (°).

Conventions, read from cryoDRGN's own converters (``cryodrgn parse_pose_star``,
``parse_ctf_star``; docs/conventions.md): ``rot`` is ``utils.R_from_relion(rot, tilt, psi)``,
which equals flexcore's RELION matrix ``A`` (reference → particle frame, column vectors;
cryoDRGN applies it to row vectors, ``(x, y, 0) @ rot``, which is the same map read the
other way); ``trans`` is RELION's origin ``rlnOriginX/Y`` in pixels divided by the box ``D``
(same sign, fractions of the box); the CTF columns are RELION's values unchanged. Reading
is therefore ``A = rot``, ``shifts_A = trans · D · Apix``.

The pickles are read by :class:`ArrayUnpickler`, which builds NumPy arrays and tuples of
them and refuses every other object a pickle could name, so a crafted file cannot run code.
Writing (:func:`write_cryodrgn`, :func:`write_latents_pkl`) uses plain ``pickle`` with
protocol 4, as cryoDRGN does.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from ..errors import InputFileError
from ..utils.atomic import atomic_path
from .mrc import StackReader
from .particles import OpticsGroup, ParticleTable, resolve_image_path, unique_row_groups

CTF_COLUMNS = ("D", "Apix", "dfu", "dfv", "dfang", "volt", "cs", "w", "phase_shift")
PICKLE_PROTOCOL = 4
# The globals a pickle of NumPy arrays (protocols 2-5, NumPy 1.x and 2.x) names; nothing else.
_ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # protocol-2 pickles carry array bytes as latin-1 text
})


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that only builds NumPy arrays, NumPy scalars and Python containers.

    Any other class or function a pickle names (``os.system``, ``builtins.eval``, …) is
    refused with an :class:`InputFileError` naming ``path`` before it is looked up.
    """

    def __init__(self, file, path):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise InputFileError(self.path, f"the pickle asks for {module}.{name}, which is not "
                                            "part of a NumPy array; refused (only arrays and "
                                            "tuples of arrays are read from pickles)")
        return super().find_class(module, name)


def load_array_pickle(path):
    """Read a pickle holding a NumPy array or a tuple/list of arrays, safely.

    Returns the array, or a tuple of arrays. Raises :class:`InputFileError` naming ``path``
    when the file is missing, is not a pickle, names anything but NumPy arrays, or holds
    object arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file does not exist")
    try:
        obj = ArrayUnpickler(io.BytesIO(path.read_bytes()), path).load()
    except InputFileError:
        raise
    except Exception as exc:  # truncated or not a pickle at all
        raise InputFileError(path, f"not a readable pickle of NumPy arrays ({exc})") from None
    items = obj if isinstance(obj, (tuple, list)) else (obj,)
    for a in items:
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "fiub":
            raise InputFileError(path, f"expected numeric NumPy arrays, found {type(a).__name__}"
                                       + (f" of dtype {a.dtype}" if isinstance(a, np.ndarray) else ""))
    return tuple(obj) if isinstance(obj, (tuple, list)) else obj


def read_stack_list(path) -> tuple[np.ndarray, np.ndarray, int]:
    """Image references of a ``.mrcs`` stack or a ``.txt`` list of stacks.

    Returns ``(image_paths (n,) object, image_indices (n,) int64, box)``; names in a
    ``.txt`` are kept as written (relative ones resolve against the ``.txt``'s folder).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file does not exist")
    if path.suffix.lower() == ".txt":
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not names:
            raise InputFileError(path, "lists no image stacks (expected one .mrcs per line)")
    else:
        names = [path.name]
    paths, indices, boxes = [], [], set()
    for name in names:
        found = resolve_image_path(name, path.parent)
        if found is None:
            raise InputFileError(path, f"image stack {name!r} not found (relative names are "
                                       f"relative to {path.parent})")
        reader = StackReader(found)
        paths += [name] * reader.n
        indices.append(np.arange(reader.n))
        boxes.add(reader.box)
        reader.close()
    if len(boxes) != 1:
        raise InputFileError(path, f"the stacks have different image sizes {sorted(boxes)} px")
    return np.asarray(paths, dtype=object), np.concatenate(indices).astype(np.int64), boxes.pop()


def read_cryodrgn_poses(path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rotations (n,3,3), trans (n,2))`` from ``poses.pkl``; ``trans`` in fractions of the
    box (zeros when the file holds rotations only)."""
    obj = load_array_pickle(path)
    parts = obj if isinstance(obj, tuple) else (obj,)
    if len(parts) not in (1, 2):
        raise InputFileError(path, f"expected (rotations, translations), found {len(parts)} arrays")
    rot = np.asarray(parts[0], dtype=np.float64)
    if rot.shape != (n, 3, 3):
        raise InputFileError(path, f"rotations have shape {rot.shape}; expected ({n}, 3, 3) "
                                   f"for the {n} images")
    ortho = np.abs(np.einsum("nij,nkj->nik", rot, rot) - np.eye(3)).max(axis=(1, 2))
    if (ortho > 1e-3).any() or (np.linalg.det(rot) < 0).any():
        first = int(np.flatnonzero((ortho > 1e-3) | (np.linalg.det(rot) < 0))[0])
        raise InputFileError(path, f"row {first + 1} is not a rotation matrix")
    trans = np.zeros((n, 2))
    if len(parts) == 2:
        trans = np.asarray(parts[1], dtype=np.float64)
        if trans.shape != (n, 2):
            raise InputFileError(path, f"translations have shape {trans.shape}; expected ({n}, 2)")
        if np.abs(trans).max() > 1:
            raise InputFileError(path, "translations exceed the box; cryoDRGN stores them in "
                                       "fractions of the box (pixels / D), these look like pixels")
    return rot, trans


def read_cryodrgn_ctf(path, n: int) -> np.ndarray:
    """The ``(n, 9)`` CTF table of ``ctf.pkl`` as float64 (columns :data:`CTF_COLUMNS`)."""
    ctf = load_array_pickle(path)
    if isinstance(ctf, tuple) or ctf.shape != (n, 9):
        shape = "a tuple" if isinstance(ctf, tuple) else str(ctf.shape)
        raise InputFileError(path, f"CTF table is {shape}; expected ({n}, 9) with columns "
                                   f"{', '.join(CTF_COLUMNS)}")
    ctf = ctf.astype(np.float64)
    if not np.isfinite(ctf).all() or (ctf[:, 1] <= 0).any() or (ctf[:, 0] <= 0).any():
        raise InputFileError(path, "box (D) and pixel size (Apix) must be positive and every "
                                   "value finite")
    return ctf


def read_cryodrgn(particles, poses, ctf) -> ParticleTable:
    """Read a cryoDRGN dataset into a :class:`ParticleTable` in flexcore's conventions.

    Parameters
    ----------
    particles : ``.mrcs`` stack or ``.txt`` list of stacks.
    poses : ``poses.pkl`` (see the module docstring for conventions).
    ctf : ``ctf.pkl`` ``(N, 9)``.

    Optics groups are the unique (Apix, D, volt, cs, w); half sets are unknown (-1), so
    prep draws a seeded random split. ``source_format`` is ``"cryodrgn"``.
    """
    paths, indices, box = read_stack_list(particles)
    n = len(indices)
    rot, trans = read_cryodrgn_poses(poses, n)
    table_ctf = read_cryodrgn_ctf(ctf, n)
    d, apix = table_ctf[:, 0], table_ctf[:, 1]
    if (np.round(d) != box).any():
        raise InputFileError(ctf, f"column D (box) says {sorted(set(np.round(d).astype(int)))} px "
                                  f"but the images in {particles} are {box} px")
    groups, first = unique_row_groups(apix, d, table_ctf[:, 5], table_ctf[:, 6], table_ctf[:, 7])
    optics = [OpticsGroup(name=f"opticsGroup{k + 1}", pixel_size_A=float(apix[r]),
                          image_size=box, voltage_kv=float(table_ctf[r, 5]),
                          spherical_aberration_mm=float(table_ctf[r, 6]),
                          amplitude_contrast=float(table_ctf[r, 7]))
              for k, r in enumerate(first)]
    table = ParticleTable(
        rotations=rot,
        shifts_A=trans * d[:, None] * apix[:, None],
        defocus_u_A=table_ctf[:, 2], defocus_v_A=table_ctf[:, 3],
        defocus_angle_deg=table_ctf[:, 4], phase_shift_deg=table_ctf[:, 8],
        bfactor_A2=np.zeros(n), ctf_scale=np.ones(n),
        optics_group=groups, optics=optics,
        image_paths=paths, image_indices=indices,
        half_set=np.full(n, -1, dtype=np.int8),
        source_path=str(particles), source_format="cryodrgn",
    )
    table.validate()
    return table


def _dump(obj, path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=PICKLE_PROTOCOL)


def write_cryodrgn(table: ParticleTable, poses_path, ctf_path) -> None:
    """Write ``table``'s poses and CTF as cryoDRGN's ``poses.pkl`` and ``ctf.pkl``.

    The inverse of :func:`read_cryodrgn`: ``rot = A`` (float32), ``trans = shifts_A /
    (Apix · D)`` (float32), CTF columns :data:`CTF_COLUMNS` (float32).
    """
    table.require_poses()
    apix = np.array([g.pixel_size_A for g in table.optics])[table.optics_group]
    d = np.array([g.image_size for g in table.optics], dtype=np.float64)[table.optics_group]
    trans = table.shifts_A / (apix * d)[:, None]
    ctf = np.column_stack([
        d, apix, table.defocus_u_A, table.defocus_v_A, table.defocus_angle_deg,
        np.array([g.voltage_kv for g in table.optics])[table.optics_group],
        np.array([g.spherical_aberration_mm for g in table.optics])[table.optics_group],
        np.array([g.amplitude_contrast for g in table.optics])[table.optics_group],
        table.phase_shift_deg,
    ])
    _dump((table.rotations.astype(np.float32), trans.astype(np.float32)), poses_path)
    _dump(ctf.astype(np.float32), ctf_path)


def write_latents_pkl(z: np.ndarray, path) -> None:
    """Write per-particle latents ``(N, K)`` as cryoDRGN's ``z.pkl`` (float32, protocol 4)."""
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2:
        raise ValueError(f"latents must be (N, K), got shape {z.shape}")
    _dump(z, path)


def read_latents_pkl(path) -> np.ndarray:
    """Latents ``(N, K)`` from a cryoDRGN ``z.pkl`` (read safely, see :class:`ArrayUnpickler`)."""
    z = load_array_pickle(path)
    if isinstance(z, tuple) or z.ndim != 2:
        raise InputFileError(path, "expected one (N, K) array of latents")
    return z
