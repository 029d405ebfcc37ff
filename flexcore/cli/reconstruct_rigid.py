"""Rigid gold-standard reconstruction from particles with poses (a consensus map).

Example::

    flexcore reconstruct-rigid particles.star results/consensus --device cuda

Wiener-filtered Fourier insertion of each half set (input split, or by index parity when the
file has none), SSNR from the half-map FSC. Writes map.mrc, map_half_A.mrc, map_half_B.mrc,
fsc.tsv and fsc.png. Every image is checked as it is read (NaN/infinite pixels, constant or
all-zero images are refused, naming the stack, the image and the particle row); the output
folder must not hold the inputs.
"""

from __future__ import annotations

OUTPUTS = ("map.mrc", "map_half_A.mrc", "map_half_B.mrc", "fsc.tsv", "fsc.png")


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
    from ..fsc import format_resolution, resolution_at
    from ..io import ImageSource, read_mask, read_particles, write_map
    from ..recon.outputs import plot_fsc, write_fsc_table
    from ..recon.rigid import reconstruct_particles
    from ..utils.logging import get_logger
    from ..utils.outputs import prepare_outputs

    table = read_particles(args.particles, pixel_size_A=args.pixel_size,
                           project_dir=args.project_dir)
    box, psize = table.box, table.pixel_size_A
    mask = read_mask(args.mask, box, psize) if args.mask else None
    source = ImageSource(table)
    source.check_all_present()
    stacks = {f"image stack {n}": source.reader(str(n)).path for n in set(table.image_paths)}
    folder = prepare_outputs("reconstruct-rigid", args.out_dir, OUTPUTS,
                             {"particle file": args.particles, "mask": args.mask, **stacks})
    out = reconstruct_particles(table, source, batch=args.batch_size, device=args.device,
                                mask=mask)
    source.close()
    write_map(folder / "map.mrc", out["full"], psize)
    write_map(folder / "map_half_A.mrc", out["half_a"], psize)
    write_map(folder / "map_half_B.mrc", out["half_b"], psize)
    res = resolution_at(out["fsc"], 0.143, psize)
    write_fsc_table(folder / "fsc.tsv", {"halves": out["fsc"]}, box, psize)
    plot_fsc(folder / "fsc.png", {"halves": out["fsc"]}, {"halves": res}, box, psize,
             f"rigid reconstruction of {len(table)} particles")
    get_logger("flexcore.cli").info("rigid reconstruction of %d particles: FSC 0.143 at %s; "
                                    "wrote %s", len(table), format_resolution(res), folder)
