"""Rule reconstruct: flexible high-resolution reconstruction with gold-standard FSC.

Calls flexcore.recon.step.run_reconstruct with config reconstruct; the full-resolution
particles are found through prep.json (the link prep keeps to the input file).
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.recon.step import run_reconstruct

run_reconstruct(
    snakemake.input.checkpoint,
    Path(snakemake.input.prep_info).parent,
    Path(snakemake.output.summary).parent,
    mesh=snakemake.input.mesh,
    **snakemake.params.reconstruct,
)
