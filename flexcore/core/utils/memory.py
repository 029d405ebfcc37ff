"""Memory of the machine and of this process (for checks before loading and for reports)."""

from __future__ import annotations

import sys
from pathlib import Path


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from /proc/meminfo (Linux), else None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_rss_GiB() -> float:
    """Peak resident memory of this process so far (GiB), from ``getrusage``."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (2**30 if sys.platform == "darwin" else 2**20)
