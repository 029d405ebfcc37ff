"""Score a trained model by per-conformation FSC-AUC against ground-truth maps (CryoBench).

Example (CryoBench IgG-1D: 100 maps, 1000 particles each, in map order)::

    flexcore evaluate-conformations results/igg/prep results/igg/train/model.pt \\
        results/igg/evaluation gt_vols/vol_*.mrc --images-per-map 1000 --mask mask.mrc

For each ground-truth map (conformation i, in the order given), the model generates the map
at the latent of that conformation's particle nearest the mean latent; the FSC with the
ground truth (masked if a mask is given) is summarised by its area against frequency in
1/pixel (CryoBench's FSC-AUC, just under 0.5 at best). Writes conformations.json (with the
curves) and conformations.tsv.
"""

from __future__ import annotations

import re


def _natural(path: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def add_args(parser) -> None:
    parser.add_argument("prep_dir", help="folder written by `flexcore prep` for this model")
    parser.add_argument("checkpoint", help="training checkpoint (.pt)")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("gt_maps", nargs="+",
                        help="ground-truth maps, one per conformation (sorted by the numbers in "
                             "their names: vol_2 before vol_10)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--labels", default=None,
                       help="conformation of each source particle (.npy or text, one integer "
                            "per particle, 0-based)")
    group.add_argument("--images-per-map", type=int, default=None,
                       help="particles come in blocks of this many per map, in map order")
    parser.add_argument("--mask", default=None, help="real-space mask applied before the FSC")
    parser.add_argument("--mesh", default=None, help="mesh file (default: the one recorded)")


def main(args) -> None:
    from ..stages.evaluate.step import run_evaluate_conformations

    run_evaluate_conformations(args.prep_dir, args.checkpoint, sorted(args.gt_maps, key=_natural),
                               args.out_dir, labels=args.labels,
                               images_per_map=args.images_per_map, mask=args.mask,
                               mesh=args.mesh)
