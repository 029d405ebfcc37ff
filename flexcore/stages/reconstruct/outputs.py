"""The reconstruction's own tables: the L-BFGS log of every solve."""

from __future__ import annotations

from ...core.utils.atomic import write_text_atomic


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
