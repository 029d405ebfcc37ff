"""Rule reconstruct_half: one solve of the reconstruction (reconstruct.split_jobs).

Calls flexcore.stages.reconstruct.step.run_reconstruct with solve={kind}_{half} (flex or
noflex, half set A or B); writes its half map and record beside each other. With more than
one GPU (config reconstruct.gpus) the step starts that many ranks itself.
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
    Path(snakemake.output.record).parent,
    mesh=snakemake.input.mesh,
    solve=f"{snakemake.wildcards.kind}_{snakemake.wildcards.half}",
    gpus=int(snakemake.resources.get("gpu", 1)),
    **snakemake.params.reconstruct,
)
