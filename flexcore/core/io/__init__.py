"""Cryo-EM file formats: MRC/MRCS, RELION STAR (3.0, 3.1/4, 5), cryoSPARC ``.cs``.

``read_particles(path)`` reads any particle metadata file into a :class:`ParticleTable`;
``write_star`` and ``write_cs`` write one back, carrying every input column through.
"""

from importlib import import_module

# Each name's submodule is imported on first use (PEP 562). The Snakefile imports
# flexcore.core.io.readers, .mrc and .selection to check the config and size jobs; importing
# every format here pulled scipy.spatial (cryoSPARC poses) into every snakemake command.
_SOURCES = {
    "latents_to_cs_fields": "cryosparc", "read_cs": "cryosparc", "write_cs": "cryosparc",
    "read_init_latents": "latents", "read_latent_points": "latents",
    "StackReader": "mrc", "StackWriter": "mrc", "read_half_maps": "mrc", "read_map": "mrc",
    "read_mask": "mrc", "write_map": "mrc", "write_stack": "mrc",
    "ImageSource": "particles", "OpticsGroup": "particles", "ParticleTable": "particles",
    "resolve_image_path": "particles",
    "detect_particle_format": "readers", "read_particles": "readers",
    "write_particles": "readers",
    "latents_to_star_columns": "star", "read_star": "star", "write_star": "star",
}


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_SOURCES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_SOURCES))


__all__ = sorted(_SOURCES)
