# Resources of each job sized from the data: memory (mem_mb), wall time (runtime) and GPU
# memory (gpu_mem_mb, for the fit check and for sites that request GPUs by memory), from
# the particle count, the (crop) box and the training box. The model and its measured
# constants are in flexcore/core/resources.py; the safety factors and the node they are
# checked against are config section resources. Partition, account and GPU requests stay
# in the profile (profiles/slurm).
import json
import sys

from flexcore.core.errors import FlexcoreError
from flexcore.core.io.mrc import read_map_header
from flexcore.core.io.readers import count_particles
from flexcore.core.resources import (
    DatasetSize,
    ResourceFactors,
    fit_problems,
    gpu_memory_mb,
    memory_mb,
    runtime_min,
)

RESOURCE_FACTORS = ResourceFactors.from_config(config["resources"])
# Assumed when the user's files cannot be measured (e.g. a dry run on placeholders).
SIZE_IF_UNKNOWN = DatasetSize(n_particles=100_000, box=256, train_box=128)


def planned_size():
    """The prepared data's size as prep will make it: the simulation's or the particle
    file's rows (capped by prep.n_particles), the crop box (or the map's box) and the
    training box."""
    prep = config["prep"]
    if is_simulated():
        n, box = config["simulate"]["n_particles"], config["simulate"]["box"]
    else:
        try:
            n = count_particles(config["input"]["particles"])
            box = read_map_header(config["input"]["consensus_map"])[0]
        except (FlexcoreError, OSError, ValueError):
            return SIZE_IF_UNKNOWN
    if prep["n_particles"]:
        n = min(n, prep["n_particles"])
    return DatasetSize(int(n), int(prep["crop_box"] or box), int(prep["train_box"]))


PLANNED_SIZE = planned_size()


def job_size(input):
    """The size a job works on: prep.json's when the job reads one that exists, else the
    planned size."""
    path = Path(input.get("prep_info", "") or "")
    if path.is_file():
        info = json.loads(path.read_text())
        return DatasetSize(info["n_particles"], info["crop_box"], info["train_box"])
    return PLANNED_SIZE


def stage_options(stage):
    """Keyword arguments of the resource model that the configuration sets."""
    if stage == "train":
        return {"ranks": config["train"]["gpus"], "n_cells": config["mesh"]["n_cells"]}
    if stage in ("reconstruct", "reconstruct_half"):
        return {
            "ranks": config["reconstruct"]["gpus"],
            "in_ram": config["reconstruct"]["in_ram"],
        }
    return {}


def job_memory(stage):
    """mem_mb of a stage's jobs; each retry after a failure asks for 50 % more."""

    def mem_mb(wildcards, input, attempt):
        base = memory_mb(
            stage, job_size(input), RESOURCE_FACTORS, **stage_options(stage)
        )
        return int(base * (1 + 0.5 * (attempt - 1)))

    return mem_mb


def job_runtime(stage):
    """runtime (minutes) of a stage's jobs."""
    extra = {}
    if stage == "train":
        extra = {"epochs": config["train"]["epochs"], "ranks": config["train"]["gpus"]}
    elif stage in ("reconstruct", "reconstruct_half"):
        extra = {
            "iterations": config["reconstruct"]["iterations"],
            "ranks": config["reconstruct"]["gpus"],
        }

    def runtime(wildcards, input):
        return runtime_min(stage, job_size(input), RESOURCE_FACTORS, **extra)

    return runtime


def job_gpu_memory(stage):
    """gpu_mem_mb (MB per GPU) of a stage's jobs."""

    def gpu_mem_mb(wildcards, input):
        options = {}
        if stage == "train":
            options = {
                "ranks": config["train"]["gpus"],
                "batch_size": config["train"]["batch_size"],
            }
        return gpu_memory_mb(stage, job_size(input), RESOURCE_FACTORS, **options)

    return gpu_mem_mb


def warn_what_will_not_fit():
    """Before any job: say which stages will not fit the node in config resources."""
    problems = []
    for stage in ("prep", "train", "reconstruct", "generate", "state_maps", "localres"):
        problems += fit_problems(
            stage, PLANNED_SIZE, RESOURCE_FACTORS, **stage_options(stage)
        )
    s = PLANNED_SIZE
    for problem in problems:
        print(
            f"flexcore resources: {problem} ({s.n_particles} particles, box {s.box}, "
            f"training box {s.train_box}); raise the limit in config resources if your "
            "nodes are larger, or use fewer particles, a smaller crop_box or more GPUs",
            file=sys.stderr,
        )


warn_what_will_not_fit()
