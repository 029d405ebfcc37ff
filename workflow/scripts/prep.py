"""Rule prep: particles and consensus map Fourier-cropped to the training box.

Calls flexcore.stages.prep.step.run_prep with config prep (and cryoDRGN's poses/ctf pickles
for input.source cryodrgn); writes particles.star/.mrcs, consensus.mrc and prep.json (and
source.star for cryoDRGN input) into the folder of output.info.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.main import call_step
from flexcore.stages.prep.step import run_prep

call_step(
    run_prep,
    snakemake.input.particles,
    snakemake.input.consensus_map,
    Path(snakemake.output.info).parent,
    pixel_size_A=snakemake.params.pixel_size_A,
    project_dir=snakemake.params.project_dir,
    poses=snakemake.input.get("poses"),
    ctf=snakemake.input.get("ctf"),
    **snakemake.params.prep,
)
