"""Prepare particles and the consensus map at the training box.

Example::

    flexcore prep particles.star consensus.mrc results/prep --train-box 128

Reads RELION (3.0, 3.1/4, 5) STAR or cryoSPARC .cs particles with consensus poses, checks
them against the map, crops/downsamples both, fixes inverted contrast and writes
particles.star/.mrcs, consensus.mrc and prep.json. Image paths relative to a RELION or
cryoSPARC project folder (Extract/job005/..., J1/imported/...) are found by searching the
folders above the particle file, or give the project folder with --project-dir. The output
folder must not hold the inputs (prep refuses to replace them).

cryoDRGN / CryoBench datasets (an .mrcs stack or a .txt list of stacks, poses.pkl, ctf.pkl)::

    flexcore prep particles.txt consensus.mrc results/prep --poses poses.pkl --ctf ctf.pkl
"""

from __future__ import annotations


def add_args(parser) -> None:
    parser.add_argument("particles", help="RELION .star or cryoSPARC .cs with poses, or a "
                                          "cryoDRGN .mrcs stack / .txt list of stacks")
    parser.add_argument("consensus_map", help="consensus map (.mrc), same box as particles")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--train-box", type=int, default=128, help="training box (px)")
    parser.add_argument("--crop-box", type=int, default=None,
                        help="real-space crop before downsampling (px; default: no crop)")
    parser.add_argument("--n-particles", type=int, default=None,
                        help="keep only the first N particles")
    parser.add_argument("--pixel-size", type=float, default=None,
                        help="pixel size (Å) for RELION 3.0 files that lack one")
    parser.add_argument("--resplit", action="store_true",
                        help="new random half-set split instead of the input's")
    parser.add_argument("--no-auto-sign", action="store_true",
                        help="fail instead of flipping inverted particles")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--project-dir", default=None,
                        help="RELION/cryoSPARC project folder the image paths are relative to "
                             "(default: searched above the particle file)")
    parser.add_argument("--poses", default=None,
                        help="cryoDRGN poses.pkl (rotations, shifts in fractions of the box) "
                             "for a .mrcs/.txt particle stack")
    parser.add_argument("--ctf", default=None,
                        help="cryoDRGN ctf.pkl (N x 9) for a .mrcs/.txt particle stack")


def main(args) -> None:
    from ..stages.prep.step import run_prep

    run_prep(args.particles, args.consensus_map, args.out_dir, train_box=args.train_box,
             crop_box=args.crop_box, n_particles=args.n_particles, pixel_size_A=args.pixel_size,
             resplit=args.resplit, auto_sign=not args.no_auto_sign, seed=args.seed,
             project_dir=args.project_dir, poses=args.poses, ctf=args.ctf)
