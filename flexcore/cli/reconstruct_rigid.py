"""Rigid gold-standard reconstruction from particles with poses (a consensus map).

Example::

    flexcore reconstruct-rigid particles.star results/consensus --device cuda

Wiener-filtered Fourier insertion of each half set, SSNR from the half-map FSC. The input's
half sets are used when complete and two-sided, a seeded random split otherwise (with a
warning); copies of one image (e.g. after symmetry expansion) are kept in one half set, with
a warning giving the count, so the FSC is not inflated. Writes map.mrc, map_half_A.mrc,
map_half_B.mrc, fsc.tsv and fsc.png. Every image is checked as it is read (NaN/infinite pixels, constant or
all-zero images are refused, naming the stack, the image and the particle row); the output
folder must not hold the inputs.
"""

from __future__ import annotations


def add_args(parser) -> None:
    parser.add_argument("particles", help="RELION .star or cryoSPARC .cs with poses")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--pixel-size", type=float, default=None,
                        help="pixel size (Å) for RELION 3.0 files that lack one")
    parser.add_argument("--mask", default=None, help="mask for the FSC (.mrc, same box)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--project-dir", default=None,
                        help="RELION/cryoSPARC project folder the image paths are relative to "
                             "(default: searched above the particle file)")


def main(args) -> None:
    from ..stages.reconstruct.step import run_reconstruct_rigid

    run_reconstruct_rigid(args.particles, args.out_dir, pixel_size_A=args.pixel_size,
                          mask=args.mask, batch_size=args.batch_size, device=args.device,
                          project_dir=args.project_dir)
