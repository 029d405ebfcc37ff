"""Rule evaluate: score the trained model against the simulation's ground truth.

Calls flexcore.stages.evaluate.step.run_evaluate, which writes evaluation.json and evaluation.tsv (per
ground-truth map: FSC of the generated map vs the consensus map's) into the folder of
output.summary.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.main import call_step
from flexcore.stages.evaluate.step import run_evaluate

inp = snakemake.input
call_step(
    run_evaluate,
    Path(inp.ground_truth).parent,
    Path(inp.prep_info).parent,
    inp.checkpoint,
    Path(snakemake.output.summary).parent,
    mesh=inp.mesh,
)
