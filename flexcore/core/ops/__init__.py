"""Convection + projection: the hot path of training and reconstruction.

``splat_project`` validates its inputs and runs the CUDA kernel for CUDA tensors, the
native C++ kernel for float32 CPU tensors (float64 inputs, and inputs whose geometry or
rotations need gradients, keep the float64-capable reference), each when its extension
builds; otherwise the pure-PyTorch reference of the same signature.
``FLEXCORE_OPS_BACKEND=reference`` forces the reference everywhere; ``=cuda`` / ``=cpu``
make a missing CUDA / CPU extension an error instead of a fallback. The backend in use is
logged once per device.
"""

from __future__ import annotations

import os

import torch

from ..utils.logging import get_logger
from .geometry import VoxelGeometry, voxel_coordinates
from .pull import pull_project_reference
from .reference import interpolate_displacements, splat_project_reference
from .volume import splat_volume

__all__ = [
    "VoxelGeometry", "splat_project", "splat_project_reference", "pull_project_reference",
    "interpolate_displacements", "splat_volume", "backend_for", "voxel_coordinates",
]

_LOGGED: set[str] = set()
log = get_logger("flexcore.ops")


def backend_for(device: torch.device) -> str:
    """``"cuda"`` or ``"cpu"`` when that native kernel can run on ``device``, else
    ``"reference"`` (always with ``FLEXCORE_OPS_BACKEND=reference``)."""
    forced = os.environ.get("FLEXCORE_OPS_BACKEND", "").lower()
    device = torch.device(device)
    if forced == "reference" or device.type not in ("cuda", "cpu"):
        return "reference"
    if device.type == "cuda":
        from . import cuda as backend
    else:
        from . import cpu as backend
    if backend.load_extension() is None:
        if forced == device.type:
            raise RuntimeError(f"FLEXCORE_OPS_BACKEND={forced} but the {forced} splat extension "
                               "failed to build or load; see the warning above")
        return "reference"
    return device.type


def _native_cpu_takes(density, geometry, displacements, rotations) -> bool:
    """The CPU kernel computes in float32 and has no gradients for the geometry or the
    rotations: other inputs stay with the reference."""
    floats = [density, geometry.coords, geometry.barycentric, rotations]
    if displacements is not None:
        floats.append(displacements)
    return (all(t.dtype == torch.float32 for t in floats)
            and not any(t.requires_grad for t in (geometry.coords, geometry.barycentric, rotations)))


def _log_backend(name: str, device) -> None:
    key = f"{name}:{device}"
    if key not in _LOGGED:
        _LOGGED.add(key)
        log.info("convection+projection backend: %s on %s", name, device)


def _check_rows(displacements, displacement_rows, batch: int):
    """``displacement_rows``: integer ``(B,)`` indices into ``displacements``' rows."""
    if displacements is None:
        raise ValueError("displacement_rows needs displacements")
    r = displacement_rows
    if r.ndim != 1 or r.shape[0] != batch or r.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"displacement_rows must be integer (B,) with B = {batch}, got "
                         f"{tuple(r.shape)} {r.dtype}")
    if r.device != displacements.device:
        raise ValueError("displacement_rows must be on the displacements' device")
    if batch and (int(r.min()) < 0 or int(r.max()) >= displacements.shape[0]):
        raise ValueError(f"displacement_rows must lie in [0, {displacements.shape[0]})")


def _check(density, geometry, displacements, rotations, image_size):
    if not isinstance(geometry, VoxelGeometry):
        raise TypeError(f"geometry must be a VoxelGeometry, got {type(geometry).__name__}")
    coords, vertex_index, barycentric = geometry.coords, geometry.vertex_index, geometry.barycentric
    m = density.shape[0] if density.ndim == 1 else -1
    if density.ndim != 1:
        raise ValueError(f"density must be (M,), got {tuple(density.shape)}")
    if coords.shape != (m, 3):
        raise ValueError(f"coords must be (M, 3) = ({m}, 3), got {tuple(coords.shape)}")
    if vertex_index.shape != (m, 4) or vertex_index.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"vertex_index must be integer (M, 4), got {tuple(vertex_index.shape)} "
                         f"{vertex_index.dtype}")
    if barycentric.shape != (m, 4):
        raise ValueError(f"barycentric must be (M, 4), got {tuple(barycentric.shape)}")
    if rotations.ndim != 3 or rotations.shape[1:] != (3, 3):
        raise ValueError(f"rotations must be (B, 3, 3), got {tuple(rotations.shape)}")
    if displacements is not None:
        if displacements.ndim != 3 or displacements.shape[0] != rotations.shape[0] \
                or displacements.shape[2] != 3:
            raise ValueError(f"displacements must be (B, Nv, 3) with B = {rotations.shape[0]}, "
                             f"got {tuple(displacements.shape)}")
    if int(image_size) <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    devices = {t.device for t in (density, coords, vertex_index, barycentric, rotations)
               if t is not None}
    if displacements is not None:
        devices.add(displacements.device)
    if len(devices) != 1:
        raise ValueError(f"all inputs must be on one device, got {sorted(map(str, devices))}")


def splat_project(
    density: torch.Tensor,
    geometry: VoxelGeometry,
    displacements: torch.Tensor | None,
    rotations: torch.Tensor,
    image_size: int,
    displacement_rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Push + splat projection of mask-voxel densities under per-image vertex displacements.

    See :func:`~flexcore.core.ops.reference.splat_project_reference` for the arguments and the
    conventions; the result is ``(B, D, D)``, differentiable w.r.t. ``density`` and
    ``displacements``. With ``displacement_rows`` (integer ``(B,)``), image ``b`` moves by
    ``displacements[displacement_rows[b]]`` (a table of ``R`` rows shared by many images,
    e.g. latent-grid candidates): without gradients the CPU kernel reads the table in place;
    otherwise the rows are gathered first.
    """
    backend = backend_for(density.device)
    if displacement_rows is not None:
        _check_rows(displacements, displacement_rows, rotations.shape[0])
        grads = torch.is_grad_enabled() and any(
            t.requires_grad for t in (density, displacements, geometry.coords,
                                      geometry.barycentric, rotations))
        if backend == "cpu" and not grads and _native_cpu_takes(density, geometry,
                                                                displacements, rotations):
            _check(density, geometry, displacements[:1].expand(rotations.shape[0], -1, -1),
                   rotations, image_size)
            _log_backend(backend, density.device)
            from .cpu import splat_project_cpu_rows

            return splat_project_cpu_rows(density, geometry, displacements, displacement_rows,
                                          rotations, int(image_size))
        displacements = displacements[displacement_rows.long()]
    _check(density, geometry, displacements, rotations, image_size)
    if backend == "cpu" and not _native_cpu_takes(density, geometry, displacements, rotations):
        backend = "reference"
    _log_backend(backend, density.device)
    if backend == "cuda":
        from .cuda import splat_project_cuda

        return splat_project_cuda(density, geometry, displacements, rotations, int(image_size))
    if backend == "cpu":
        from .cpu import splat_project_cpu

        return splat_project_cpu(density, geometry, displacements, rotations, int(image_size))
    return splat_project_reference(density, geometry, displacements, rotations, int(image_size))
