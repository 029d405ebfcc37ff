"""Where flexible reconstruction helped: half-map FSC per region (moving domain, core or
segments) and windowed-FSC local-resolution maps, flexible next to rigid.

``run_localres`` is the ``localres`` pipeline step; ``local_resolution`` the
windowed FSC on two half maps; ``motion_labels`` / ``segment_labels`` the regions.
"""

from .regions import motion_amplitude, motion_labels, region_fsc, segment_labels
from .step import run_localres
from .windowed import local_resolution

__all__ = ["local_resolution", "motion_amplitude", "motion_labels", "region_fsc",
           "run_localres", "segment_labels"]
