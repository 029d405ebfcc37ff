"""Cryo-EM file formats: MRC/MRCS, RELION STAR (3.0, 3.1/4, 5), cryoSPARC ``.cs``.

``read_particles(path)`` reads any particle metadata file into a :class:`ParticleTable`;
``write_star`` and ``write_cs`` write one back, carrying every input column through.
"""

from .cryosparc import latents_to_cs_fields, read_cs, write_cs
from .latents import read_init_latents, read_latent_points
from .mrc import (
    StackReader,
    StackWriter,
    read_half_maps,
    read_map,
    read_mask,
    write_map,
    write_stack,
)
from .particles import ImageSource, OpticsGroup, ParticleTable, resolve_image_path
from .readers import detect_particle_format, read_particles, write_particles
from .star import latents_to_star_columns, read_star, write_star

__all__ = [
    "ImageSource", "OpticsGroup", "ParticleTable", "StackReader", "StackWriter",
    "detect_particle_format", "latents_to_cs_fields", "latents_to_star_columns", "read_cs",
    "read_half_maps", "read_init_latents", "read_latent_points", "read_map", "read_mask", "read_particles",
    "read_star", "resolve_image_path", "write_cs", "write_map", "write_particles", "write_stack",
    "write_star",
]
