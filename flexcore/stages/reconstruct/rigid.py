"""``flexcore reconstruct-rigid``: a rigid gold-standard reconstruction of particles with
poses (a consensus map), as one step function.

Wiener-filtered Fourier insertion of each half set (:func:`~flexcore.core.wiener.reconstruct_particles`),
SSNR from the half-map FSC. The half sets are the input's when complete and two-sided, a
seeded random split otherwise (with a warning); copies of one image (the same image of the
same stack file, e.g. after symmetry expansion) are kept in one half set, with a warning
giving the count, so the FSC is not inflated (:mod:`flexcore.core.half_sets`). A map that is
not finite is never written. Writes ``map.mrc``, ``map_half_A.mrc``, ``map_half_B.mrc``,
``fsc.tsv`` and ``fsc.png``.
Every image is checked as it is read (NaN/infinite pixels, constant or all-zero images are
refused, naming the stack, the image and the particle row); the output folder must not hold
the inputs.
"""

from __future__ import annotations

import numpy as np

from ...core.errors import InputFileError
from ...core.fsc import format_resolution, resolution_at
from ...core.fsc_outputs import plot_fsc, write_fsc_table
from ...core.half_sets import assign_half_sets, image_groups
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
    half, origin = assign_half_sets(table.half_set, image_groups(table, source),
                                    resplit=False, seed=0, where=particles)
    log.info("half sets: %s, %d + %d particles", origin, int((half == 0).sum()),
             int((half == 1).sum()))
    out = reconstruct_particles(table, source, half=half, batch=batch_size, device=device,
                                mask=mask_volume)
    source.close()
    for key in ("half_a", "half_b", "full"):
        if not np.isfinite(out[key]).all():
            raise InputFileError(particles, f"the reconstruction ({key}) is not finite; nothing "
                                            "was written (check the poses, CTF and images)")
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
