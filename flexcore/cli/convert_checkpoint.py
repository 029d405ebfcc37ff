"""Convert a checkpoint written by an earlier flexcore (format 1 or 2) to the current format.

Example::

    flexcore convert-checkpoint --trust old/model.pt old/model_v3.pt

Checkpoints of formats 1 and 2 stored numpy and Python objects, which only unpickling can
read, and unpickling runs whatever code the file's author put in it. flexcore therefore
refuses them everywhere else; this command reads one **only with --trust** (you vouch for
where the file came from) and writes the same model as tensors, numbers, strings, lists and
dicts, which every command then reads without running anything.
"""

from __future__ import annotations


def add_args(parser) -> None:
    parser.add_argument("old", help="checkpoint of format 1 or 2 (.pt)")
    parser.add_argument("new", help="converted checkpoint to write (.pt)")
    parser.add_argument("--trust", action="store_true",
                        help="required: unpickle OLD, which runs any code it holds; only for "
                             "a file from a source you trust")


def main(args) -> None:
    from ..core.checkpoint import convert_checkpoint

    done = convert_checkpoint(args.old, args.new, trust=args.trust)
    print(f"{args.new}: converted from {done['from']} to {done['to']}")
