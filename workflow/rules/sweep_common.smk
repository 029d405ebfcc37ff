# Helpers of the parameter sweep: the grid of points (a Paramspace), each point's mesh and
# training parameters, and the files the sweep summary compares.
import itertools

import pandas as pd
from snakemake.utils import Paramspace


def sweep_stage_of(name):
    """'train' or 'mesh': the config section a swept parameter belongs to."""
    if name == "gpus":
        fail_config(
            "sweep.parameters.gpus",
            "is how many GPUs a job uses, not a parameter a sweep can vary",
        )
    stages = [s for s in ("train", "mesh") if name in config[s]]
    if not stages:
        fail_config(
            f"sweep.parameters.{name}",
            "not a key of train or mesh (those are the parameters a sweep can vary)",
        )
    return stages[0]


def sweep_grid(sweep):
    """All combinations of the swept values, one row per point (columns = parameters)."""
    names = sorted(sweep["parameters"])
    for name in names:
        sweep_stage_of(name)
    rows = itertools.product(*(sweep["parameters"][n] for n in names))
    return pd.DataFrame(list(rows), columns=names)


def sweep_paramspace():
    """The sweep as a Paramspace (folders like rigidity_lambda~2.0), or None without one."""
    sweep = config["sweep"]
    if not sweep["name"]:
        return None
    if not sweep["parameters"]:
        fail_config(
            "sweep.parameters", "is empty; give at least one parameter and its values"
        )
    return Paramspace(sweep_grid(sweep), filename_params="*")


SWEEP = sweep_paramspace()


wildcard_constraints:
    sweep=re.escape(config["sweep"]["name"]) if SWEEP else "(?!)",


def sweep_point_pattern(constrained):
    """results/{dataset}/sweep/{sweep}/<param>~{<param>}_...: one point's folder as a
    pattern; constrained=True keeps each value to one path component without '_'."""
    pattern = SWEEP.wildcard_pattern
    if constrained:
        pattern = re.sub(r"\{(\w+)\}", r"{\1,[^/_]+}", pattern)
    return f"results/{{dataset}}/sweep/{{sweep}}/{pattern}"


if SWEEP is not None:
    SWEEP_POINT = sweep_point_pattern(constrained=False)
    SWEEP_POINT_OUTPUT = sweep_point_pattern(constrained=True)


def outputs_moved_to(rule_output, folder):
    """A rule's named outputs moved from results/{dataset}/<stage>/ into folder, as plain
    paths (so per-point files stay out of the report)."""

    def move(path):
        return f"{folder}/{str(path).split('/', 3)[3]}"

    return {
        name: [move(f) for f in value] if isinstance(value, list) else move(value)
        for name, value in rule_output.items()
    }


def sweep_point(wildcards):
    """This point's parameter values {name: value}, as typed in the sweep file (looked up
    by folder name: Paramspace.instance would read the folder "multires~False" as True).
    """
    folder = SWEEP.wildcard_pattern.format(**wildcards)
    for row in sweep_points_table():
        if row["folder"] == folder:
            return {k: v for k, v in row.items() if k != "folder"}
    raise WorkflowError(f"{folder} is not a point of sweep {config['sweep']['name']}")


def sweep_varies_mesh():
    """True when a mesh parameter is swept (then every point builds its own mesh)."""
    return SWEEP is not None and any(
        sweep_stage_of(n) == "mesh" for n in SWEEP.dataframe.columns
    )


def sweep_training_parameters(wildcards):
    """The TrainConfig dict of one point: config train with the point's train values."""
    point = sweep_point(wildcards)
    return {
        **training_parameters(),
        **{k: v for k, v in point.items() if k in training_parameters()},
    }


def sweep_mesh_parameters(wildcards):
    """run_mesh keyword arguments of one point: config mesh with the point's mesh values."""
    point = sweep_point(wildcards)
    return {
        **mesh_parameters(),
        **{k: v for k, v in point.items() if k in config["mesh"]},
    }


def sweep_mesh(wildcards):
    """The mesh a point trains on: its own if mesh parameters are swept, else the dataset's."""
    if sweep_varies_mesh():
        return f"{SWEEP_POINT.format(**wildcards)}/mesh/mesh.npz"
    return f"results/{wildcards.dataset}/mesh/mesh.npz"


def sweep_point_files(dataset):
    """Per point, the files the summary reads: training, reconstruction, evaluation."""
    if SWEEP is None:
        return {}
    root = f"results/{dataset}/sweep/{config['sweep']['name']}"
    files = {
        "train": [f"{root}/{p}/train/train.json" for p in SWEEP.instance_patterns],
        "latents": [f"{root}/{p}/train/latents.npy" for p in SWEEP.instance_patterns],
    }
    if config["sweep"]["reconstruct"]:
        files["recon"] = [
            f"{root}/{p}/reconstruct/recon.json" for p in SWEEP.instance_patterns
        ]
    if evaluation_wanted():
        files["evaluation"] = [
            f"{root}/{p}/evaluation/evaluation.json" for p in SWEEP.instance_patterns
        ]
    return files


def sweep_summary_inputs(wildcards):
    """Input of the sweep summary (named lists, one entry per point)."""
    return sweep_point_files(wildcards.dataset)


def sweep_points_table():
    """The points as rows {folder, parameter: value} (for the summary and provenance)."""
    rows = []
    for pattern, (_, row) in zip(SWEEP.instance_patterns, SWEEP.dataframe.iterrows()):
        values = {k: v.item() if hasattr(v, "item") else v for k, v in row.items()}
        rows.append({"folder": pattern, **values})
    return rows


def sweep_point_stages():
    """(rule, folder) of the stages each sweep point runs, as the config asks for them."""
    stages = [("mesh", "mesh")] if sweep_varies_mesh() else []
    stages.append(("train", "train"))
    if config["sweep"]["reconstruct"]:
        stages.append(("reconstruct", "reconstruct"))
    if evaluation_wanted():
        stages.append(("evaluate", "evaluation"))
    return stages


def sweep_outputs(dataset):
    """Final files of the sweep: every output of every point, the summary table and plot,
    and the sweep's provenance (none without a sweep)."""
    if SWEEP is None:
        return []
    root = f"results/{dataset}/sweep/{config['sweep']['name']}"
    files = [f"{root}/summary.tsv", f"{root}/summary.png", f"{root}/provenance.yaml"]
    for point in SWEEP.instance_patterns:
        for rule_name, folder in sweep_point_stages():
            moved = outputs_moved_to(
                getattr(rules, rule_name).output, f"{root}/{point}/{folder}"
            )
            for value in moved.values():
                files += value if isinstance(value, list) else [value]
    return files
