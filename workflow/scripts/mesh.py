"""Rule mesh: tetrahedral mesh, solvent mask and rigidity weights for the consensus map.

Calls flexcore.stages.mesh.step.run_mesh with config mesh; the optional user files (mask,
segmentation, imported or custom mesh) arrive as named inputs when they are set.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.main import call_step
from flexcore.stages.mesh.step import run_mesh

call_step(
    run_mesh,
    snakemake.input.consensus_map,
    Path(snakemake.output.mesh).parent,
    mask=snakemake.input.get("mask"),
    segmentation=snakemake.input.get("segmentation"),
    cryosparc_mesh=snakemake.input.get("cryosparc_mesh"),
    custom_mesh=snakemake.input.get("custom_mesh"),
    **snakemake.params.mesh,
)
