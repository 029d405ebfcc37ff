"""Rule explore: the latent explorer page of the trained model (train/explorer.html).

Calls flexcore.stages.explore.run_explore with config explore.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.stages.explore import run_explore

run_explore(
    snakemake.input.checkpoint,
    Path(snakemake.output.page).parent,
    mesh=snakemake.input.mesh,
    **snakemake.params.explore,
)
