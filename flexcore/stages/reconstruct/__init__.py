"""Reconstruction: rigid Wiener backprojection (consensus maps) and flexible L-BFGS.

``run_reconstruct`` is the ``reconstruct`` pipeline step (flexible half maps, rigid
baseline, FSC, sharpening; see ``docs/reconstruction.md``) and ``run_reconstruct_rigid`` the
``reconstruct-rigid`` step (a consensus map from particles with poses). They are imported
lazily so that ``flexcore.core.wiener`` (used by the simulator) stays light to import.
"""

from __future__ import annotations

__all__ = ["run_reconstruct", "run_reconstruct_rigid"]


def __getattr__(name: str):
    if name == "run_reconstruct":
        from .step import run_reconstruct

        return run_reconstruct
    if name == "run_reconstruct_rigid":
        from .rigid import run_reconstruct_rigid

        return run_reconstruct_rigid
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
