"""Rule reconstruct_half: one solve of the reconstruction (reconstruct.split_jobs).

Calls flexcore.stages.reconstruct.solves.run_reconstruct_half for the solve {kind}_{half} (flex or
noflex, half set A or B); writes its half map and record beside each other. A job with
gpu > 1 (config reconstruct.gpus) runs it on that many ranks with torchrun.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.reconstruct import command_line
from flexcore.core.utils.launch import run_on_ranks
from flexcore.stages.reconstruct.solves import run_reconstruct_half

files = (snakemake.input.checkpoint, Path(snakemake.input.prep_info).parent)
out = Path(snakemake.output.record).parent
solve = f"{snakemake.wildcards.kind}_{snakemake.wildcards.half}"
params = dict(snakemake.params.reconstruct, mesh=snakemake.input.mesh, solve=solve)
gpus = int(snakemake.resources.get("gpu", 1))
if gpus > 1:
    run_on_ranks(gpus, command_line(*files, out, **params), threads=snakemake.threads)
else:
    run_reconstruct_half(*files, out, **params)
