"""Rule provenance: what produced a results folder, as YAML beside the results.

Writes flexcore.core.utils.provenance.provenance (flexcore, torch, snakemake, Python versions,
git commit, host, time) with the resolved configuration (schema defaults filled in), the
seeds of every stage and, for a sweep, its points.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

import json
from pathlib import Path

import yaml

from flexcore.core.utils.provenance import provenance

record = provenance("workflow")
record.pop("command")  # the job's own script path, not the snakemake command line
record.pop("parameters")
record["config"] = dict(snakemake.params.config)
record["seeds"] = dict(snakemake.params.seeds)
if snakemake.params.sweep:
    record["sweep_points"] = list(snakemake.params.sweep)
plain = json.loads(json.dumps(record, default=str))  # e.g. torch's version string type
text = yaml.safe_dump(plain, sort_keys=False, allow_unicode=True)
Path(snakemake.output[0]).write_text(text)
