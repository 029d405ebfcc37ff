"""A simulation's ground truth, matched to the particles a prep made from it.

``flexcore simulate`` writes ``ground_truth.json`` (the motion's dimensions, the
ground-truth maps and their coordinates) and ``particles.star`` with each particle's true
coordinates (``_flexTrueCoord1…``); prep links its rows to the simulation's by
``_flexSourceIndex``. Both evaluations (of the training and of the reconstruction) read the
truth here, and refuse a folder that is not a simulation or a prep made from other particles.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import InputFileError
from .io import read_particles


def read_truth(sim_dir: Path, prep_dir: Path) -> tuple[dict, np.ndarray]:
    """``ground_truth.json`` of ``flexcore simulate``'s folder ``sim_dir`` and the true motion
    coordinates ``(N, n_motions)`` of the particles prepared in ``prep_dir`` (matched by
    ``_flexSourceIndex``). Refuses, naming the file, a folder that is not a simulation and a
    prep made from other particles than this simulation's (poses compared)."""
    record = sim_dir / "ground_truth.json"
    if not record.is_file() or not (sim_dir / "particles.star").is_file():
        raise InputFileError(sim_dir, "is not a `flexcore simulate` folder (it needs "
                                      "ground_truth.json and particles.star)")
    try:
        info = json.loads(record.read_text())
    except ValueError as exc:
        raise InputFileError(record, f"is not valid JSON ({exc})") from exc
    missing = [k for k in ("n_motions", "gt_maps", "gt_coordinates") if k not in info]
    if missing:
        raise InputFileError(record, f"is not a simulation's ground truth (no {missing[0]})")
    n_motions = int(info["n_motions"])
    sim = read_particles(sim_dir / "particles.star")
    star = prep_dir / "particles.star"
    if not star.is_file():
        raise InputFileError(star, "prepared particles not found: run `flexcore prep` first")
    prep = read_particles(star)
    if prep.raw is None or "flexSourceIndex" not in prep.raw:
        raise InputFileError(star, "has no _flexSourceIndex column (not written by flexcore prep)")
    src = np.asarray(prep.raw["flexSourceIndex"], dtype=np.int64)
    columns = [f"flexTrueCoord{m + 1}" for m in range(n_motions)]
    if src.max(initial=0) >= len(sim) or any(c not in sim.raw for c in columns) or \
            not np.allclose(prep.rotations, sim.rotations[src], atol=1e-4):
        raise InputFileError(star, f"was not prepared from the simulation {sim_dir} (its "
                                   "particles, poses or true coordinates differ)")
    truth = np.stack([np.asarray(sim.raw[c], dtype=np.float64)[src] for c in columns], axis=1)
    return info, truth


def check_latents_match(latents: np.ndarray, truth: np.ndarray, checkpoint, prep_dir) -> None:
    """Refuse a model whose latents are not one per prepared particle of ``prep_dir``."""
    if len(latents) != len(truth):
        raise InputFileError(checkpoint, f"holds latents for {len(latents)} particles but "
                                         f"{Path(prep_dir) / 'particles.star'} has "
                                         f"{len(truth)}: the model was trained on another prep")
