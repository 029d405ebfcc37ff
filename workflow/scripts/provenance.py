"""Rule provenance: what produced a results folder, as YAML beside the results.

Calls flexcore.stages.provenance.step.run_provenance: versions, git commit, host and time,
the resolved configuration (schema defaults filled in), the seeds of every stage and, for a
sweep, its points.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from flexcore.cli.main import call_step
from flexcore.stages.provenance.step import run_provenance

call_step(
    run_provenance,
    snakemake.output[0],
    config=snakemake.params.config,
    seeds=snakemake.params.seeds,
    sweep_points=snakemake.params.sweep,
)
