"""Rule evaluate_reconstruction: the flexible and rigid reconstructions against the
simulation's ground truth, in the moving domain and the whole mask.

Calls flexcore.stages.evaluate_reconstruction.step.run_evaluate_reconstruction, which
writes reconstruction.tsv, reconstruction.json and moving_fsc.png into the folder of
output.summary.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.main import call_step
from flexcore.stages.evaluate_reconstruction.step import run_evaluate_reconstruction

inp = snakemake.input
call_step(
    run_evaluate_reconstruction,
    Path(inp.ground_truth).parent,
    Path(inp.prep_info).parent,
    inp.checkpoint,
    Path(inp.recon).parent,
    Path(snakemake.output.summary).parent,
    mesh=inp.mesh,
)
