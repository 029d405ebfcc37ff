"""Select particles by latent region and write them as your original particles (full
resolution, every column and the optics table kept) to refine in RELION or cryoSPARC.

Examples::

    # three k-means clusters of the latents → cluster1.star … cluster3.star
    flexcore select results/train/latents.npy results/prep results/select --method kmeans \\
        --n-clusters 3

    # the particles in the top quartile of z1
    flexcore select results/train/latents.npy results/prep results/select --method percentile \\
        --axis 1 --percentile 75 100

    # a box (or ellipse) in a 2-D latent space
    flexcore select results/train/latents.npy results/prep results/select --method box \\
        --center 0.5 -0.2 --half-widths 0.3 0.3

    # particles within 0.25 of each of two latent points → point1.star, point2.star
    flexcore select results/train/latents.npy results/prep results/select --method points \\
        --point 0.8 0.0 --point -0.8 0.0 --radius 0.25

    # the subsets drawn in the latent explorer (flexcore explore) and saved from its page
    flexcore select results/train/latents.npy results/prep results/select \\
        --from selection.json

Writes <subset>.star (or .cs with its .csg, like the particle file given to prep),
selection.png (latent space with the selection) and select.json (counts, the state latent of
each subset); with --class-numbers also subsets.star (RELION: one file, rlnClassNumber = subset).
"""

from __future__ import annotations


def add_args(parser) -> None:
    parser.add_argument("latents", help="train's latents.npy (prepared order) or a checkpoint .pt")
    parser.add_argument("prep_dir", help="the prepared folder the model was trained on")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--method", default="kmeans",
                        choices=["box", "ellipse", "percentile", "kmeans", "points", "file"],
                        help="how to choose particles (default kmeans; file with --from)")
    parser.add_argument("--from", dest="selection_file", default=None, metavar="SELECTION_JSON",
                        help="selection.json saved from the latent explorer (implies --method file)")
    parser.add_argument("--n-clusters", type=int, default=3, help="k-means clusters (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the k-means start")
    parser.add_argument("--center", type=float, nargs="+", default=None,
                        help="box/ellipse centre, one value per latent dimension")
    parser.add_argument("--half-widths", type=float, nargs="+", default=None,
                        help="box half widths / ellipse semi-axes (one value, or one per dimension)")
    parser.add_argument("--axis", type=int, default=1, help="latent axis of --method percentile (1-based)")
    parser.add_argument("--percentile", type=float, nargs=2, default=(75.0, 100.0),
                        metavar=("LOW", "HIGH"), help="percentile range along --axis (default 75 100)")
    parser.add_argument("--point", type=float, nargs="+", action="append", default=None,
                        help="a latent point of --method points (repeat for several)")
    parser.add_argument("--radius", type=float, default=0.3,
                        help="radius around each --point, latent units (default 0.3)")
    parser.add_argument("--image-paths", default="original", choices=["original", "absolute"],
                        help="stack names as in the input (original) or made absolute")
    parser.add_argument("--class-numbers", action="store_true",
                        help="also write subsets.star: every selected particle once with "
                             "rlnClassNumber = its subset's number (RELION Subset selection)")


def main(args) -> None:
    from ..stages.select import run_select

    method = "file" if args.selection_file else args.method
    run_select(args.latents, args.prep_dir, args.out_dir, method=method,
               n_clusters=args.n_clusters, center=args.center, half_widths=args.half_widths,
               axis=args.axis, percentile_low=args.percentile[0],
               percentile_high=args.percentile[1], points=args.point, radius=args.radius,
               seed=args.seed, image_paths=args.image_paths, selection_file=args.selection_file,
               class_numbers=args.class_numbers)
