"""Particle subsets by latent region, written as the user's original particles.

``run_select`` is the ``select`` pipeline step; ``define_subsets`` the regions and
``check_parameters`` their parameter checks (also run by the workflow on its configuration
before any job). The step is imported lazily, so the regions module stays light to import
(no torch) for the workflow's checks.
"""

from __future__ import annotations

from .regions import METHODS, Subset, check_parameters, define_subsets, subset_names

__all__ = ["METHODS", "Subset", "check_parameters", "define_subsets", "load_latents",
           "run_select", "subset_names"]


def __getattr__(name: str):
    if name in ("load_latents", "run_select"):
        from . import step

        return getattr(step, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
