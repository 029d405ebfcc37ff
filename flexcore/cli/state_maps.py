"""Per-state maps: the high-resolution flexible reconstruction deformed to chosen latent
points, each from its two deformed half maps (so each state has its own FSC).

Examples::

    # the state of each subset of `flexcore select` (k-means centroids, region centres, points)
    flexcore state-maps results/train/model.pt results/reconstruct \\
        results/states --states results/select/select.json

    # every frame of the generated series, or latent points of your own (.npy/.csv/.star/.cs)
    flexcore state-maps ... --states results/generate/generate.json
    flexcore state-maps ... --states my_points.csv

Writes maps/state_<name>.mrc (+ _half_A, _half_B, _sharp), states.tsv, states_fsc.tsv,
states_fsc.png, states.cxc (ChimeraX) and states.json.
"""

from __future__ import annotations


def add_args(parser) -> None:
    parser.add_argument("checkpoint", help="training checkpoint (.pt)")
    parser.add_argument("recon_dir", help="reconstruction folder (flex_map_half_A/B.mrc)")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--states", required=True,
                        help="select.json, generate.json or a latent-point file")
    parser.add_argument("--mesh", default=None, help="mesh file (default: the one recorded)")
    parser.add_argument("--supersample", type=int, default=2, help="sub-points per voxel axis")
    parser.add_argument("--bfactor", type=float, default=None,
                        help="B-factor (Å²) for the sharpened maps (default: recon.json's)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def main(args) -> None:
    from ..stages.state_maps.step import run_state_maps

    run_state_maps(args.checkpoint, args.recon_dir, args.out_dir, states=args.states,
                   mesh=args.mesh, supersample=args.supersample, bfactor=args.bfactor,
                   device=args.device)
