"""The flow generator ``f_θ``: latent ``z (K)`` → per-vertex displacements ``(Nv, 3)``."""

from __future__ import annotations

import torch
from torch import nn


class FlowGenerator(nn.Module):
    """MLP from a latent coordinate to mesh-vertex displacements.

    ``n_layers`` counts every linear layer (CryoSPARC's default "6 layers × 64 units" is
    read as 5 hidden ReLU layers of ``hidden_units`` units plus the output layer). The output layer
    starts near zero (weights × ``init_scale``, bias 0) so training starts from the rigid
    model. Displacements are in voxels of the training box, ``(x, y, z)``.
    """

    def __init__(self, latent_dim: int, n_vertices: int, hidden_units: int = 64, n_layers: int = 6,
                 init_scale: float = 1e-3):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if n_layers < 2:
            raise ValueError(f"n_layers must be >= 2 (hidden + output), got {n_layers}")
        self.latent_dim = latent_dim
        self.n_vertices = n_vertices
        layers: list[nn.Module] = []
        width = latent_dim
        for _ in range(n_layers - 1):
            layers += [nn.Linear(width, hidden_units), nn.ReLU()]
            width = hidden_units
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(width, 3 * n_vertices)
        with torch.no_grad():
            self.out.weight.mul_(init_scale)
            self.out.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, K)`` → displacements ``(B, Nv, 3)``."""
        return self.out(self.hidden(z)).view(z.shape[0], self.n_vertices, 3)
