"""Shared pytest fixtures: the real-format samples beside the checkout, seeded RNGs; the
``slow`` marker (long cases, skipped unless ``--run-slow`` or ``FLEXCORE_RUN_SLOW=1``: CI runs
their small versions); the longest modules collected first."""

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


# The modules that take longest, longest first (seconds per module on 2 cores, 2026-12-07:
# 263, 159, 113, 111, 93, 50, 40, 38, 34, 32). Under the README's `-n 2 --dist loadfile`,
# pytest-xdist gives a worker a whole module whenever it has two tests or fewer left. By
# default it sorts the modules by their number of tests, so the 4-minute workflow module
# (16 tests) and the Slurm one (3 tests) started late and one worker idled at the end. Here
# they go in collection order, these first; the rest, a few seconds each, fill the gaps.
# The list changes only the order, never what runs (test_architecture.py checks the names).
LONGEST_FIRST = ("test_workflow_run", "test_slurm", "test_train", "test_train_distributed",
                 "test_workflow_config", "test_recon_flex", "test_bench_cpu_scripts",
                 "test_bench_distributed", "test_benchmarks_run", "test_distributed")


def pytest_configure(config):
    # pytest-xdist would otherwise reorder modules by their number of tests
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the cases marked slow (their small versions always run)")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the rest as collected
    if config.getoption("--run-slow") or os.environ.get("FLEXCORE_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow case: run with --run-slow (or FLEXCORE_RUN_SLOW=1); "
                                   "its small version runs always")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
