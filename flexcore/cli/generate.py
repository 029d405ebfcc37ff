"""Generate volume series from a trained model.

Example::

    flexcore generate results/train/model.pt results/generate \\
        --n-frames 41 --highres-map results/reconstruct/flex_map.mrc

Writes series_zK/frame_NNN.mrc, series_zK.cxc (ChimeraX volume series), series_zK.gif, and
strain.mrc / strain.png (cells the flow stretches beyond --strain-threshold are flagged in
generate.json and the log).
"""

from __future__ import annotations


def add_args(parser) -> None:
    parser.add_argument("checkpoint", help="training checkpoint (.pt)")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--mesh", default=None, help="mesh file (default: the one recorded)")
    parser.add_argument("--n-frames", type=int, default=41, help="frames per latent axis (odd)")
    parser.add_argument("--radius", type=float, default=None, help="latent range ±r (default 1.5)")
    parser.add_argument("--percentile", type=float, default=None,
                        help="data-driven range: this percentile of |z_k| over the particles")
    parser.add_argument("--latents", default=None,
                        help="custom latent points (.npy, cryoDRGN z.pkl, .csv, or a .star/.cs "
                             "with latents)")
    parser.add_argument("--highres-map", default=None, help="deform this map instead")
    parser.add_argument("--supersample", type=int, default=2, help="sub-points per voxel axis")
    parser.add_argument("--strain-threshold", type=float, default=None,
                        help="flag mesh cells stretched beyond this (default: the training's, 1.5)")
    parser.add_argument("--device", default="auto")


def main(args) -> None:
    from ..stages.generate.step import run_generate

    run_generate(args.checkpoint, args.out_dir, mesh=args.mesh, n_frames=args.n_frames,
                 radius=args.radius, percentile=args.percentile, latents_file=args.latents,
                 highres_map=args.highres_map, supersample=args.supersample,
                 strain_threshold=args.strain_threshold, device=args.device)
