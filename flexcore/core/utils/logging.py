"""One logger for the package; steps log progress lines to stderr (Snakemake logs it)."""

from __future__ import annotations

import logging
import sys

_CONFIGURED = False


def get_logger(name: str = "flexcore") -> logging.Logger:
    """Return a package logger, configuring a stderr handler the first time."""
    global _CONFIGURED
    logger = logging.getLogger("flexcore")
    if not _CONFIGURED:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s", "%H:%M:%S")
        )
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        _CONFIGURED = True
    return logging.getLogger(name) if name.startswith("flexcore") else logger.getChild(name)
