"""``flexcore reconstruct-rigid``: a rigid gold-standard reconstruction of particles with
poses (a consensus map), as one step function.

Wiener-filtered Fourier insertion of each half set (the input split, or index parity when the
file has none; :func:`~flexcore.core.wiener.reconstruct_particles`), SSNR from the half-map
FSC. Writes ``map.mrc``, ``map_half_A.mrc``, ``map_half_B.mrc``, ``fsc.tsv`` and ``fsc.png``.
Every image is checked as it is read (NaN/infinite pixels, constant or all-zero images are
refused, naming the stack, the image and the particle row); the output folder must not hold
the inputs.
"""

from __future__ import annotations

from ...core.fsc import format_resolution, resolution_at
from ...core.fsc_outputs import plot_fsc, write_fsc_table
from ...core.io import ImageSource, read_mask, read_particles, write_map
from ...core.utils.logging import get_logger
from ...core.utils.outputs import prepare_outputs
from ...core.wiener import reconstruct_particles

log = get_logger("flexcore.recon")
OUTPUTS = ("map.mrc", "map_half_A.mrc", "map_half_B.mrc", "fsc.tsv", "fsc.png")


def run_reconstruct_rigid(particles, out_dir, *, pixel_size_A: float | None = None, mask=None,
                          batch_size: int = 256, device: str = "cpu", project_dir=None) -> dict:
    """Reconstruct ``particles`` (RELION ``.star`` / cryoSPARC ``.cs``) rigidly into
    ``out_dir``; ``mask`` (``.mrc``, same box) is applied to the FSC; ``project_dir`` is the
    RELION/cryoSPARC project folder relative image paths start from (default: searched above
    the particle file). Returns a summary with the FSC 0.143 resolution (Å; NaN when the FSC
    is not finite)."""
    table = read_particles(particles, pixel_size_A=pixel_size_A, project_dir=project_dir)
    box, psize = table.box, table.pixel_size_A
    mask_volume = read_mask(mask, box, psize) if mask else None
    source = ImageSource(table)
    source.check_all_present()
    stacks = {f"image stack {n}": source.reader(str(n)).path for n in set(table.image_paths)}
    folder = prepare_outputs("reconstruct-rigid", out_dir, OUTPUTS,
                             {"particle file": particles, "mask": mask, **stacks})
    out = reconstruct_particles(table, source, batch=batch_size, device=device, mask=mask_volume)
    source.close()
    write_map(folder / "map.mrc", out["full"], psize)
    write_map(folder / "map_half_A.mrc", out["half_a"], psize)
    write_map(folder / "map_half_B.mrc", out["half_b"], psize)
    res = resolution_at(out["fsc"], 0.143, psize)
    write_fsc_table(folder / "fsc.tsv", {"halves": out["fsc"]}, box, psize)
    plot_fsc(folder / "fsc.png", {"halves": out["fsc"]}, {"halves": res}, box, psize,
             f"rigid reconstruction of {len(table)} particles")
    log.info("rigid reconstruction of %d particles: FSC 0.143 at %s; wrote %s", len(table),
             format_resolution(res), folder)
    return {"n_particles": len(table), "box": box, "pixel_size_A": psize,
            "resolution_0143_A": res, "out_dir": str(folder)}
