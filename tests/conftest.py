"""Shared pytest fixtures: the real-format samples beside the checkout, seeded RNGs; the
``slow`` marker (long cases, skipped unless ``--run-slow`` or ``FLEXCORE_RUN_SLOW=1``: CI runs
their small versions)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FORMATS = SHARED / "fixtures" / "formats"


@pytest.fixture
def formats_dir() -> Path:
    """``../shared/fixtures/formats`` (real RELION/cryoSPARC files); skip when absent."""
    if not FORMATS.is_dir():
        pytest.skip(f"real-format fixtures not found at {FORMATS} (../shared is not part of the repository)")
    return FORMATS


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# Under pytest-xdist (the README's command runs 2 workers) each worker gets one torch thread,
# so the workers do not oversubscribe the cores; alone, a run uses up to 2.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    torch.set_num_threads(1 if WORKERS > 1 else max(1, min(2, torch.get_num_threads())))


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the cases marked slow (their small versions always run)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get("FLEXCORE_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow case: run with --run-slow (or FLEXCORE_RUN_SLOW=1); "
                                   "its small version runs always")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
