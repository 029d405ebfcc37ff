"""Rule reconstruct: flexible high-resolution reconstruction with gold-standard FSC.

Calls flexcore.stages.reconstruct.step.run_reconstruct with config reconstruct (the
full-resolution particles are found through prep.json); with more than one GPU (config
reconstruct.gpus) the step starts that many ranks itself.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.main import call_step
from flexcore.stages.reconstruct.step import run_reconstruct

call_step(
    run_reconstruct,
    snakemake.input.checkpoint,
    Path(snakemake.input.prep_info).parent,
    Path(snakemake.output.summary).parent,
    mesh=snakemake.input.mesh,
    gpus=int(snakemake.resources.get("gpu", 1)),
    **snakemake.params.reconstruct,
)
