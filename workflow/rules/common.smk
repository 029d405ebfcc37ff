# Helpers shared by the rules: configuration checks, input paths of each stage and the
# final targets. Sweep helpers live in sweep_common.smk.
import json
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

# Config keys that name user files: (section, key). Each given one must exist.
USER_FILE_KEYS = [
    ("input", "particles"),
    ("input", "consensus_map"),
    ("input", "poses"),
    ("input", "ctf"),
    ("input", "mask"),
    ("input", "segmentation"),
    ("input", "cryosparc_mesh"),
    ("input", "custom_mesh"),
    ("input", "init_latents"),
    ("generate", "latents_file"),
    ("generate", "highres_map"),
    ("select", "selection_file"),
]


def fail_config(key, problem):
    """Stop before any job runs with a message that names the config key."""
    raise WorkflowError(f"config key {key}: {problem} (see config/README.md)")


def folder_written_by_the_workflow(cfg, section):
    """The folder the workflow writes whose files a user file of section must not be:
    everything under results/<dataset>/ for the inputs; generate's own folder for
    generate's files (which may well be results of this run, e.g. the latents)."""
    dataset = Path("results", cfg["dataset"])
    return dataset / "generate" if section == "generate" else dataset


def is_inside(path, folder):
    """True when path (resolved) lies in folder (resolved)."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def check_user_files(cfg):
    """Every user file named in the config exists and is not a file the workflow writes
    (else fail naming its key)."""
    source = cfg["input"]["source"]
    needed = {
        "files": ("particles", "consensus_map"),
        "cryodrgn": ("particles", "consensus_map", "poses", "ctf"),
    }.get(source, ())
    for key in needed:
        if not cfg["input"][key]:
            fail_config(f"input.{key}", f"required when input.source is '{source}'")
    for key in ("poses", "ctf"):
        if cfg["input"][key] and source != "cryodrgn":
            fail_config(f"input.{key}", "is for input.source: cryodrgn only")
    for section, key in USER_FILE_KEYS:
        path = cfg[section][key]
        owned = folder_written_by_the_workflow(cfg, section)
        if path and is_inside(path, owned):
            fail_config(
                f"{section}.{key}",
                f"'{path}' lies in {owned}/, which this workflow writes (a rerun would "
                "replace or delete it); copy the file elsewhere or use another dataset name",
            )
        if path and not Path(path).is_file():
            fail_config(f"{section}.{key}", f"file '{path}' does not exist")
    project = cfg["input"]["project_dir"]
    if project and not Path(project).is_dir():
        fail_config("input.project_dir", f"folder '{project}' does not exist")


def check_config_consistency(cfg):
    """Options that exclude or need each other (beyond what the schema can say)."""
    sim, prep, gen = cfg["simulate"], cfg["prep"], cfg["generate"]
    simulated_mask = cfg["input"]["source"] == "simulate" and not cfg["input"]["mask"]
    no_crop = prep["crop_box"] in (None, sim["box"])
    # the mesh resamples a mask of the same extent to the training box; a crop changes it
    if simulated_mask and sim["use_mask"] and not no_crop:
        fail_config(
            "simulate.use_mask",
            f"the simulated mask spans the {sim['box']} px box, so it needs no "
            f"prep.crop_box (got {prep['crop_box']}); or set simulate.use_mask: false",
        )
    sel = cfg["select"]
    if sel["enabled"] and sel["method"] == "file" and not sel["selection_file"]:
        fail_config(
            "select.selection_file",
            "required when select.method is 'file' (a selection.json saved from the "
            "latent explorer, results/<dataset>/train/explorer.html)",
        )
    cs_input = cfg["input"]["source"] == "files" and str(
        cfg["input"]["particles"]
    ).lower().endswith(".cs")
    if sel["enabled"] and sel["class_numbers"] and cs_input:
        fail_config(
            "select.class_numbers",
            "writes a RELION STAR file; the input particles are a cryoSPARC .cs (import "
            "each subset's .csg into cryoSPARC instead)",
        )
    if gen["from_reconstruction"] and gen["highres_map"]:
        fail_config("generate.from_reconstruction", "excludes generate.highres_map")
    if gen["from_reconstruction"] and not cfg["reconstruct"]["enabled"]:
        fail_config("generate.from_reconstruction", "needs reconstruct.enabled: true")
    states = cfg["states"]
    if (
        states["enabled"]
        and cfg["reconstruct"]["enabled"]
        and states["source"] == "selection"
        and not cfg["select"]["enabled"]
    ):
        fail_config(
            "states.source", "'selection' needs select.enabled: true (or use 'series')"
        )


def reconstruction_box(cfg):
    """The reconstruction's box when the config fixes it (crop box, or the simulated box),
    else None (the user's particles decide)."""
    if cfg["prep"]["crop_box"]:
        return cfg["prep"]["crop_box"]
    return cfg["simulate"]["box"] if cfg["input"]["source"] == "simulate" else None


def check_stage_parameters(cfg):
    """The select and localres parameters their steps would refuse beyond the schema (which
    covers states), checked now by the steps' own functions (the same messages as the CLI),
    so a bad value fails the dry run, not its job after hours of training."""
    from flexcore.core.errors import ConfigError
    from flexcore.stages.localres.parameters import check_parameters as check_localres
    from flexcore.stages.select.regions import check_parameters as check_select

    sel, loc = cfg["select"], cfg["localres"]
    counts = [cfg["prep"]["n_particles"]]
    if cfg["input"]["source"] == "simulate":
        counts.append(cfg["simulate"]["n_particles"])
    known = [n for n in counts if n]
    try:
        if sel["enabled"]:
            check_select(
                sel["method"],
                cfg["train"]["latent_dim"],
                n_clusters=sel["n_clusters"],
                center=sel["center"],
                half_widths=sel["half_widths"],
                axis=sel["axis"],
                percentile_low=sel["percentile_low"],
                percentile_high=sel["percentile_high"],
                points=sel["points"],
                radius=sel["radius"],
                n_particles=min(known) if known else None,
            )
        if loc["enabled"] and cfg["reconstruct"]["enabled"]:
            check_localres(
                loc["window_px"],
                loc["stride"],
                loc["threshold"],
                reconstruction_box(cfg),
                region_quantile=loc["region_quantile"],
                n_samples=loc["n_samples"],
            )
    except ConfigError as exc:
        raise WorkflowError(f"config key {exc} (see config/README.md)") from None


check_user_files(config)
check_config_consistency(config)
check_stage_parameters(config)


wildcard_constraints:
    dataset=re.escape(config["dataset"]),


# ---------------------------------------------------------------- inputs per stage


def is_simulated():
    """True when the particles come from the built-in simulation (ground truth known)."""
    return config["input"]["source"] == "simulate"


def source_particles(wildcards):
    """The particle file given to prep: the simulation's or the user's."""
    if is_simulated():
        return f"results/{wildcards.dataset}/simulate/particles.star"
    return config["input"]["particles"]


def is_cryodrgn():
    """True when the particles are a cryoDRGN dataset (stacks + poses.pkl + ctf.pkl)."""
    return config["input"]["source"] == "cryodrgn"


def prep_user_files(wildcards):
    """prep's inputs: particles and consensus map, and cryoDRGN's poses and CTF pickles."""
    files = {
        "particles": source_particles(wildcards),
        "consensus_map": source_consensus_map(wildcards),
    }
    if is_cryodrgn():
        files |= {"poses": config["input"]["poses"], "ctf": config["input"]["ctf"]}
    return files


def converted_source_output():
    """prep's extra output for cryoDRGN input: the full-resolution particles converted to
    STAR (source.star), which the later stages read as the source particle file."""
    if is_cryodrgn():
        return {"source": "results/{dataset}/prep/source.star"}
    return {}


def source_consensus_map(wildcards):
    """The consensus map given to prep: the simulation's or the user's."""
    if is_simulated():
        return f"results/{wildcards.dataset}/simulate/consensus.mrc"
    return config["input"]["consensus_map"]


def simulation_parameters():
    """Keyword arguments of flexcore.stages.simulate.run_simulate from config simulate."""
    return {k: v for k, v in config["simulate"].items() if k != "use_mask"}


def mesh_user_files(wildcards):
    """Optional mesh inputs that are set: mask, segmentation, imported or custom mesh."""
    files = {
        key: config["input"][key]
        for key in ("mask", "segmentation", "cryosparc_mesh", "custom_mesh")
        if config["input"][key]
    }
    if is_simulated() and config["simulate"]["use_mask"] and "mask" not in files:
        files["mask"] = f"results/{wildcards.dataset}/simulate/mask.mrc"
    return files


def mesh_parameters():
    """Keyword arguments of flexcore.stages.mesh.step.run_mesh besides the files."""
    conn, rigid = config["input"]["connections"], config["input"]["rigid_segments"]
    return {
        **config["mesh"],
        "connections": conn or None,
        "rigid_segments": rigid or None,
    }


def training_parameters():
    """The TrainConfig dict for flexcore.stages.train.run_train (config train without gpus)."""
    return {k: v for k, v in config["train"].items() if k != "gpus"}


def job_gpus(section):
    """GPUs a job of section (train, reconstruct) asks for: its data-parallel ranks."""
    return config[section]["gpus"]


def training_user_files(wildcards):
    """Optional training input: starting latents."""
    path = config["input"]["init_latents"]
    return {"init_latents": path} if path else {}


def explore_parameters():
    """Keyword arguments of flexcore.stages.explore.run_explore besides the files."""
    return {k: v for k, v in config["explore"].items() if k != "enabled"}


def series_names():
    """Names of the volume series generate writes: z1..zK, or 'custom' with a latents file."""
    if config["generate"]["latents_file"]:
        return ["custom"]
    return [f"z{k + 1}" for k in range(config["train"]["latent_dim"])]


def series_files(folder, extension):
    """One path per generated series in folder, e.g. <folder>/series_z1.gif (or the
    frame folder <folder>/series_z1 with extension "")."""
    return [f"{folder}/series_{name}{extension}" for name in series_names()]


def generate_user_files(wildcards):
    """Optional generate inputs: custom latent points and the map to deform."""
    gen = config["generate"]
    files = {"latents_file": gen["latents_file"]} if gen["latents_file"] else {}
    if gen["highres_map"]:
        files["highres_map"] = gen["highres_map"]
    elif gen["from_reconstruction"]:
        files["highres_map"] = f"results/{wildcards.dataset}/reconstruct/flex_map.mrc"
    return files


def generate_parameters():
    """Keyword arguments of flexcore.stages.generate.step.run_generate besides the files."""
    keep = (
        "n_frames",
        "radius",
        "percentile",
        "supersample",
        "strain_threshold",
        "device",
    )
    return {k: config["generate"][k] for k in keep}


def reconstruct_parameters():
    """Keyword arguments of flexcore.stages.reconstruct.step.run_reconstruct besides the files."""
    workflow_keys = ("enabled", "gpus", "split_jobs")
    params = {k: v for k, v in config["reconstruct"].items() if k not in workflow_keys}
    params["scratch_dir"] = params["scratch_dir"] or None
    return params


def particle_format():
    """Extension of the selected subsets: that of the source particle file prep records
    (a .cs stays .cs; STAR, simulated and cryoDRGN input give STAR)."""
    if config["input"]["source"] == "files" and config["input"][
        "particles"
    ].lower().endswith(".cs"):
        return "cs"
    return "star"


def drawn_subset_names(path):
    """The subset names of a selection.json saved from the latent explorer (select.method
    file); the select step checks the rest of the file."""
    try:
        subsets = json.loads(Path(path).read_text())["subsets"]
        return [s["name"] for s in subsets]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        fail_config(
            "select.selection_file",
            f"'{path}' is not a selection saved by the latent explorer ({exc})",
        )


def selection_files(folder):
    """The subset files select writes into folder (names from config select)."""
    sel = config["select"]
    if sel["method"] == "file":
        names = drawn_subset_names(sel["selection_file"])
    elif sel["method"] == "kmeans":
        names = [f"cluster{i + 1}" for i in range(sel["n_clusters"])]
    elif sel["method"] == "points":
        names = [f"point{i + 1}" for i in range(len(sel["points"] or []))]
    else:
        names = ["region"]
    files = [f"{folder}/{name}.{particle_format()}" for name in names]
    if sel["class_numbers"] and particle_format() == "star":
        files.append(f"{folder}/subsets.star")
    return files


def select_parameters():
    """Keyword arguments of flexcore.stages.select.run_select besides the files."""
    return {
        k: v
        for k, v in config["select"].items()
        if k not in ("enabled", "selection_file")
    }


def select_user_files(wildcards):
    """The explorer's selection.json when select.method is file."""
    sel = config["select"]
    return {"selection_file": sel["selection_file"]} if sel["method"] == "file" else {}


def state_map_states(wildcards):
    """The file naming the states: select.json (subset states) or generate.json (series)."""
    if config["states"]["source"] == "selection":
        return f"results/{wildcards.dataset}/select/select.json"
    return f"results/{wildcards.dataset}/generate/generate.json"


def state_map_parameters():
    """Keyword arguments of flexcore.stages.state_maps.step.run_state_maps besides the files."""
    return {k: v for k, v in config["states"].items() if k not in ("enabled", "source")}


def localres_parameters():
    """Keyword arguments of flexcore.stages.localres.run_localres besides the files."""
    return {k: v for k, v in config["localres"].items() if k != "enabled"}


def reconstruction_kinds():
    """flex, and noflex when the rigid baseline is reconstructed."""
    return ["flex", "noflex"] if config["reconstruct"]["rigid_baseline"] else ["flex"]


def reconstruct_half_parameters():
    """Keyword arguments of run_reconstruct for one solve (reconstruct_half jobs)."""
    params = reconstruct_parameters()
    return {k: v for k, v in params.items() if k not in ("rigid_baseline", "bfactor")}


def solve_files(wildcards):
    """The reconstruct_combine job's inputs (reconstruct.split_jobs): the half map and
    record of every solve (flex, and noflex with the rigid baseline; halves A and B), each
    made by a reconstruct_half job."""
    kinds = reconstruction_kinds()
    folder = f"results/{wildcards.dataset}/reconstruct/halves"
    solves = [(kind, half) for half in ("A", "B") for kind in kinds]
    return {
        "solve_maps": [f"{folder}/{k}_map_half_{h}.mrc" for k, h in solves],
        "solve_records": [f"{folder}/{k}_half_{h}.json" for k, h in solves],
    }


def evaluation_wanted():
    """Score against the ground truth: only for simulated data, when enabled."""
    return is_simulated() and config["evaluate"]["enabled"]


def ground_truth_files(wildcards):
    """The simulation's ground truth that the evaluation compares a model with."""
    sim = f"results/{wildcards.dataset}/simulate"
    return {
        "ground_truth": f"{sim}/ground_truth.json",
        "gt_maps": f"{sim}/gt",
        "simulated_particles": f"{sim}/particles.star",
        "simulated_mask": f"{sim}/mask.mrc",
        "simulated_moving_mask": f"{sim}/moving_mask.mrc",
        "simulated_consensus": f"{sim}/consensus.mrc",
    }


def seeds():
    """Every seed the run uses, by stage (written into provenance.yaml)."""
    sim = {"simulate": config["simulate"]["seed"]} if is_simulated() else {}
    return {
        **sim,
        "prep": config["prep"]["seed"],
        "train": config["train"]["seed"],
        "reconstruct": config["reconstruct"]["seed"],
    }


def report_pages():
    """The HTML pages that show in the report what it cannot show inline (motion GIFs,
    tables, provenance): {name: (source under results/{dataset}/, title, caption, category)}.
    """
    pages = {
        f"motion_{name}": (
            f"generate/series_{name}.gif",
            f"motion along {name}",
            "series_movie.rst",
            "3. Motion",
        )
        for name in series_names()
    }
    recon = config["reconstruct"]
    if recon["enabled"]:
        pages["fsc"] = (
            "reconstruct/fsc.tsv",
            "FSC of the reconstruction",
            "fsc.rst",
            "4. Reconstruction",
        )
        if config["localres"]["enabled"]:
            pages["regions"] = (
                "localres/regions.tsv",
                "resolution per region",
                "regions_table.rst",
                "4. Reconstruction",
            )
        if config["states"]["enabled"]:
            pages["states"] = (
                "states/states.tsv",
                "per-state maps",
                "states_table.rst",
                "6. Selection and states",
            )
    if evaluation_wanted():
        pages["evaluation"] = (
            "evaluation/evaluation.tsv",
            "model against the ground truth",
            "evaluation.rst",
            "5. Ground truth",
        )
        if recon["enabled"] and recon["rigid_baseline"]:
            pages["evaluation_reconstruction"] = (
                "evaluation/reconstruction.tsv",
                "reconstruction against the ground truth",
                "evaluation_reconstruction.rst",
                "5. Ground truth",
            )
    pages["provenance"] = (
        "provenance.yaml",
        "provenance",
        "provenance.rst",
        "7. Provenance",
    )
    return pages


def report_page_outputs():
    """Named outputs of rule report_pages, each shown in the report with a readable label."""
    return {
        name: report(
            f"results/{{dataset}}/report/{name}.html",
            caption=f"../report/{caption}",
            category=category,
            labels={"item": title},
        )
        for name, (_, title, caption, category) in report_pages().items()
    }


def report_page_sources(wildcards):
    """The file each report page shows, by page name."""
    return {
        name: f"results/{wildcards.dataset}/{source}"
        for name, (source, _, _, _) in report_pages().items()
    }


def report_page_titles():
    """Page name → title."""
    return {name: page[1] for name, page in report_pages().items()}


# ---------------------------------------------------------------- targets


def rigid_baseline_files(folder):
    """The zero-flow baseline maps in folder (when reconstruct.rigid_baseline is on)."""
    if not config["reconstruct"]["rigid_baseline"]:
        return []
    names = ("noflex_map.mrc", "noflex_map_half_A.mrc", "noflex_map_half_B.mrc")
    return [f"{folder}/{name}" for name in names]


def dataset_stages():
    """The rules that make up one dataset's results, as the config asks for them."""
    stages = ["simulate"] if is_simulated() else []
    stages += ["prep", "mesh", "train", "generate", "provenance", "report_pages"]
    if config["explore"]["enabled"]:
        stages.append("explore")
    if config["select"]["enabled"]:
        stages.append("select")
    recon = config["reconstruct"]
    if recon["enabled"]:
        stages.append("reconstruct_combine" if recon["split_jobs"] else "reconstruct")
        if config["states"]["enabled"]:
            stages.append("state_maps")
        if config["localres"]["enabled"]:
            stages.append("localres")
    if evaluation_wanted():
        stages.append("evaluate")
        if recon["enabled"] and recon["rigid_baseline"]:
            stages.append("evaluate_reconstruction")
    return stages


def final_outputs():
    """Everything `snakemake` builds by default: every output of each stage of the dataset
    (so a deleted or outdated file is made again) and, if configured, the sweep summary.
    """
    dataset = config["dataset"]
    files = [
        path
        for stage in dataset_stages()
        for path in expand(getattr(rules, stage).output, dataset=dataset)
    ]
    return files + sweep_outputs(dataset)
