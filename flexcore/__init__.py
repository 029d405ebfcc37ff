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

__version__ = "0.1.0"
