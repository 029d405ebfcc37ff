"""What cryoSPARC needs besides a particle array: stable 64-bit ``uid`` s, the fields it writes
for imported particles, and the result-group file (``.csg``) its "Import Result Group" job
opens.

* ``uid``: cryoSPARC joins a particle's fields across files by its random 64-bit ``uid``. A
  ``.cs`` made from a STAR file gets, for row ``r`` of that file, the first 8 bytes
  (little-endian) of ``BLAKE2b(seed ‖ r)``, with ``seed`` the SHA-256 of the STAR file's
  contents: random-looking, the same on every re-run and in every file written from that
  STAR file (latents, subsets), so cryoSPARC sees one particle as one particle.
* Imported-particle fields, as cryoSPARC's own import writes them (compare the real
  ``.cs`` files in the project's format fixtures): ``blob/sign`` ``-1`` (dark particles on a
  light background, as RELION stacks are), ``blob/import_sig`` (one 64-bit signature per
  source file), ``ctf/type`` ``imported``, ``ctf/scale_const`` 0, and the aberration fields
  ``ctf/shift_A``, ``ctf/tilt_A``, ``ctf/trefoil_A`` (2 each), ``ctf/tetra_A`` and
  ``ctf/anisomag`` (4 each) as zeros: flexcore does not convert RELION's beam tilt and
  Zernike terms into cryoSPARC's (a warning says so when the input has them; cryoSPARC's
  Global CTF Refinement estimates them again).
* ``.csg``: a YAML file naming, for each result slot (the field prefix: ``blob``, ``ctf``,
  ``alignments3D``, ``components_mode_0`` …), the ``.cs`` holding it (``>`` = beside the
  ``.csg``), its number of items and type (``particle.<slot>``; ``particle.components`` for
  ``components_mode_k``), plus the group's name, title and description, the time and a
  version: the layout of the group files cryoSPARC v2.15 writes.
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import numpy as np
import yaml

from ..utils.atomic import write_text_atomic
from ..utils.files import file_sha256
from ..utils.logging import get_logger

log = get_logger("flexcore.io.cryosparc")

CSG_VERSION = "v2.15.0"


def uid_seed(source) -> bytes:
    """The seed of a particle file's uids: the SHA-256 (32 bytes) of its contents."""
    return bytes.fromhex(file_sha256(source))


def stable_uids(seed: bytes, rows) -> np.ndarray:
    """``(n,)`` uint64 uids of rows ``rows`` of the file with this ``seed`` (module docstring);
    never 0."""
    out = np.empty(len(rows), dtype=np.uint64)
    for i, r in enumerate(np.asarray(rows, dtype=np.int64).tolist()):
        digest = hashlib.blake2b(seed + int(r).to_bytes(8, "little"), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little") or 1
    return out


def imported_particle_fields(n: int, seed: bytes, optics=()) -> dict[str, np.ndarray]:
    """The fields cryoSPARC writes for imported particles (module docstring) for ``n``
    particles of the source with this ``seed``; ``optics`` (the table's optics groups) only
    to warn about aberrations that are not carried."""
    if any(o.beam_tilt_x_mrad or o.beam_tilt_y_mrad or any(o.odd_zernike) or any(o.even_zernike)
           for o in optics):
        log.warning("the particles' beam tilt / Zernike aberrations are not converted into "
                    "cryoSPARC's ctf/tilt_A, shift_A, trefoil_A, tetra_A (written as zeros); "
                    "re-estimate them with cryoSPARC's Global CTF Refinement")
    zeros = lambda k: np.zeros((n, k), dtype=np.float32)  # noqa: E731
    return {
        "blob/sign": np.full(n, -1.0, dtype=np.float32),
        "blob/import_sig": np.full(n, int.from_bytes(seed[:8], "little"), dtype=np.uint64),
        "ctf/type": np.full(n, b"imported", dtype="S9"),
        "ctf/scale_const": np.zeros(n, dtype=np.float32),
        "ctf/shift_A": zeros(2), "ctf/tilt_A": zeros(2), "ctf/trefoil_A": zeros(2),
        "ctf/tetra_A": zeros(4), "ctf/anisomag": zeros(4),
    }


def result_slots(field_names) -> list[str]:
    """The result slots of a ``.cs``'s fields: their prefixes (``uid`` is no slot), in order."""
    slots = []
    for name in field_names:
        if "/" in name and (slot := name.split("/", 1)[0]) not in slots:
            slots.append(slot)
    return slots


def write_csg(cs_path, n_items: int, field_names, *, name: str = "particles",
              title: str = "Particles", description: str = "Particles written by flexcore") -> Path:
    """Write ``<cs_path stem>.csg`` beside ``cs_path`` (atomically): one group of type
    ``particle`` whose every slot is in ``cs_path``. Returns its path."""
    cs_path = Path(cs_path)
    results = {}
    for slot in result_slots(field_names):
        kind = "components" if slot.startswith("components_mode_") else slot
        results[slot] = {"metafile": f">{cs_path.name}", "num_items": int(n_items),
                         "type": f"particle.{kind}"}
    record = {
        "created": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f"),
        "group": {"description": description, "name": name, "title": title, "type": "particle"},
        "results": results,
        "version": CSG_VERSION,
    }
    path = cs_path.with_suffix(".csg")
    write_text_atomic(path, yaml.safe_dump(record, default_flow_style=False, sort_keys=True))
    return path
