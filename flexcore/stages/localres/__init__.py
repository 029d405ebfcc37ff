"""Where flexible reconstruction helped: half-map FSC per region (moving domain, core or
segments) and windowed-FSC local-resolution maps, flexible next to rigid.

``run_localres`` is the ``localres`` pipeline step; ``local_resolution`` the windowed FSC
on two half maps; ``motion_labels`` / ``segment_labels`` the regions; ``check_parameters``
the parameter checks (also run by the workflow on its configuration). Everything but the
checks is imported lazily, so the workflow's checks do not load torch.
"""

from __future__ import annotations

from .parameters import check_parameters

__all__ = ["check_parameters", "local_resolution", "motion_amplitude", "motion_labels",
           "region_fsc", "run_localres", "segment_labels"]
_WHERE = {"local_resolution": "windowed", "run_localres": "step",
          "motion_amplitude": "regions", "motion_labels": "regions", "region_fsc": "regions",
          "segment_labels": "regions"}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
