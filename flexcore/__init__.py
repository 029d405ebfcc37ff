"""flexcore: open 3D Flexible Refinement (3DFlex) for cryo-EM.

Conventions used everywhere (see docs/conventions.md):

* volumes are ``[z, y, x]`` arrays, image stacks ``[n, y, x]`` (mrcfile order);
* the box centre is index ``N // 2`` on every axis;
* positions are ``(x, y, z)`` column vectors in voxels relative to the box centre;
* a particle's rotation ``A`` is RELION's matrix: ``p = A @ r`` maps reference (map)
  coordinates into the particle frame and the projection integrates along the particle z;
* shifts are RELION origins in Å (``rlnOriginXAngst``): the observed image equals the
  projection translated by ``-origin``.
"""

import os as _os

__version__ = "0.1.0"

# Threads of torch's OpenMP pool sleep between parallel regions instead of spinning: on a
# shared machine (a Snakemake node, a laptop) spinning threads take cores from the other
# jobs. libgomp reads this when torch is imported, so it applies where flexcore is imported
# first (the CLI, the workflow's scripts); an OMP_WAIT_POLICY already set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
