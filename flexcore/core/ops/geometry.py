"""Where the operator's voxels sit: positions, their tetrahedra and barycentric weights.

One :class:`VoxelGeometry` describes the mask voxels of a mesh on one box. Every operator of
this package (push + splat projection, its CUDA kernel, the pull variant, volume splatting)
takes it instead of loose tensors; :meth:`flexcore.core.mesh.TetMesh.voxel_tensors` builds it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch


def voxel_coordinates(box: int, voxel_index: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(x, y, z)`` positions (voxels from the centre ``box // 2``) of linear ``[z, y, x]``
    indices, ``(M, 3)`` float32."""
    idx = torch.as_tensor(np.asarray(voxel_index), dtype=torch.int64)
    c = box // 2
    z = idx // (box * box)
    y = (idx // box) % box
    x = idx % box
    return torch.stack([x - c, y - c, z - c], dim=1).to(torch.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class VoxelGeometry:
    """Mask voxels of a tetrahedral mesh, ready for the operators.

    Attributes
    ----------
    coords : ``(M, 3)`` rest positions ``(x, y, z)`` in voxels relative to the box centre.
    vertex_index : ``(M, 4)`` integer vertex indices of each voxel's tetrahedron.
    barycentric : ``(M, 4)`` barycentric weights of each voxel centre in its tetrahedron.
    voxel_index : ``(M,)`` int64 linear indices into the flattened ``[z, y, x]`` box (None
        when the geometry is not tied to a grid, e.g. in operator tests).
    box : edge of the grid ``voxel_index`` refers to (None with ``voxel_index``).

    Rows are sorted by tetrahedron (runs of equal ``vertex_index``), as the CUDA kernel's
    piece layout expects; the operators accept any order.
    """

    coords: torch.Tensor
    vertex_index: torch.Tensor
    barycentric: torch.Tensor
    voxel_index: torch.Tensor | None = None
    box: int | None = None

    @classmethod
    def from_arrays(cls, voxel_data: dict, box: int, device=None) -> VoxelGeometry:
        """From :meth:`flexcore.core.mesh.TetMesh.voxel_data` (numpy) onto ``device``."""
        def t(name):
            return torch.as_tensor(voxel_data[name], device=device)

        return cls(t("coords"), t("vertex_index"), t("barycentric"), t("voxel_index"), int(box))

    @classmethod
    def rigid(cls, voxel_index: torch.Tensor, box: int) -> VoxelGeometry:
        """Voxels ``voxel_index`` of a ``box``³ grid with no mesh (every voxel tied to vertex
        0 with zero weight): the operators then project them rigidly."""
        idx = torch.as_tensor(voxel_index, dtype=torch.int64)
        m, dev = idx.numel(), idx.device
        return cls(voxel_coordinates(box, idx.cpu()).to(dev),
                   torch.zeros((m, 4), dtype=torch.int32, device=dev),
                   torch.zeros((m, 4), dtype=torch.float32, device=dev), idx, int(box))

    @property
    def n_voxels(self) -> int:
        return int(self.coords.shape[0])

    @property
    def device(self) -> torch.device:
        return self.coords.device

    def to(self, device=None, dtype: torch.dtype | None = None) -> VoxelGeometry:
        """On ``device``; ``dtype`` (if given) for ``coords`` and ``barycentric``."""
        def move(x, floating):
            if x is None:
                return None
            return x.to(device=device, dtype=dtype if floating and dtype is not None else x.dtype)

        return dataclasses.replace(self, coords=move(self.coords, True),
                                   vertex_index=move(self.vertex_index, False),
                                   barycentric=move(self.barycentric, True),
                                   voxel_index=move(self.voxel_index, False))

    def gather(self, volume: torch.Tensor) -> torch.Tensor:
        """Values ``(M,)`` of a ``(box, box, box)`` map at the voxels."""
        return volume.flatten()[self._index()]

    def scatter(self, values: torch.Tensor) -> torch.Tensor:
        """A ``(box, box, box)`` ``[z, y, x]`` map holding ``values (M,)`` at the voxels and
        zero elsewhere."""
        idx = self._index()
        vol = torch.zeros(self.box**3, dtype=values.dtype, device=values.device)
        vol[idx] = values
        return vol.view(self.box, self.box, self.box)

    def _index(self) -> torch.Tensor:
        if self.voxel_index is None or self.box is None:
            raise ValueError("this VoxelGeometry has no voxel_index/box (not built from a mesh)")
        return self.voxel_index
