"""Build the tetrahedral mesh, solvent mask and rigidity weights for 3D flexible refinement.

Writes mesh.npz, mask.mrc, mask_soft.mrc, mesh_slices.png, mesh.pdb + mesh.cxc (open in
ChimeraX to see the mesh over the map) and mesh_summary.json into --out-dir.

Examples:
  flexcore mesh consensus_128.mrc -o results/mesh
  flexcore mesh consensus_128.mrc -o results/mesh --threshold 0.98 --threshold-mode quantile
  flexcore mesh consensus_128.mrc -o results/mesh --segmentation domains.seg \\
      --connections "948>947, 948>950" --rigid-segments 950
  flexcore mesh consensus_128.mrc -o results/mesh --cryosparc-mesh J42_mesh.pkl  # trusted file
"""

from __future__ import annotations

import argparse


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("consensus_map", help="consensus map (MRC) at the training box")
    parser.add_argument("-o", "--out-dir", required=True, help="output folder")
    parser.add_argument("--mask", help="solvent mask (MRC, same box and voxel size); default: "
                                       "made from the map")
    parser.add_argument("--n-cells", type=int, default=20,
                        help="lattice cubes across the box, 5 tets each (default 20)")
    parser.add_argument("--lowpass-A", type=float, default=10.0,
                        help="low-pass before thresholding and for weights, Å (default 10)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="mask threshold, read as --threshold-mode says (default 0.5)")
    parser.add_argument("--threshold-mode", choices=("absolute", "quantile", "sigma"),
                        default="absolute",
                        help="absolute level; quantile (0-1) of the low-passed map; or "
                             "standard deviations above its mean (default absolute)")
    parser.add_argument("--dilate-A", type=float, default=2.0, help="mask dilation, Å (default 2)")
    parser.add_argument("--pad-A", type=float, default=5.0, help="mask soft edge, Å (default 5)")
    parser.add_argument("--rigidity-min", type=float, default=0.5,
                        help="floor of the density-based rigidity weights (default 0.5)")
    parser.add_argument("--stiffen-low-density", action="store_true",
                        help="give non-empty peripheral low-density cells weight 3.0")
    parser.add_argument("--segmentation", help="Segger .seg or label .mrc (-1 = solvent)")
    parser.add_argument("--connections",
                        help='fused segments "X>Y, ..." (a tree, root first, breadth-first)')
    parser.add_argument("--rigid-segments", help='segment ids with weight 20, e.g. "3, 5"')
    parser.add_argument("--cryosparc-mesh",
                        help="import a CryoSPARC 3DFlex mesh pickle; unpickling runs code from "
                             "the file, so give only files you trust")
    parser.add_argument("--custom-mesh",
                        help=".npz with points (voxels, x y z from the box centre) and cells")
    parser.add_argument("--mesh-type", choices=("regular", "delaunay"), default="regular",
                        help="regular 5-tet lattice, or density-adaptive Delaunay (needs the "
                             "AGPL 'tetgen' extra)")


def main(args: argparse.Namespace) -> None:
    from ..stages.mesh.step import run_mesh

    run_mesh(args.consensus_map, args.out_dir, mask=args.mask, n_cells=args.n_cells,
             lowpass_A=args.lowpass_A, threshold=args.threshold,
             threshold_mode=args.threshold_mode, dilate_A=args.dilate_A, pad_A=args.pad_A,
             rigidity_min=args.rigidity_min, stiffen_low_density=args.stiffen_low_density,
             segmentation=args.segmentation, connections=args.connections,
             rigid_segments=args.rigid_segments, cryosparc_mesh=args.cryosparc_mesh,
             custom_mesh=args.custom_mesh, mesh_type=args.mesh_type)
