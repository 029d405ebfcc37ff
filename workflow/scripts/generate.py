"""Rule generate: volume series along each latent dimension of the trained model.

Calls flexcore.stages.generate.step.run_generate with config generate; a custom latents file or a
map to deform (user map or the flexible reconstruction) arrive as named inputs when set.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.main import call_step
from flexcore.stages.generate.step import run_generate

call_step(
    run_generate,
    snakemake.input.checkpoint,
    Path(snakemake.output.summary).parent,
    mesh=snakemake.input.mesh,
    latents_file=snakemake.input.get("latents_file"),
    highres_map=snakemake.input.get("highres_map"),
    **snakemake.params.generate,
)
