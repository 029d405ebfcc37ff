"""The ``provenance`` step: what produced a results folder, as YAML beside the results.

The record of :func:`flexcore.core.utils.provenance.provenance` (flexcore, torch, snakemake,
Python versions, git commit, host, time) with the resolved configuration (schema defaults
filled in), the seeds of every stage and, for a sweep, its points; written atomically.
"""

from __future__ import annotations

import json

import yaml

from ...core.utils.atomic import write_text_atomic
from ...core.utils.provenance import provenance


def run_provenance(out_path, *, config: dict, seeds: dict, sweep_points: list | None = None) -> dict:
    """Write ``out_path`` (YAML) and return the record written."""
    record = provenance("workflow")
    record.pop("command")  # the job's own script path, not the snakemake command line
    record.pop("parameters")
    record["config"] = dict(config)
    record["seeds"] = dict(seeds)
    if sweep_points:
        record["sweep_points"] = list(sweep_points)
    plain = json.loads(json.dumps(record, default=str))  # e.g. torch's version string type
    write_text_atomic(out_path, yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))
    return plain
