"""Cryo-EM file formats: MRC/MRCS, RELION STAR (3.0, 3.1/4, 5), cryoSPARC ``.cs``.

``read_particles(path)`` reads any particle metadata file into a :class:`ParticleTable`;
``write_star`` and ``write_cs`` write one back, carrying every input column through.
"""

from .mrc import StackReader, StackWriter, read_map, read_mask, write_map, write_stack
from .particles import ImageSource, OpticsGroup, ParticleTable

__all__ = [
    "ImageSource", "OpticsGroup", "ParticleTable", "StackReader", "StackWriter",
    "read_map", "read_mask", "write_map", "write_stack",
]
