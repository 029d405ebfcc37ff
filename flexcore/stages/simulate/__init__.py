"""Simulated flexible datasets with ground truth, for the demo and the tests."""

from .step import SimulationResult, run_simulate

__all__ = ["SimulationResult", "run_simulate"]
