"""Rule train: latents, flow generator and canonical map (3D Flex Train).

Calls flexcore.stages.train.step.run_train with config train (the fields of TrainConfig);
writes model.pt, latents (.npy/.star/.cs), history and plots into the folder of
output.summary. Per-epoch checkpoints (train/checkpoints/, not declared outputs, so Snakemake
keeps them when a job fails) let an interrupted job continue: on_existing="auto" resumes a
compatible checkpoint and otherwise starts afresh, saying why in the log. With more than one
GPU (config train.gpus) the step starts that many ranks itself.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.main import call_step
from flexcore.stages.train.step import run_train

call_step(
    run_train,
    Path(snakemake.input.prep_info).parent,
    snakemake.input.mesh,
    Path(snakemake.output.summary).parent,
    dict(snakemake.params.train),
    init_latents=snakemake.input.get("init_latents"),
    on_existing="auto",
    gpus=int(snakemake.resources.get("gpu", 1)),
)
