"""Rule sweep_summary: a table (TSV) and a plot (PNG) comparing the points of a sweep.

Reads each point's train.json and latents.npy (and recon.json, evaluation.json when the
sweep reconstructs / the data are simulated) through
flexcore.stages.sweep_summary.step.run_sweep_summary.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from flexcore.cli.main import call_step
from flexcore.stages.sweep_summary.step import run_sweep_summary


def as_list(files):
    return [files] if isinstance(files, str) else list(files or [])


inputs = snakemake.input
files = {k: as_list(inputs.get(k)) for k in ("train", "latents", "recon", "evaluation")}
table = call_step(
    run_sweep_summary,
    list(snakemake.params.points),
    files,
    snakemake.output.table,
    snakemake.output.plot,
    mode=snakemake.params.mode,
)
print(table.to_string(index=False), file=sys.stderr)
