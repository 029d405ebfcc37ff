"""High-resolution flexible reconstruction (3D Flex Reconstruction) with gold-standard FSC.

Example::

    flexcore reconstruct results/train/model.pt results/prep \\
        results/reconstruct --iterations 20 --batch-size 64

Solves each half set by L-BFGS under the trained flow (flex_map_half_A/B.mrc) and, as a
baseline, with zero flow (noflex_map_half_A/B.mrc); writes the full maps, a sharpened flex
map, fsc.tsv/fsc.png (flex and rigid curves), lbfgs.tsv and recon.json.

``--solve flex_A`` (or flex_B, noflex_A, noflex_B) solves only that half into OUT_DIR
(``flex_map_half_A.mrc`` + ``flex_half_A.json``), so the four solves can run as separate
jobs on different GPUs; ``flexcore reconstruct-combine OUT_DIR RESULT_DIR`` then writes the
outputs above from them.

Data parallel on N GPUs of one node: ``--gpus N`` starts N ranks with torchrun (or start
the command under torchrun yourself, e.g. on several nodes); each half's particles are
split over the ranks (docs/reconstruction.md).
"""

from __future__ import annotations

SOLVES = ("flex_A", "noflex_A", "flex_B", "noflex_B")  # as flexcore.stages.reconstruct.params


def add_args(parser) -> None:
    parser.add_argument("checkpoint", help="training checkpoint (.pt)")
    parser.add_argument("prep_dir", help="the prepared folder the model was trained on")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--mesh", default=None, help="mesh file (default: the one recorded)")
    parser.add_argument("--iterations", type=int, default=20, help="L-BFGS iterations per half")
    parser.add_argument("--batch-size", type=int, default=64, help="particles per batch")
    parser.add_argument("--ridge", type=float, default=1e-3, help="ridge weight ρ (½ρ‖V‖²)")
    parser.add_argument("--resplit", action="store_true",
                        help="seeded random half-set split instead of the input split")
    parser.add_argument("--seed", type=int, default=0, help="seed of --resplit")
    parser.add_argument("--in-ram", action="store_true",
                        help="load each half's images into RAM (when they fit)")
    parser.add_argument("--scratch-dir", default=None,
                        help="copy the particle stacks to this local folder first (e.g. $TMPDIR)")
    parser.add_argument("--no-rigid-baseline", action="store_true",
                        help="skip the zero-flow (noflex) reconstruction")
    parser.add_argument("--bfactor", type=float, default=None,
                        help="B-factor (Å², positive) removed when sharpening "
                             "(default: Guinier fit)")
    parser.add_argument("--aberrations", action="store_true",
                        help="apply beam tilt and odd/even Zernike terms of the optics groups")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--gpus", type=int, default=1,
                        help="data-parallel ranks on this node (started with torchrun)")
    parser.add_argument("--solve", choices=SOLVES, default=None,
                        help="solve only this half (flex or rigid) into OUT_DIR, for "
                             "reconstruct-combine")


def main(args) -> None:
    from ..stages.reconstruct.step import run_reconstruct

    run_reconstruct(args.checkpoint, args.prep_dir, args.out_dir, mesh=args.mesh,
                    iterations=args.iterations, batch_size=args.batch_size, ridge=args.ridge,
                    resplit=args.resplit, seed=args.seed, in_ram=args.in_ram,
                    scratch_dir=args.scratch_dir, aberrations=args.aberrations,
                    device=args.device, rigid_baseline=not args.no_rigid_baseline,
                    bfactor=args.bfactor, solve=args.solve, gpus=args.gpus)
