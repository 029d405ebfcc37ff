"""Rule state_maps: the flexible reconstruction deformed to chosen states, with half-map FSC.

Calls flexcore.stages.state_maps.step.run_state_maps with config states; the states come from select.json
(states.source selection) or generate.json (series).
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.cli.main import call_step
from flexcore.stages.state_maps.step import run_state_maps

call_step(
    run_state_maps,
    snakemake.input.checkpoint,
    Path(snakemake.input.recon).parent,
    Path(snakemake.output.summary).parent,
    states=snakemake.input.states,
    mesh=snakemake.input.mesh,
    **snakemake.params.states,
)
