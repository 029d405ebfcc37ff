"""Score the flexible and rigid reconstructions against a simulation's ground truth.

Example::

    flexcore evaluate-reconstruction results/demo/simulate results/demo/prep \\
        results/demo/train/model.pt results/demo/reconstruct results/demo/evaluation

The flexible reconstruction is deformed to every ground-truth state and compared with the
true map (FSC in the simulation's moving domain and in the whole mask), next to the rigid
reconstruction against the same maps. Writes reconstruction.tsv, reconstruction.json and
moving_fsc.png.
"""

from __future__ import annotations


def add_args(parser) -> None:
    parser.add_argument("sim_dir", help="folder written by `flexcore simulate` (ground truth)")
    parser.add_argument("prep_dir", help="folder written by `flexcore prep` from that simulation")
    parser.add_argument("checkpoint", help="training checkpoint (.pt)")
    parser.add_argument("recon_dir", help="folder written by `flexcore reconstruct`")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--mesh", default=None, help="mesh file (default: the one recorded)")


def main(args) -> None:
    from ..stages.evaluate_reconstruction.step import run_evaluate_reconstruction

    run_evaluate_reconstruction(args.sim_dir, args.prep_dir, args.checkpoint, args.recon_dir,
                                args.out_dir, mesh=args.mesh)
