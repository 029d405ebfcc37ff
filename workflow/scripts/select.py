"""Rule select: particle subsets by latent region, written as the original particles.

Calls flexcore.stages.select.run_select with config select on the trained latents; the subsets
are rows of the particle file prep read (prep.json's source_particles). With select.method
file they are the subsets of the explorer's selection.json (select.selection_file).
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.main import call_step
from flexcore.stages.select.step import run_select

call_step(
    run_select,
    snakemake.input.latents,
    Path(snakemake.input.prep_info).parent,
    Path(snakemake.output.summary).parent,
    selection_file=snakemake.input.get("selection_file"),
    **snakemake.params.select,
)
