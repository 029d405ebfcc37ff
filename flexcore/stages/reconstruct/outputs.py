"""What a reconstruction writes: half and full maps, the sharpened map, the FSC table and
plot (whole box and masked), the L-BFGS log of every solve."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.errors import FlexcoreError
from ...core.fsc import format_resolution, fsc_curve, resolution_at, resolution_or_none
from ...core.fsc_outputs import plot_fsc, sharpen, write_fsc_table
from ...core.io import write_map
from ...core.utils.atomic import write_text_atomic
from ...core.utils.logging import get_logger
from .inputs import HALF_NAMES

log = get_logger("flexcore.recon")
OUTPUTS = ("flex_map.mrc", "flex_map_half_A.mrc", "flex_map_half_B.mrc", "flex_map_sharp.mrc",
           "noflex_map.mrc", "noflex_map_half_A.mrc", "noflex_map_half_B.mrc", "fsc.tsv",
           "fsc.png", "lbfgs.tsv", "recon.json")


def write_lbfgs_table(path, runs: dict[str, list[dict]]) -> None:
    """TSV of every solve's iterations: solve, iteration, objective, grad_norm, step,
    step_norm, direction, seconds."""
    cols = ["iteration", "objective", "grad_norm", "step", "step_norm", "direction", "seconds"]
    lines = ["\t".join(["solve"] + cols)]
    for name, hist in runs.items():
        for rec in hist:
            vals = [rec[c] if isinstance(rec[c], str) else (str(rec[c]) if isinstance(rec[c], int)
                                                            else f"{rec[c]:.10g}") for c in cols]
            lines.append("\t".join([name] + vals))
    write_text_atomic(path, "\n".join(lines) + "\n")


def write_outputs(out: Path, maps: dict, runs: dict, mask_soft: np.ndarray, psize: float,
                  bfactor) -> dict:
    """Write maps, FSC table/plot and the L-BFGS log; return resolutions and the summary."""
    out.mkdir(parents=True, exist_ok=True)
    for kind, halves in maps.items():
        for name, half in zip(HALF_NAMES, halves):
            if not np.isfinite(half).all():
                raise FlexcoreError(f"the {kind} reconstruction of half {name} has NaN or "
                                    f"infinite voxels; no maps were written to {out}")
    curves, res = {}, {}
    for kind, (a, b) in maps.items():
        full = 0.5 * (a + b)
        write_map(out / f"{kind}_map_half_A.mrc", a, psize)
        write_map(out / f"{kind}_map_half_B.mrc", b, psize)
        write_map(out / f"{kind}_map.mrc", full, psize)
        curves[f"{kind}_masked"] = fsc_curve(a, b, mask=mask_soft)
        curves[kind] = fsc_curve(a, b)
    for name, fsc in curves.items():
        res[name] = resolution_at(fsc, 0.143, psize)
    box = mask_soft.shape[0]
    write_fsc_table(out / "fsc.tsv", curves, box, psize)
    fmt = {name: format_resolution(r) for name, r in res.items()}
    line = f"flex 0.143: {fmt['flex_masked']}"
    if "noflex" in maps:
        line += f", rigid: {fmt['noflex_masked']} (masked; unmasked flex " \
                f"{fmt['flex']}, rigid {fmt['noflex']})"
    else:
        line += f" (masked; unmasked {fmt['flex']}; no rigid baseline)"
    plot_fsc(out / "fsc.png", curves, res, box, psize, line)
    write_lbfgs_table(out / "lbfgs.tsv", runs)
    full = 0.5 * (maps["flex"][0] + maps["flex"][1])
    sharp, sharp_rec = sharpen(full, psize, curves["flex_masked"], res["flex_masked"], bfactor)
    write_map(out / "flex_map_sharp.mrc", sharp, psize)
    log.info("wrote maps, fsc.tsv/png and lbfgs.tsv to %s", out)
    return {"summary": line,
            "resolution_0143_A": {name: resolution_or_none(r) for name, r in res.items()},
            "sharpening": sharp_rec,
            "objective": {k: {"start": v[0]["objective"], "final": v[-1]["objective"],
                              "iterations": len(v) - 1} for k, v in runs.items()}}
