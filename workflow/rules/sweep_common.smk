# Helpers of the parameter sweep: its points (a grid of all combinations, or a zip of
# paired values), each point's folder name and parameters per stage, which stages run per
# point, and the files the sweep summary compares.
import copy
import itertools

# Sections whose keys a sweep can vary, in pipeline order, and the keys it cannot: they
# decide which jobs exist or how many GPUs a job takes, not the science.
SWEEP_SECTIONS = ("prep", "mesh", "train", "reconstruct", "select")
SWEEP_FIXED_KEYS = {"enabled", "gpus", "split_jobs"}
# Stages that run again at a point when a stage they depend on was swept.
SWEEP_DOWNSTREAM = {
    "prep": {"prep", "mesh", "train", "reconstruct", "select", "evaluate"},
    "mesh": {"mesh", "train", "reconstruct", "evaluate"},
    "train": {"train", "reconstruct", "select", "evaluate"},
    "reconstruct": {"reconstruct"},
    "select": {"select"},
}


def sweep_key(name):
    """(section, key) of a swept parameter: "section.key", or a bare key of exactly one of
    train and mesh (the short form of sweep files: rigidity_lambda, n_cells)."""
    section, _, key = name.rpartition(".")
    if section:
        if section not in SWEEP_SECTIONS or key not in config[section]:
            fail_config(
                f"sweep.parameters.{name}",
                f"not a key of {', '.join(SWEEP_SECTIONS)} (write section.key)",
            )
    else:
        owners = [s for s in ("train", "mesh") if name in config[s]]
        if len(owners) != 1:
            fail_config(
                f"sweep.parameters.{name}",
                "not a key of train or mesh; write section.key for a key of "
                f"{', '.join(SWEEP_SECTIONS)}",
            )
        section, key = owners[0], name
    if key in SWEEP_FIXED_KEYS:
        fail_config(
            f"sweep.parameters.{name}",
            "is how many GPUs a job uses or which jobs run, not a parameter a sweep can vary",
        )
    return section, key


def check_sweep_value(name, value):
    """Fail naming the key unless the config with this value still matches the schema."""
    section, key = sweep_key(name)
    trial = copy.deepcopy(config)
    trial[section][key] = value
    try:
        validate(trial, schema="../schemas/config.schema.yaml")
    except WorkflowError as exc:
        fail_config(
            f"sweep.parameters.{name}",
            f"value {value!r} does not fit {section}.{key}: {str(exc).splitlines()[0]}",
        )


def safe_folder_value(value):
    """A value as it may appear in a folder name: numbers as written; other values with
    letters, digits, . + and - only (no /, .., spaces)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    text = re.sub(r"[^A-Za-z0-9.+-]+", "-", str(value))
    text = re.sub(r"\.{2,}", "-", text)
    return re.sub(r"-{2,}", "-", text).strip("-.") or "empty"


def sweep_points_table():
    """The points as rows {"folder": name, parameter: value}: every combination (grid) or
    the i-th value of every parameter (zip). Values are checked against the schema and the
    folder names must differ."""
    sweep = config["sweep"]
    names = sorted(sweep["parameters"])
    for name in names:
        for value in sweep["parameters"][name]:
            check_sweep_value(name, value)
    lists = [sweep["parameters"][n] for n in names]
    if sweep["mode"] == "zip":
        lengths = {n: len(v) for n, v in zip(names, lists)}
        if len(set(lengths.values())) != 1:
            fail_config(
                "sweep.parameters",
                f"mode zip pairs the i-th values, so every list needs the same length ({lengths})",
            )
        combos = list(zip(*lists))
    else:
        combos = list(itertools.product(*lists))
    rows, seen = [], {}
    for combo in combos:
        folder = "_".join(f"{n}~{safe_folder_value(v)}" for n, v in zip(names, combo))
        if folder in seen:
            fail_config(
                "sweep.parameters",
                f"points {seen[folder]} and {combo} share the folder name {folder}",
            )
        seen[folder] = combo
        rows.append({"folder": folder, **dict(zip(names, combo))})
    return rows


def sweep_points():
    """The sweep's points (see sweep_points_table), or None without a sweep."""
    sweep = config["sweep"]
    if not sweep["name"]:
        return None
    if not sweep["parameters"]:
        fail_config(
            "sweep.parameters", "is empty; give at least one parameter and its values"
        )
    return sweep_points_table()


SWEEP = sweep_points()


wildcard_constraints:
    sweep=re.escape(config["sweep"]["name"]) if SWEEP else "(?!)",
    point="|".join(re.escape(p["folder"]) for p in SWEEP) if SWEEP else "(?!)",


SWEEP_POINT = "results/{dataset}/sweep/{sweep}/{point}"


def swept_sections():
    """The sections the sweep varies."""
    return {sweep_key(n)[0] for n in config["sweep"]["parameters"]} if SWEEP else set()


def sweep_point_stage_names():
    """Stages that run at every point: those downstream of a swept section (a sweep of
    reconstruct or select keys alone reuses the dataset's training); the reconstruction
    also when sweep.reconstruct asks for it, the evaluation for simulated data."""
    swept = swept_sections()
    stages = set()
    for section in swept:
        stages |= SWEEP_DOWNSTREAM[section]
    if "select" not in swept:
        stages.discard("select")
    if config["sweep"]["reconstruct"] and "train" in stages:
        stages.add("reconstruct")
    elif "reconstruct" not in swept:
        stages.discard("reconstruct")
    if not evaluation_wanted():
        stages.discard("evaluate")
    return stages


