"""Rule localres: half-map FSC per region (moving domain, core, segments) and local-resolution
maps of the flexible and rigid reconstructions.

Calls flexcore.stages.localres.run_local_resolution with config localres.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.stages.localres import run_local_resolution

run_local_resolution(
    snakemake.input.checkpoint,
    Path(snakemake.input.recon).parent,
    Path(snakemake.output.summary).parent,
    mesh=snakemake.input.mesh,
    **snakemake.params.localres,
)
