"""Rule reconstruct_combine: the reconstruct_half solves combined into the reconstruction's
outputs (reconstruct.split_jobs).

Calls flexcore.stages.reconstruct.step.run_reconstruct_combine: half and full maps, the
sharpened map, FSC table and plot, L-BFGS log and recon.json, as the reconstruct rule writes.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.main import call_step
from flexcore.stages.reconstruct.step import run_reconstruct_combine

call_step(
    run_reconstruct_combine,
    Path(snakemake.input.solve_records[0]).parent,
    Path(snakemake.output.summary).parent,
    bfactor=snakemake.params.bfactor,
)
