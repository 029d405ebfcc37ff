"""Write the latent explorer: one offline HTML page to look at a training's latent space,
see the structure at any latent and draw particle subsets by hand.

Example::

    flexcore explore results/train/model.pt results/train --grid 11
    # open results/train/explorer.html in a browser, draw subsets, save selection.json, then
    flexcore select results/train/latents.npy results/prep results/select --from selection.json

The page needs no network and nothing installed: the particles' latents (density-shaded
scatter for K = 2, histogram and strip for K = 1, principal components or any axis pair for
K > 2), three projections of the map at the grid node nearest the pointer, box and lasso
selection into named subsets with their counts, and "save selection.json".
"""

from __future__ import annotations


def add_args(parser) -> None:
    parser.add_argument("checkpoint", help="training checkpoint or model.pt")
    parser.add_argument("out_dir", help="output folder (the page is OUT_DIR/explorer.html)")
    parser.add_argument("--mesh", default=None, help="mesh file (default: the one recorded)")
    parser.add_argument("--grid", type=int, default=11,
                        help="grid nodes per axis where the structure is drawn (default 11)")
    parser.add_argument("--max-points", type=int, default=20000,
                        help="particles drawn at most (selections test all; default 20000)")
    parser.add_argument("--image-px", type=int, default=64,
                        help="side of each projection image in pixels (default 64)")
    parser.add_argument("--supersample", type=int, default=1, help="sub-points per voxel axis")
    parser.add_argument("--device", default="auto")


def main(args) -> None:
    from ..stages.explore import run_explore

    run_explore(args.checkpoint, args.out_dir, mesh=args.mesh, grid=args.grid,
                max_points=args.max_points, image_px=args.image_px,
                supersample=args.supersample, device=args.device)
