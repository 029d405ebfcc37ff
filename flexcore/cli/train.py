"""Train latents, flow generator and canonical map.

Example::

    flexcore train results/prep results/mesh/mesh.npz results/train \\
        --set latent_dim=2 --set epochs=16 --set rigidity_lambda=2.0

Parameters are the fields of ``flexcore.train.TrainConfig`` (CryoSPARC's defaults), given
with ``--set key=value`` or in a YAML file (``--config``). ``--resume`` continues from the last
checkpoint in OUT_DIR/checkpoints.
"""

from __future__ import annotations

import yaml

from ..errors import ConfigError


def parse_assignments(pairs: list[str]) -> dict:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}`` (values parsed as YAML scalars)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def add_args(parser) -> None:
    parser.add_argument("prep_dir", help="output folder of `flexcore prep`")
    parser.add_argument("mesh", help="mesh.npz from `flexcore mesh`")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--config", default=None, help="YAML file of training parameters")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a training parameter (repeatable; overrides --config)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--init-latents", default=None,
                        help="start from these latents (.npy, or .star/.cs with latent columns)")


def main(args) -> None:
    from ..train import run_train

    config = {}
    if args.config:
        with open(args.config) as f:
            config = yaml.safe_load(f) or {}
        if not isinstance(config, dict):
            raise ConfigError(f"{args.config}: expected a mapping of training parameters")
    config.update(parse_assignments(args.set))
    run_train(args.prep_dir, args.mesh, args.out_dir, config, resume=args.resume,
              init_latents=args.init_latents)
