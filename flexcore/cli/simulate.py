"""Simulate a flexible cryo-EM dataset with ground truth (demo data and tests).

Example::

    flexcore simulate results/demo/simulate --n-particles 3000 --box 64 --snr 0.1

Writes particles.star/.mrcs (RELION 3.1), consensus.mrc, mask.mrc, moving_mask.mrc,
gt/map_XX.mrc, ground_truth.csv and ground_truth.json.
"""

from __future__ import annotations


def add_args(parser) -> None:
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--n-particles", type=int, default=3000)
    parser.add_argument("--box", type=int, default=64, help="image size (px)")
    parser.add_argument("--pixel-size", type=float, default=2.5, help="Å per pixel")
    parser.add_argument("--snr", type=float, default=0.1,
                        help="var(clean image)/var(noise) over the whole box")
    parser.add_argument("--motions", type=int, default=1, choices=(1, 2),
                        help="1 hinge, or 2 independent hinges (for K=2)")
    parser.add_argument("--max-angle", type=float, default=25.0,
                        help="hinge rotation (degrees) at coordinate ±1")
    parser.add_argument("--n-gt-maps", type=int, default=9,
                        help="ground-truth maps per motion")
    parser.add_argument("--seed", type=int, default=0)


def main(args) -> None:
    from ..stages.simulate import run_simulate

    run_simulate(args.out_dir, n_particles=args.n_particles, box=args.box,
                 pixel_size_A=args.pixel_size, snr=args.snr, n_motions=args.motions,
                 max_angle_deg=args.max_angle, n_gt_maps=args.n_gt_maps, seed=args.seed)
