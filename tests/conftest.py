"""Shared pytest fixtures: the real-format samples beside the checkout, seeded RNGs."""

from __future__ import annotations

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


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
