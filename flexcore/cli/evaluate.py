"""Score a trained model against the ground truth of a simulated dataset.

Example::

    flexcore evaluate results/demo/simulate results/demo/prep \\
        results/demo/train/model.pt results/demo/evaluation

Reports |Spearman ρ| between latents and the true motion coordinates, and for every
ground-truth map the FSC of the generated map next to the consensus map's (in the moving
domain and the whole mask). Writes evaluation.json and evaluation.tsv.
"""

from __future__ import annotations


def add_args(parser) -> None:
    parser.add_argument("sim_dir", help="folder written by `flexcore simulate` (ground truth)")
    parser.add_argument("prep_dir", help="folder written by `flexcore prep` from that simulation")
    parser.add_argument("checkpoint", help="training checkpoint (.pt)")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--mesh", default=None, help="mesh file (default: the one recorded)")


def main(args) -> None:
    from ..stages.evaluate.step import run_evaluate

    run_evaluate(args.sim_dir, args.prep_dir, args.checkpoint, args.out_dir, mesh=args.mesh)
