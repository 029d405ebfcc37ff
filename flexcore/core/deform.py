"""Convect a map under a trained model's flow: the deformer that generate, state maps and the
evaluations share (push-splat of the masked density, mesh upscaled to the map's box)."""

from __future__ import annotations

import numpy as np
import torch

from .ops import splat_volume
from .trained import TrainedModel


class VolumeDeformer:
    """Convects a map on some box under the model's flow (mesh upscaled to that box).

    The map times the (upscaled) soft mask moves; ``keep_outside`` keeps the rest in place.
    ``mesh`` is the model's mesh already upscaled to the map's box (to share one upscaling
    between several maps); by default it is upscaled here.
    """

    def __init__(self, model: TrainedModel, volume: torch.Tensor, pixel_size_A: float,
                 supersample: int, device, keep_outside: bool = True, mesh=None):
        self.model = model
        self.box = int(volume.shape[-1])
        self.scale = self.box / model.box
        if mesh is None:
            mesh = model.mesh if self.box == model.box else model.mesh.upscale(self.box)
        elif mesh.box != self.box:
            raise ValueError(f"mesh is for box {mesh.box}, the map is {self.box}")
        self.geometry = geo = mesh.voxel_tensors(device)
        soft = geo.gather(torch.as_tensor(mesh.mask_soft, device=device, dtype=torch.float32))
        flat = volume.to(device).flatten()
        inside = geo.gather(flat)
        self.density = inside * soft
        # with ``keep_outside`` (a user's map) what lies outside the soft mask stays where it
        # is; the canonical map has no meaning there, so it is left out
        if keep_outside:
            static = flat.clone()
            static[geo.voxel_index] = inside * (1 - soft)
        else:
            static = torch.zeros_like(flat)
        self.static = static.view(volume.shape)
        self.supersample = supersample
        self.device = device

    @torch.no_grad()
    def frame(self, z: np.ndarray) -> np.ndarray:
        disp = self.model.displacements(z[None], device=self.device)[0] * self.scale
        moved = splat_volume(self.density, self.geometry, disp, self.box,
                             supersample=self.supersample)
        return (moved + self.static).cpu().numpy()
