"""Where flexible reconstruction helped: half-map FSC per region and local-resolution maps,
flexible next to rigid.

Example::

    flexcore localres results/train/model.pt results/reconstruct \\
        results/localres --window-px 16 --threshold 0.5

Regions are the mesh's segments, or the mesh cells grouped by how far the learned flow moves
them over the particles (top quartile "moving", bottom quartile "core"). Writes regions.tsv,
regions_fsc.tsv, fsc_regions.png, regions.mrc, localres_flex.mrc, localres_noflex.mrc,
localres.png, localres.cxc (ChimeraX colouring) and localres.json.
"""

from __future__ import annotations


def add_args(parser) -> None:
    parser.add_argument("checkpoint", help="training checkpoint (.pt)")
    parser.add_argument("recon_dir", help="reconstruction folder (flex/noflex half maps)")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--mesh", default=None, help="mesh file (default: the one recorded)")
    parser.add_argument("--region-quantile", type=float, default=0.25,
                        help="fraction of the mask in the moving and in the core region (0.25)")
    parser.add_argument("--window-px", type=int, default=16,
                        help="local-resolution window edge in voxels (even, ≥ 8; default 16)")
    parser.add_argument("--stride", type=int, default=None,
                        help="local-resolution grid spacing in voxels (default max(2, box/48))")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="FSC threshold of the local resolution (default 0.5)")
    parser.add_argument("--n-samples", type=int, default=256,
                        help="particles' latents sampled for the motion amplitude")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def main(args) -> None:
    from ..stages.localres import run_localres

    run_localres(args.checkpoint, args.recon_dir, args.out_dir, mesh=args.mesh,
                         region_quantile=args.region_quantile, window_px=args.window_px,
                         stride=args.stride, threshold=args.threshold, n_samples=args.n_samples,
                         device=args.device)
