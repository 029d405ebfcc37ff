"""Rule simulate: a simulated flexible dataset with ground truth, in real formats.

Calls flexcore.stages.simulate.run_simulate with config simulate; writes into the folder of
output.particles (particles.star/.mrcs, consensus.mrc, masks, gt/, ground_truth.*).
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.main import call_step
from flexcore.stages.simulate.step import run_simulate

call_step(run_simulate, Path(snakemake.output.particles).parent, **snakemake.params.simulation)
