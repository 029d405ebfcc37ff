"""Rule evaluate: score the trained model against the simulation's ground truth.

Calls flexcore.evaluate.evaluate_training; writes its record as JSON and, per
ground-truth map, a table row (FSC of the generated map vs the consensus map's).
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

import json
from pathlib import Path

import pandas as pd

from flexcore.evaluate import evaluate_training

inp, out = snakemake.input, snakemake.output
record = evaluate_training(
    Path(inp.ground_truth).parent, Path(inp.prep_info).parent, inp.checkpoint, mesh=inp.mesh
)
Path(out.summary).write_text(json.dumps(record, indent=2) + "\n")
table = pd.DataFrame(record["maps"])
for name in ("coordinate", "median_latent"):
    if name in table:
        table[name] = [" ".join(f"{v:+.3f}" for v in row) for row in table[name]]
table["spearman_best"] = " ".join(f"{r:.3f}" for r in record["spearman_best"])
table.to_csv(out.table, sep="\t", index=False, float_format="%.4g")
print(f"Spearman rho (best per motion): {record['spearman_best']}", file=sys.stderr)
