"""``flexcore <command>``: dispatch to one module per command (``flexcore.cli.<command>``).

Each command module has a docstring with an example, ``add_args(parser)`` and ``main(args)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..core.errors import FlexcoreError, OtherRankError

COMMANDS = {
    "simulate": "build a simulated flexible dataset with ground truth (demo, tests)",
    "prep": "prepare particles and consensus map at the training box",
    "mesh": "build the tetrahedral mesh, solvent mask and rigidity weights",
    "train": "learn latents, flow and canonical map",
    "generate": "generate volume series from a trained model",
    "reconstruct": "high-resolution flexible reconstruction with gold-standard FSC",
    "reconstruct-combine": "combine separately solved halves into the reconstruction's outputs",
    "reconstruct-rigid": "rigid Wiener-filtered reconstruction from particles with poses",
    "explore": "write the latent explorer page: look at latents, draw particle subsets",
    "select": "write particle subsets chosen by latent region as your original particles",
    "state-maps": "per-state maps: the reconstruction deformed to chosen latents, with FSC",
    "localres": "half-map FSC per region (moving domain, core) and local-resolution maps",
    "evaluate": "score a trained model against a simulation's ground truth",
    "evaluate-reconstruction": "score the reconstructions against a simulation's ground truth",
    "evaluate-conformations": "per-conformation FSC-AUC against ground-truth maps (CryoBench)",
}
# commands that are no pipeline stage: file tools over flexcore.core
TOOLS = {
    "convert-checkpoint": "convert a trusted checkpoint of an earlier flexcore (--trust)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flexcore",
        description="Open 3D Flexible Refinement for cryo-EM.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"flexcore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, summary in {**COMMANDS, **TOOLS}.items():
        module = importlib.import_module(f"flexcore.cli.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=summary, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_args(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    try:
        args._main(args)
    except OtherRankError:  # rank 0 of a torchrun launch failed and printed why
        return 1
    except FlexcoreError as exc:
        print(f"flexcore {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


def call_step(function, *args, **kwargs):
    """Call a step function for a workflow script: a flexcore error (a bad input file or
    setting, :class:`~flexcore.core.errors.FlexcoreError`) becomes one line on stderr, which
    the script sends to the rule's log, and exit status 1; any other exception keeps its
    traceback. Returns what the step returns."""
    try:
        return function(*args, **kwargs)
    except OtherRankError:  # rank 0 failed and said why
        sys.exit(1)
    except FlexcoreError as exc:
        name = function.__name__.removeprefix("run_").replace("_", "-")
        print(f"flexcore {name}: error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