def sweep_stage_root(stage, wildcards):
    """Folder holding a stage's outputs for one point: the point's own folder when the
    stage runs per point, else the dataset's."""
    if stage in sweep_point_stage_names():
        return SWEEP_POINT.format(**wildcards)
    return f"results/{wildcards.dataset}"


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
    """This point's parameter values {name: value}, as typed in the sweep file."""
    for row in SWEEP:
        if row["folder"] == wildcards.point:
            return {k: v for k, v in row.items() if k != "folder"}
    raise WorkflowError(
        f"{wildcards.point} is not a point of sweep {config['sweep']['name']}"
    )


def point_values(wildcards, section):
    """{key: value} of the point's swept keys of one section."""
    values = {}
    for name, value in sweep_point(wildcards).items():
        sec, key = sweep_key(name)
        if sec == section:
            values[key] = value
    return values


def sweep_prep_parameters(wildcards):
    return {**config["prep"], **point_values(wildcards, "prep")}


def sweep_mesh_parameters(wildcards):
    return {**mesh_parameters(), **point_values(wildcards, "mesh")}


def sweep_training_parameters(wildcards):
    return {**training_parameters(), **point_values(wildcards, "train")}


def sweep_reconstruct_parameters(wildcards):
    return {**reconstruct_parameters(), **point_values(wildcards, "reconstruct")}


def sweep_select_parameters(wildcards):
    return {**select_parameters(), **point_values(wildcards, "select")}


def sweep_prep_files(wildcards):
    """The prepared particles a point uses (its own when prep is swept)."""
    root = sweep_stage_root("prep", wildcards)
    return {
        "prep_info": f"{root}/prep/prep.json",
        "particles": f"{root}/prep/particles.star",
    }


def sweep_mesh_input(wildcards):
    return f"{sweep_stage_root('prep', wildcards)}/prep/consensus.mrc"


def sweep_training_input(wildcards):
    root = sweep_stage_root("prep", wildcards)
    return {
        **sweep_prep_files(wildcards),
        "stack": f"{root}/prep/particles.mrcs",
        "consensus": f"{root}/prep/consensus.mrc",
        "mesh": sweep_mesh(wildcards),
    }


def sweep_mesh(wildcards):
    return f"{sweep_stage_root('mesh', wildcards)}/mesh/mesh.npz"


def sweep_model(wildcards):
    return f"{sweep_stage_root('train', wildcards)}/train/model.pt"


def sweep_latents(wildcards):
    return f"{sweep_stage_root('train', wildcards)}/train/latents.npy"


def sweep_point_files(dataset):
    """Per point, the files the summary reads: training, reconstruction, evaluation."""
    if SWEEP is None:
        return {}
    stages = sweep_point_stage_names()

    def per_point(stage, name):
        return [
            f"{sweep_stage_root(stage, Wildcards(dataset, p['folder']))}/{name}"
            for p in SWEEP
        ]

    files = {
        "train": per_point("train", "train/train.json"),
        "latents": per_point("train", "train/latents.npy"),
    }
    if "reconstruct" in stages:
        files["recon"] = per_point("reconstruct", "reconstruct/recon.json")
    if "evaluate" in stages:
        files["evaluation"] = per_point("evaluate", "evaluation/evaluation.json")
    return files


class Wildcards:
    """The wildcards of one point's jobs, for the helpers above outside a job."""

    def __init__(self, dataset, point):
        self.dataset, self.sweep, self.point = dataset, config["sweep"]["name"], point

    def keys(self):
        return ["dataset", "sweep", "point"]

    def __getitem__(self, key):
        return getattr(self, key)


def sweep_summary_inputs(wildcards):
    """Input of the sweep summary (named lists, one entry per point)."""
    return sweep_point_files(wildcards.dataset)


SWEEP_STAGE_FOLDERS = {
    "prep": "prep",
    "mesh": "mesh",
    "train": "train",
    "reconstruct": "reconstruct",
    "evaluate": "evaluation",
    "select": "select",
}


def sweep_point_stages():
    """(rule, folder) of the stages each sweep point runs, in pipeline order."""
    stages = sweep_point_stage_names()
    return [(s, f) for s, f in SWEEP_STAGE_FOLDERS.items() if s in stages]


def sweep_rule_outputs(rule_name, folder):
    """The outputs of one of a point's stages (select: its plot and record; the subset
    files, named by the point's select values, are written beside them)."""
    moved = outputs_moved_to(getattr(rules, rule_name).output, folder)
    if rule_name == "select":
        moved.pop("subsets")
    return moved


def sweep_outputs(dataset):
    """Final files of the sweep: every output of every point, the summary table and plot,
    and the sweep's provenance (none without a sweep)."""
    if SWEEP is None:
        return []
    root = f"results/{dataset}/sweep/{config['sweep']['name']}"
    files = [f"{root}/summary.tsv", f"{root}/summary.png", f"{root}/provenance.yaml"]
    for point in SWEEP:
        for rule_name, folder in sweep_point_stages():
            moved = sweep_rule_outputs(rule_name, f"{root}/{point['folder']}/{folder}")
            for value in moved.values():
                files += value if isinstance(value, list) else [value]
    return files
