"""Rule localres: half-map FSC per region (moving domain, core, segments) and local-resolution
maps of the flexible and rigid reconstructions.

Calls flexcore.stages.localres.run_localres with config localres.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.main import call_step
from flexcore.stages.localres.step import run_localres

call_step(
    run_localres,
    snakemake.input.checkpoint,
    Path(snakemake.input.recon).parent,
    Path(snakemake.output.summary).parent,
    mesh=snakemake.input.mesh,
    **snakemake.params.localres,
)
