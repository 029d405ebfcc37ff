"""Rule explore: the latent explorer page of the trained model (train/explorer.html).

Calls flexcore.stages.explore.step.run_explore with config explore.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.main import call_step
from flexcore.stages.explore.step import run_explore

call_step(
    run_explore,
    snakemake.input.checkpoint,
    Path(snakemake.output.page).parent,
    mesh=snakemake.input.mesh,
    **snakemake.params.explore,
)
