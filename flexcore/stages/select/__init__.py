"""Particle subsets by latent region, written as the user's original particles.

``run_select`` is the ``select`` pipeline step; ``define_subsets`` the regions it supports
(box, ellipse, percentile range, k-means clusters, latent points with a radius).
"""

from .regions import METHODS, Subset, define_subsets, subset_names
from .step import load_latents, run_select

__all__ = ["METHODS", "Subset", "define_subsets", "load_latents", "run_select", "subset_names"]
