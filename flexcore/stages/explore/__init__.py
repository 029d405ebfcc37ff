"""The latent explorer: one offline HTML page per training to look at the particles'
latents, see the structure at any latent and draw particle subsets (``selection.json``)."""

from .step import run_explore

__all__ = ["run_explore"]
