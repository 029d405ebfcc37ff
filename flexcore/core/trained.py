"""A trained model loaded from a checkpoint: flow generator, canonical map, mesh, latents.

Used by the generator and the flexible reconstruction. Reads checkpoints that are being
written by a running training (they are replaced atomically).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .errors import InputFileError
from .model.flow import FlowGenerator
from .prep_info import PrepInfo
from .schedule import k_max_for_epoch
from .train_config import TrainConfig
from .utils.files import file_sha256
from .utils.logging import get_logger

log = get_logger("flexcore.train")


@dataclass
class TrainedModel:
    flow: FlowGenerator
    volume: torch.Tensor  # (D, D, D) canonical map at the training box
    mesh: object  # flexcore.core.mesh.TetMesh at the training box
    latents: np.ndarray  # (N, K), prepared-particle order
    config: TrainConfig
    epoch: int
    pixel_size_A: float
    prep: PrepInfo | None  # the prep the model was trained on (None: not recorded)
    checkpoint: Path
    mesh_path: Path | None = None  # the mesh file loaded (given, or the one recorded)

    @property
    def box(self) -> int:
        return int(self.volume.shape[-1])

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def k_max(self) -> float:
        """Band limit the model was last trained at (cycles per training pixel)."""
        return k_max_for_epoch(self.config, max(0, self.epoch - 1), self.pixel_size_A)

    @torch.no_grad()
    def displacements(self, z, device=None) -> torch.Tensor:
        """Vertex displacements ``(P, Nv, 3)`` (training-box voxels) at latents ``z (P, K)``."""
        dev = device or next(self.flow.parameters()).device
        z = torch.as_tensor(np.asarray(z, dtype=np.float32), device=dev).reshape(-1, self.latent_dim)
        return self.flow.to(dev)(z)


def load_trained_model(checkpoint, mesh_path=None, device="cpu") -> TrainedModel:
    """Load a checkpoint and its mesh (from ``mesh_path`` or the path the checkpoint records;
    the file's SHA-256 must match the one recorded at training time)."""
    from .mesh import TetMesh

    state = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(state["config"])
    path = Path(mesh_path or state["mesh_path"] or "")
    if not path.is_file():
        raise InputFileError(checkpoint, f"its mesh {path} is missing; pass the mesh file explicitly")
    if state.get("mesh_sha256") and file_sha256(path) != state["mesh_sha256"]:
        raise InputFileError(path, f"is not the mesh {Path(checkpoint).name} was trained with "
                                   "(SHA-256 differs)")
    mesh = TetMesh.load(path)
    n_out = state["flow"]["out.bias"].numel()
    if n_out != 3 * mesh.n_vertices:
        raise InputFileError(checkpoint, f"its flow moves {n_out // 3} vertices but the mesh {path} "
                                         f"has {mesh.n_vertices}")
    flow = FlowGenerator(cfg.latent_dim, mesh.n_vertices, cfg.hidden_units, cfg.n_layers)
    flow.load_state_dict(state["flow"])
    flow.eval().to(device)
    prep = PrepInfo.from_dict(state["prep"], checkpoint) if state.get("prep") else None
    return TrainedModel(flow=flow, volume=state["volume"].to(device), mesh=mesh,
                        latents=state["latents"].numpy(), config=cfg, epoch=int(state["epoch"]),
                        pixel_size_A=float(state["pixel_size_A"]), prep=prep,
                        checkpoint=Path(checkpoint), mesh_path=path)
