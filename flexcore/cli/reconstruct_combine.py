"""Combine the separately solved halves of a reconstruction into its outputs.

Example::

    for s in flex_A flex_B noflex_A noflex_B; do
        flexcore reconstruct results/train/model.pt results/prep halves --solve $s &
    done; wait
    flexcore reconstruct-combine halves results/reconstruct

Reads ``flex_map_half_A/B.mrc`` and ``flex_half_A/B.json`` (and the ``noflex`` ones when
present) from HALVES_DIR, checks that they were solved with the same inputs and
parameters, and writes what ``flexcore reconstruct`` writes: half and full maps, the
sharpened map, fsc.tsv/fsc.png, lbfgs.tsv and recon.json.
"""

from __future__ import annotations


def add_args(parser) -> None:
    parser.add_argument("halves_dir", help="folder of `flexcore reconstruct --solve` outputs")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--bfactor", type=float, default=None,
                        help="B-factor (Å², positive) removed when sharpening "
                             "(default: Guinier fit)")


def main(args) -> None:
    from ..stages.reconstruct.step import run_reconstruct_combine

    run_reconstruct_combine(args.halves_dir, args.out_dir, bfactor=args.bfactor)
