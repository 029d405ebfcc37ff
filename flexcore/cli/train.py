"""Train latents, flow generator and canonical map.

Example::

    flexcore train results/prep results/mesh/mesh.npz results/train \\
        --set latent_dim=2 --set epochs=16 --set rigidity_lambda=0.5

Parameters are the fields of ``flexcore.core.train_config.TrainConfig`` (CryoSPARC's defaults), given
with ``--set key=value`` or in a YAML file (``--config``).

An OUT_DIR that already holds a training run is refused, with a message that says whether
its checkpoint is compatible (same configuration, mesh and prepared particles; the device,
log_every and extra_epochs may differ). ``--resume`` continues from OUT_DIR/checkpoints/
checkpoint_last.pt (a checkpoint of a different run is an error naming what differs);
``--restart`` removes the earlier run's files (checkpoints, per-epoch plots, latents) and
starts afresh; ``--auto`` resumes when compatible and starts afresh otherwise (the
Snakemake workflow's mode).

Data parallel on N GPUs of one node: ``--gpus N`` starts N ranks with torchrun (or start the
command under torchrun yourself, e.g. on several nodes); the ranks share the particles and
rank 0 writes the outputs (docs/training.md).
"""

from __future__ import annotations

import yaml

from ..core.errors import ConfigError


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML parser error in one line: what is wrong and where."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def parse_assignments(pairs: list[str]) -> dict:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}`` (values parsed as YAML scalars)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {pair}: the value is not valid YAML "
                              f"({yaml_problem(exc)})") from exc
    return out


def add_args(parser) -> None:
    parser.add_argument("prep_dir", help="output folder of `flexcore prep`")
    parser.add_argument("mesh", help="mesh.npz from `flexcore mesh`")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--config", default=None, help="YAML file of training parameters")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a training parameter (repeatable; overrides --config)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the compatible run in OUT_DIR from its last checkpoint")
    again.add_argument("--restart", action="store_true",
                       help="remove the earlier run in OUT_DIR (checkpoints, per-epoch files, "
                            "latents) and start afresh")
    again.add_argument("--auto", action="store_true",
                       help="continue a compatible run in OUT_DIR, otherwise remove it and start "
                            "afresh (what the workflow does)")
    parser.add_argument("--gpus", type=int, default=1,
                        help="data-parallel ranks on this node (started with torchrun)")
    parser.add_argument("--init-latents", default=None,
                        help="start from these latents (.npy, or .star/.cs with latent columns)")
    parser.add_argument("--image-paths", default="original", choices=["original", "absolute"],
                        help="stack names in latents.star/.cs: as in the input (original: they "
                             "open from the same project folder) or absolute")


def main(args) -> None:
    from ..stages.train import run_train

    config = {}
    if args.config:
        try:
            with open(args.config) as f:
                config = yaml.safe_load(f) or {}
        except OSError as exc:
            raise ConfigError(f"{args.config}: cannot be read ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{args.config}: not valid YAML ({yaml_problem(exc)})") from exc
        if not isinstance(config, dict):
            raise ConfigError(f"{args.config}: expected a mapping of training parameters")
    config.update(parse_assignments(args.set))
    on_existing = ("resume" if args.resume else "restart" if args.restart
                   else "auto" if args.auto else "refuse")
    run_train(args.prep_dir, args.mesh, args.out_dir, config, on_existing=on_existing,
              init_latents=args.init_latents, gpus=args.gpus, image_paths=args.image_paths)
