"""Rule evaluate_reconstruction: the flexible and rigid reconstructions against the
simulation's ground truth, in the moving domain and the whole mask.

Calls flexcore.evaluate_recon.evaluate_reconstruction and writes its table, record and plot.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from flexcore.evaluate_recon import evaluate_reconstruction, write_reconstruction_evaluation

inp = snakemake.input
record = evaluate_reconstruction(
    Path(inp.ground_truth).parent,
    Path(inp.prep_info).parent,
    inp.checkpoint,
    Path(inp.recon).parent,
    mesh=inp.mesh,
)
write_reconstruction_evaluation(record, Path(snakemake.output.summary).parent)
res = record["half_map_res0143_A"]
print(f"moving domain: half-map FSC 0.143 flex {res['flex_moving']:.2f} Å, rigid "
      f"{res['rigid_moving']:.2f} Å; mean FSC with the truth flex "
      f"{record['mean_fsc_moving_flex']:.3f}, rigid {record['mean_fsc_moving_rigid']:.3f}",
      file=sys.stderr)
