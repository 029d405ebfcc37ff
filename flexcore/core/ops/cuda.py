"""CUDA backend of the push + splat projection (layer 2 of the op; see ``design.md``).

* :func:`load_extension` imports the install-time module ``flexcore._splat_cuda`` or builds
  ``csrc/`` with :func:`torch.utils.cpp_extension.load`; it returns ``None`` (one warning line
  says why) when CUDA or the toolkit is missing or the build fails, and never raises.
* :func:`build_slot_layout` groups the voxels into *pieces* (runs of at most ``piece_len``
  voxels of one tetrahedron) and lays them out tile-major for the kernels.
* :class:`SplatProjectFunction` is the ``torch.autograd.Function`` calling the kernels;
  :func:`splat_project_cuda` has the signature of
  :func:`~flexcore.core.ops.reference.splat_project_reference` plus tuning keywords.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import traceback
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from ..utils.logging import get_logger
from .geometry import VoxelGeometry

__all__ = [
    "SplatTuning", "SlotLayout", "SplatProjectFunction", "build_slot_layout", "build_directory",
    "clear_layout_cache", "launch_plan", "load_extension", "splat_project_cuda",
]

log = get_logger("flexcore.ops.cuda")

CSRC = Path(__file__).resolve().with_name("csrc")
SOURCES = ("splat.cu", "bindings.cpp")
PATHS = {"auto": 0, "shared": 1, "global": 2, "fixed": 3}
PIECE_LENGTHS = (1, 2, 4, 8, 16, 32)
LANES = 32  # pieces per tile: one per lane of a warp

_EXTENSION = None
_EXTENSION_TRIED = False


def build_directory() -> Path:
    """Where the JIT build goes: ``$FLEXCORE_BUILD_DIR`` or ``~/.cache/flexcore/<torch, cuda>``."""
    env = os.environ.get("FLEXCORE_BUILD_DIR")
    if env:
        return Path(env).expanduser()
    tag = f"torch-{torch.__version__}-cuda-{torch.version.cuda}".replace("+", "_")
    return Path.home() / ".cache" / "flexcore" / tag


def _build():
    from torch.utils.cpp_extension import load

    build_dir = build_directory()
    build_dir.mkdir(parents=True, exist_ok=True)
    # No --use_fast_math: the kernels use no division, sqrt or transcendental functions, so it
    # would only flush denormals; plain IEEE float keeps the comparison with the reference clean.
    return load(
        name="flexcore_splat_cuda",
        sources=[str(CSRC / s) for s in SOURCES],
        extra_cflags=["-O3"],
        extra_cuda_cflags=["-O3", "-lineinfo"],
        build_directory=str(build_dir),
        verbose=os.environ.get("FLEXCORE_BUILD_VERBOSE", "") == "1",
    )


def load_extension():
    """The compiled kernels' module, or ``None`` (logged once) when they are unavailable.

    Tries the install-time build ``flexcore._splat_cuda`` first, then a JIT build of
    ``csrc/`` (cached in :func:`build_directory`). The result, module or ``None``, is cached.
    """
    global _EXTENSION, _EXTENSION_TRIED
    if _EXTENSION_TRIED:
        return _EXTENSION
    _EXTENSION_TRIED = True
    try:
        from ... import _splat_cuda  # type: ignore[attr-defined]

        _EXTENSION = _splat_cuda
        return _EXTENSION
    except (ImportError, OSError):
        pass
    reason = None
    if not torch.cuda.is_available():
        reason = "torch.cuda.is_available() is False"
    else:
        try:
            from torch.utils.cpp_extension import CUDA_HOME

            if CUDA_HOME is None:
                reason = "no CUDA toolkit found (set CUDA_HOME or put nvcc on PATH)"
            else:
                _EXTENSION = _build()
        except Exception as exc:  # any build failure means "use the reference"
            detail = str(exc).strip().splitlines()
            reason = f"build failed: {type(exc).__name__}: {detail[0] if detail else ''}"
            try:
                err = build_directory() / "last_build_error.txt"
                err.parent.mkdir(parents=True, exist_ok=True)
                err.write_text(traceback.format_exc())
                reason += f" (full log: {err})"
            except OSError:
                pass
    if _EXTENSION is None:
        log.warning("CUDA splat kernels unavailable (%s); using the PyTorch reference", reason)
    return _EXTENSION


@dataclasses.dataclass(frozen=True)
class SplatTuning:
    """Launch tuning; 0 / ``"auto"`` lets the launcher choose from the sizes and the device.

    images_per_block : images G splatted by one block per load of the voxel data (1-4).
    threads : threads per block (multiple of 32, at most 512).
    tiles_per_block : tiles (32 pieces each) in one block's voxel chunk.
    piece_len : most voxels per piece (a lane's run of one tetrahedron), one of 1..32.
    path : ``"shared"`` (images in shared memory), ``"global"`` (global atomics),
        ``"fixed"`` (shared memory; the forward adds 32-bit fixed-point integers with native
        shared atomics, see ``design.md``) or ``"auto"`` (``"shared"`` when a plane fits).
    """

    images_per_block: int = 0
    threads: int = 0
    tiles_per_block: int = 0
    piece_len: int = 0
    path: str = "auto"

    def launch_args(self) -> tuple[int, int, int, int]:
        if self.path not in PATHS:
            raise ValueError(f"path must be one of {sorted(PATHS)}, got {self.path!r}")
        return self.images_per_block, self.threads, self.tiles_per_block, PATHS[self.path]

    def check(self, image_size: int, device: torch.device) -> None:
        """Raise ``RuntimeError`` when no launch plan exists (mirrors ``splat_plan`` in
        ``csrc/splat.cu``), before the extension is called."""
        self.launch_args()
        max_g, max_threads = 4, 512
        problem = None
        if not 0 <= self.images_per_block <= max_g:
            problem = f"images_per_block must be 0..{max_g}"
        elif not (0 <= self.threads <= max_threads and self.threads % 32 == 0):
            problem = f"threads must be a multiple of 32 up to {max_threads}"
        elif self.tiles_per_block < 0:
            problem = "tiles_per_block must be >= 0"
        else:
            props = torch.cuda.get_device_properties(device)
            optin = int(getattr(props, "shared_memory_per_block_optin", 48 * 1024))
            g_fit = min(max_g, optin // ((image_size + 2) ** 2 * 4))
            planes = self.path in ("shared", "fixed")
            if planes and g_fit < 1:
                problem = f"a {image_size} px image does not fit in shared memory"
            elif planes or (self.path == "auto" and g_fit >= 1):
                if self.images_per_block > g_fit:
                    problem = (f"{self.images_per_block} images of {image_size} px do not fit "
                               f"in {optin} bytes of shared memory (at most {g_fit})")
        if problem:
            raise RuntimeError(f"flexcore splat: no launch plan for image_size={image_size}, "
                               f"{self}: {problem}")


@dataclasses.dataclass(frozen=True)
class SlotLayout:
    """Voxels regrouped for the kernels (see ``csrc/splat.h``).

    Piece ``p`` holds at most ``piece_len`` consecutive voxels with equal vertex indices; lane
    ``p % 32`` of tile ``p // 32`` handles it; voxel ``i`` of the piece sits at slot
    ``(p // 32) * 32 * piece_len + i * 32 + p % 32``.
    """

    piece_len: int
    n_tiles: int
    slot_src: torch.Tensor    # (n_slots,) int64: voxel feeding each slot; M for padding
    voxel_slot: torch.Tensor  # (M,) int64: slot of each voxel
    piece_vidx: torch.Tensor  # (n_tiles * 32, 4) int32: vertex indices per piece (0: padding)
    vertex_min: int
    vertex_max: int

    @property
    def n_slots(self) -> int:
        return self.n_tiles * LANES * self.piece_len


def choose_piece_len(run_lengths: torch.Tensor) -> int:
    """Piece length minimising a cost model in voxel steps: each real voxel 1, each padding
    slot 0.25 (loaded and rejected), each piece 1.5 (its gradient flush: segmented warp
    reduction and atomics). The benchmark's sweep checks the choice."""
    if run_lengths.numel() == 0:
        return 1
    m = float(run_lengths.sum())
    slots = torch.stack([((run_lengths + r - 1) // r).sum() * r for r in PIECE_LENGTHS]).tolist()
    costs = [m + 0.25 * (s - m) + 1.5 * s / r for s, r in zip(slots, PIECE_LENGTHS)]
    return PIECE_LENGTHS[min(range(len(costs)), key=costs.__getitem__)]


def build_slot_layout(vertex_index: torch.Tensor, piece_len: int = 0) -> SlotLayout:
    """Group voxels into pieces of one tetrahedron and lay them out for the kernels.

    Correct for any order of voxels; voxels sorted by tetrahedron give long runs, hence few
    padding slots and few gradient flushes. ``piece_len`` 0 chooses from the run lengths.
    """
    if piece_len < 0 or piece_len > 1024:
        raise ValueError(f"piece_len must be in [0, 1024], got {piece_len}")
    vi = vertex_index.to(torch.int32).contiguous()
    m = vi.shape[0]
    dev = vi.device
    long = dict(dtype=torch.int64, device=dev)
    if m == 0:
        return SlotLayout(max(piece_len, 1), 0, torch.zeros(0, **long), torch.zeros(0, **long),
                          torch.zeros((0, 4), dtype=torch.int32, device=dev), 0, -1)
    head = torch.ones(m, dtype=torch.bool, device=dev)
    if m > 1:
        head[1:] = (vi[1:] != vi[:-1]).any(dim=1)
    run_start = torch.nonzero(head).squeeze(1)
    run_len = torch.diff(run_start, append=torch.tensor([m], **long))
    r = choose_piece_len(run_len) if piece_len == 0 else int(piece_len)
    pieces_per_run = (run_len + r - 1) // r
    piece_base = torch.cumsum(pieces_per_run, 0) - pieces_per_run
    n_pieces, vmin, vmax = torch.stack(
        [pieces_per_run.sum(), vi.min().long(), vi.max().long()]).tolist()
    run_id = torch.cumsum(head.long(), 0) - 1
    pos = torch.arange(m, **long) - run_start[run_id]
    piece = piece_base[run_id] + torch.div(pos, r, rounding_mode="floor")
    step = pos - torch.div(pos, r, rounding_mode="floor") * r
    n_tiles = (n_pieces + LANES - 1) // LANES
    voxel_slot = (piece // LANES) * (LANES * r) + step * LANES + piece % LANES
    slot_src = torch.full((n_tiles * LANES * r,), m, **long)
    slot_src[voxel_slot] = torch.arange(m, **long)
    piece_vidx = torch.zeros((n_tiles * LANES, 4), dtype=torch.int32, device=dev)
    first = step == 0
    piece_vidx[piece[first]] = vi[first]
    return SlotLayout(r, n_tiles, slot_src, voxel_slot, piece_vidx, int(vmin), int(vmax))


@dataclasses.dataclass(frozen=True)
class _Geometry:
    layout: SlotLayout
    slot_xyz: torch.Tensor   # (n_slots, 4) float32: x, y, z (NaN for padding), 0
    slot_bary: torch.Tensor  # (n_slots, 4) float32 (0 for padding)


_CACHE_SIZE = 2
_GEOMETRY_CACHE: collections.OrderedDict = collections.OrderedDict()


def clear_layout_cache() -> None:
    """Drop the cached slot layouts (they hold device memory)."""
    _GEOMETRY_CACHE.clear()


def _identity(t: torch.Tensor):
    return (t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype, str(t.device), t._version)


def _geometry(coords, vertex_index, barycentric, piece_len: int) -> _Geometry:
    """Slot layout and the static per-slot data, cached while the inputs are unchanged (the
    cache keeps the tensors alive and checks their version counters)."""
    try:
        key = (_identity(coords), _identity(vertex_index), _identity(barycentric), piece_len)
    except RuntimeError:  # inference tensors have no version counter: do not cache
        key = None
    if key is not None and key in _GEOMETRY_CACHE:
        _GEOMETRY_CACHE.move_to_end(key)
        return _GEOMETRY_CACHE[key][1]
    layout = build_slot_layout(vertex_index, piece_len)
    m = coords.shape[0]
    xyz = torch.cat([coords.to(torch.float32), coords.new_zeros((m, 1), dtype=torch.float32)], 1)
    pad = torch.tensor([[float("nan")] * 3 + [0.0]], dtype=torch.float32, device=coords.device)
    slot_xyz = torch.cat([xyz, pad], 0).index_select(0, layout.slot_src).contiguous()
    bary = torch.cat([barycentric.to(torch.float32),
                      barycentric.new_zeros((1, 4), dtype=torch.float32)], 0)
    slot_bary = bary.index_select(0, layout.slot_src).contiguous()
    geo = _Geometry(layout, slot_xyz, slot_bary)
    if key is not None:
        _GEOMETRY_CACHE[key] = ((coords, vertex_index, barycentric), geo)
        while len(_GEOMETRY_CACHE) > _CACHE_SIZE:
            _GEOMETRY_CACHE.popitem(last=False)
    return geo


def _require_extension():
    ext = load_extension()
    if ext is None:
        raise RuntimeError("the CUDA splat extension is unavailable (see the warning above)")
    return ext


class SplatProjectFunction(torch.autograd.Function):
    """Autograd wrapper of the CUDA kernels; gradients for ``density`` and ``displacements``."""

    @staticmethod
    def forward(ctx, density, coords, vertex_index, barycentric, displacements, rotations,
                image_size, tuning):
        ext = _require_extension()
        tuning.check(int(image_size), coords.device)
        geo = _geometry(coords, vertex_index, barycentric, tuning.piece_len)
        layout = geo.layout
        disp = None
        if displacements is not None:
            nv = displacements.shape[1]
            if layout.n_tiles and (layout.vertex_min < 0 or layout.vertex_max >= nv):
                raise ValueError(f"vertex_index values must lie in [0, {nv}) for displacements "
                                 f"of {nv} vertices, got [{layout.vertex_min}, "
                                 f"{layout.vertex_max}]")
            disp = displacements.to(torch.float32).contiguous()
        rot = rotations.to(torch.float32).contiguous()
        slot_cd = geo.slot_xyz.clone()
        slot_cd.select(1, 3).index_copy_(0, layout.voxel_slot, density.to(torch.float32))
        out = ext.forward(slot_cd, geo.slot_bary, layout.piece_vidx, layout.piece_len, disp, rot,
                          int(image_size), *tuning.launch_args())
        ctx.save_for_backward(slot_cd, disp, rot)
        ctx.geo = geo
        ctx.image_size = int(image_size)
        ctx.tuning = tuning
        ctx.density_dtype = density.dtype
        ctx.disp_dtype = None if displacements is None else displacements.dtype
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        slot_cd, disp, rot = ctx.saved_tensors
        need_gd = bool(ctx.needs_input_grad[0])
        need_gp = bool(ctx.needs_input_grad[4]) and disp is not None
        grad_density = grad_disp = None
        if need_gd or need_gp:
            geo = ctx.geo
            grad_slot, grad_proj = _require_extension().backward(
                grad_out.to(torch.float32).contiguous(), slot_cd, geo.slot_bary,
                geo.layout.piece_vidx, geo.layout.piece_len, disp, rot, ctx.image_size,
                need_gd, need_gp, *ctx.tuning.launch_args())
            if need_gd:
                grad_density = grad_slot.index_select(0, geo.layout.voxel_slot)
                grad_density = grad_density.to(ctx.density_dtype)
            if need_gp:
                # d/d disp = A[:2]^T (d/d p), p = A[:2] disp (elementwise: no TF32 matmul)
                grad_disp = (grad_proj[..., 0:1] * rot[:, None, 0, :]
                             + grad_proj[..., 1:2] * rot[:, None, 1, :]).to(ctx.disp_dtype)
        return grad_density, None, None, None, grad_disp, None, None, None


def splat_project_cuda(
    density: torch.Tensor,
    geometry: VoxelGeometry,
    displacements: torch.Tensor | None,
    rotations: torch.Tensor,
    image_size: int,
    *,
    tuning: SplatTuning | None = None,
) -> torch.Tensor:
    """CUDA push + splat projection; arguments and result as
    :func:`~flexcore.core.ops.reference.splat_project_reference` (float32 ``(B, D, D)``).

    Inputs must be on one CUDA device (validated by :func:`flexcore.core.ops.splat_project`);
    they are converted to float32 / int32 contiguous tensors here.
    """
    tuning = tuning or SplatTuning()
    return SplatProjectFunction.apply(density, geometry.coords, geometry.vertex_index,
                                      geometry.barycentric, displacements, rotations,
                                      int(image_size), tuning)


def launch_plan(batch: int, image_size: int, n_tiles: int, piece_len: int, *, has_disp: bool,
                backward: bool = False, need_grad_density: bool = False,
                need_grad_displacements: bool = False, tuning: SplatTuning | None = None,
                device: int = 0) -> dict:
    """The launch configuration the kernels would use (for benchmarks and logs)."""
    tuning = tuning or SplatTuning()
    ext = _require_extension()
    tuning.check(image_size, torch.device("cuda", device))
    return ext.plan(batch, image_size, n_tiles, piece_len, has_disp, backward,
                                     need_grad_density, need_grad_displacements,
                                     *tuning.launch_args(), device)
