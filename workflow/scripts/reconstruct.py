"""Rule reconstruct: flexible high-resolution reconstruction with gold-standard FSC.

Calls flexcore.stages.reconstruct.step.run_reconstruct with config reconstruct (the full-resolution
particles are found through prep.json), on gpu ranks with torchrun when the job has more
than one GPU (config reconstruct.gpus); with reconstruct.split_jobs the solves come from
reconstruct_half jobs and this job only combines them (run_reconstruct_combine).
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.reconstruct import command_line
from flexcore.core.utils.launch import run_on_ranks
from flexcore.stages.reconstruct.solves import run_reconstruct_combine
from flexcore.stages.reconstruct.step import run_reconstruct

files = (snakemake.input.checkpoint, Path(snakemake.input.prep_info).parent)
out = Path(snakemake.output.summary).parent
params = dict(snakemake.params.reconstruct, mesh=snakemake.input.mesh)
gpus = int(snakemake.resources.get("gpu", 1))
if "solve_records" in snakemake.input.keys():
    halves = Path(snakemake.input.solve_records[0]).parent
    run_reconstruct_combine(halves, out, bfactor=params["bfactor"])
elif gpus > 1:
    run_on_ranks(gpus, command_line(*files, out, **params), threads=snakemake.threads)
else:
    run_reconstruct(*files, out, **params)
