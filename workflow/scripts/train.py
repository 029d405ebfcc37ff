"""Rule train: latents, flow generator and canonical map (3D Flex Train).

Calls flexcore.stages.train.run_train with config train (the fields of TrainConfig); writes
model.pt, latents (.npy/.star/.cs), history and plots into the folder of output.summary.
Per-epoch checkpoints (train/checkpoints/, not declared outputs, so Snakemake keeps them
when a job fails) let an interrupted job continue: on_existing="auto" resumes a
compatible checkpoint and otherwise starts afresh, saying why in the log. A job with
gpu > 1 (config train.gpus) runs `flexcore train` on that many ranks with torchrun.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.train import command_line
from flexcore.core.utils.launch import run_on_ranks
from flexcore.stages.train import run_train

args = (
    Path(snakemake.input.prep_info).parent,
    snakemake.input.mesh,
    Path(snakemake.output.summary).parent,
    dict(snakemake.params.train),
)
options = dict(init_latents=snakemake.input.get("init_latents"), on_existing="auto")
gpus = int(snakemake.resources.get("gpu", 1))
if gpus > 1:
    run_on_ranks(gpus, command_line(*args, **options), threads=snakemake.threads)
else:
    run_train(*args, **options)
