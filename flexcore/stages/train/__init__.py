"""Training: latents, flow generator and canonical map (``flexcore train``)."""

from ...core.train_config import TrainConfig
from .step import run_train

__all__ = ["TrainConfig", "run_train"]
