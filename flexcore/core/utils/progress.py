"""Progress of long passes: a bar in an interactive terminal, plain log lines elsewhere.

A run started from a terminal shows a ``tqdm`` bar for each long pass (an epoch's batches,
a pass of the reconstruction over a half set). Under Slurm or Snakemake, stderr is a file:
then no bar is drawn and the log keeps only the plain ``k/N … ETA`` lines the steps write,
so log files stay readable. ``FLEXCORE_PROGRESS=0`` turns the bars off in a terminal too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable


def bars_wanted(stream=None) -> bool:
    """True when ``stream`` (default stderr) is an interactive terminal and bars are not
    turned off with ``FLEXCORE_PROGRESS=0``."""
    stream = sys.stderr if stream is None else stream
    if os.environ.get("FLEXCORE_PROGRESS", "1") == "0":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def progress(iterable: Iterable, total: int | None = None, desc: str = "", unit: str = "batch",
             stream=None, enabled: bool = True) -> Iterable:
    """``iterable`` wrapped in a progress bar on ``stream`` when ``enabled`` (e.g. on the
    main rank only) and :func:`bars_wanted`, else ``iterable`` itself (nothing is written)."""
    if not enabled or not bars_wanted(stream):
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                file=sys.stderr if stream is None else stream)


def format_eta(seconds: float) -> str:
    """``"2 h 05 min"``, ``"4 min 10 s"`` or ``"12 s"`` (a remaining time for a log line)."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"
