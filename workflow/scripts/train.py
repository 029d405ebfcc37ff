"""Rule train: latents, flow generator and canonical map (3D Flex Train).

Calls flexcore.train.run_train with config train (the fields of TrainConfig); writes
model.pt, latents (.npy/.star/.cs), history and plots into the folder of output.summary.
Per-epoch checkpoints (train/checkpoints/, not declared outputs, so Snakemake keeps them
when a job fails) let an interrupted job continue: on_existing="auto" resumes a
compatible checkpoint and otherwise starts afresh, saying why in the log.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.train import run_train

run_train(
    Path(snakemake.input.prep_info).parent,
    snakemake.input.mesh,
    Path(snakemake.output.summary).parent,
    dict(snakemake.params.train),
    init_latents=snakemake.input.get("init_latents"),
    on_existing="auto",
)
