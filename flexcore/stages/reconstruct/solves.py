"""A reconstruction's solves as separate jobs, and combining them.

``flexcore reconstruct`` solves four independent problems: ``flex`` and ``noflex`` (the
rigid baseline) for half sets A and B. ``flexcore reconstruct --solve flex_A`` (…) solves one
of them and writes ``<kind>_map_half_<half>.mrc`` and ``<kind>_half_<half>.json`` (its
L-BFGS record, pass counts, times, memory and the fingerprint of its inputs and parameters)
into its folder, so a scheduler can run the solves on different GPUs at once (the
workflow's ``reconstruct.split_jobs``). :func:`combine_solves` (``flexcore
reconstruct-combine``) reads the solves of such a folder, checks that they belong to one
reconstruction, and writes the outputs of ``flexcore reconstruct`` — the same maps, bit for
bit on the CPU, since the same code solves each half.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ...core.errors import InputFileError
from ...core.io import read_map
from ...core.mesh import TetMesh
from ...core.utils.files import file_sha256
from ...core.utils.logging import get_logger
from ...core.utils.outputs import prepare_outputs
from ...core.utils.provenance import write_provenance
from .inputs import HALF_NAMES
from .outputs import OUTPUTS, write_outputs
from .params import SOLVES

log = get_logger("flexcore.recon")


def solve_files(solve: str) -> tuple[str, str]:
    """``(map, record)`` file names of ``solve`` (e.g. ``flex_A``)."""
    kind, half = solve.split("_")
    return f"{kind}_map_half_{half}.mrc", f"{kind}_half_{half}.json"


def read_solves(halves_dir: Path) -> dict[str, dict]:
    """The records of the solves in ``halves_dir`` (flex of both halves required, the
    rigid baseline of both or neither), checked to belong to one reconstruction."""
    records = {}
    for solve in SOLVES:
        path = halves_dir / solve_files(solve)[1]
        if not path.is_file():
            continue
        try:
            records[solve] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputFileError(path, f"cannot be read as a solve record ({exc})") from exc
        if records[solve].get("solve") != solve or "fingerprint" not in records[solve]:
            raise InputFileError(path, "is not the record of a reconstruct solve")
        if not (halves_dir / solve_files(solve)[0]).is_file():
            raise InputFileError(halves_dir / solve_files(solve)[0],
                                 f"not found: the map of the {solve} solve")
    for solve in ("flex_A", "flex_B"):
        if solve not in records:
            raise InputFileError(halves_dir / solve_files(solve)[1],
                                 f"not found: combining needs the {solve} solve "
                                 f"(flexcore reconstruct … --solve {solve})")
    if ("noflex_A" in records) != ("noflex_B" in records):
        lacking = "noflex_B" if "noflex_A" in records else "noflex_A"
        raise InputFileError(halves_dir / solve_files(lacking)[1],
                             "not found: the rigid baseline needs the noflex solves of both halves")
    first = records["flex_A"]
    for solve, record in records.items():
        a = {k: v for k, v in first["fingerprint"].items() if k != "device"}
        b = {k: v for k, v in record["fingerprint"].items() if k != "device"}
        if a != b:
            what = ", ".join(sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)))
            raise InputFileError(halves_dir / solve_files(solve)[1],
                                 f"was solved with other inputs or parameters than "
                                 f"{solve_files('flex_A')[1]} (they differ in: {what})")
    return records


def combine_solves(halves_dir, out_dir, bfactor=None) -> dict:
    """Combine the solves in ``halves_dir`` (each written by ``run_reconstruct(solve=…)``)
    into the outputs of a whole reconstruction in ``out_dir``: half maps, full maps,
    sharpened map, FSC table and plot, L-BFGS log and ``recon.json``."""
    t0 = time.time()
    halves_dir = Path(halves_dir)
    records = read_solves(halves_dir)
    first = records["flex_A"]
    mesh_path = Path(first["mesh"])
    if not mesh_path.is_file() or file_sha256(mesh_path) != first["fingerprint"]["mesh_sha256"]:
        raise InputFileError(mesh_path, "is missing or changed since the solves (SHA-256); "
                                        "solve again")
    inputs = {f"solve {s}": halves_dir / name for s in records for name in solve_files(s)}
    out = prepare_outputs("reconstruct", out_dir, OUTPUTS, inputs)
    maps: dict[str, list] = {}
    for solve in ("flex_A", "flex_B", "noflex_A", "noflex_B"):
        if solve in records:
            volume, voxel = read_map(halves_dir / solve_files(solve)[0])
            if volume.shape != (first["box"],) * 3:
                raise InputFileError(halves_dir / solve_files(solve)[0],
                                     f"is {volume.shape[0]} px, the solves' box is {first['box']}")
            maps.setdefault(solve.split("_")[0], []).append(volume)
    mesh = TetMesh.load(mesh_path)
    mask_soft = (mesh if mesh.box == first["box"] else mesh.upscale(first["box"])).mask_soft
    order = [f"{kind}_{h}" for h in HALF_NAMES for kind in maps]  # as one job logs them
    summary = write_outputs(out, maps, {s: records[s]["history"] for s in order}, mask_soft,
                            first["pixel_size_A"], bfactor)
    timings = {k: v for s in order for k, v in records[s]["timings"].items() if k != "total_s"}
    timings.update({f"job_{s}_s": records[s]["timings"]["total_s"] for s in order})
    timings["combine_s"] = round(time.time() - t0, 2)
    keep = ("checkpoint", "prep_dir", "epoch", "box", "pixel_size_A", "train_box", "scale",
            "mask_voxels", "noise_variance", "n_particles", "half_sets", "half_counts",
            "aberrations")
    summary.update({**{k: first[k] for k in keep},
                    "full_map": "average of the two half-map solutions",
                    "fsc_mask": "mesh mask_soft upscaled to the reconstruction box",
                    "timings": timings, "passes": {s: records[s]["passes"] for s in order},
                    "memory": {s: records[s]["memory"] for s in order},
                    "device": {s: records[s]["device"] for s in order},
                    "ranks": {s: records[s]["ranks"] for s in order},
                    "solved_in": "separate jobs (one per solve), combined"})
    params = {k: v for k, v in first["parameters"].items() if k != "solve"}
    params.update(rigid_baseline="noflex" in maps, bfactor=bfactor)
    write_provenance(out / "recon.json", "reconstruct", params, extra=summary)
    log.info("%s (combined from %d solves in %s)", summary["summary"], len(records), halves_dir)
    return summary
