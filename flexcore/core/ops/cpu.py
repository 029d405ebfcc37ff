"""Native CPU backend of the push + splat projection (C++ in ``csrc/``; see ``design.md``).

* :func:`load_extension` builds ``csrc/splat_cpu.cpp`` + ``csrc/bindings_cpu.cpp`` once with
  :func:`torch.utils.cpp_extension.load` into :func:`build_directory` (later processes only
  load it) and returns the module, or ``None`` with one warning line when it cannot be built
  or loaded; it never raises. Processes that load it at the same time take turns on a lock
  file, so one builds and the others load its result.
* :class:`SplatProjectCPUFunction` is the ``torch.autograd.Function`` over the kernels;
  :func:`splat_project_cpu` has the signature of
  :func:`~flexcore.core.ops.reference.splat_project_reference`.

The kernels run on torch's intra-op threads (``torch.get_num_threads()``) and compute in
float32. ``python -m flexcore.core.ops.cpu --build`` builds the extension ahead of time (the
set-up script does) and says which instruction set it uses.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import shutil
import sys
import sysconfig
import traceback
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from ..utils.logging import get_logger
from .geometry import VoxelGeometry

__all__ = ["SplatProjectCPUFunction", "build_directory", "load_extension", "splat_project_cpu"]

log = get_logger("flexcore.ops.cpu")

CSRC = Path(__file__).resolve().with_name("csrc")
SOURCES = ("splat_cpu.cpp", "gridding_cpu.cpp", "rigidity_cpu.cpp", "bindings_cpu.cpp")
NAME = "flexcore_splat_cpu"

_EXTENSION = None
_EXTENSION_TRIED = False


# -fopenmp: at::parallel_for is inline and needs _OPENMP to run in parallel; the extension
# then shares torch's already-loaded libgomp.so.1 (same soname), so one thread pool and
# torch.set_num_threads apply.
CFLAGS = ("-O3", "-fopenmp")
LDFLAGS = ("-fopenmp",)


def source_hash() -> str:
    """Short hash of the CPU kernel's sources and build flags: checkouts with different
    sources build into different folders (sharing one would rebuild at every switch between
    them), and a folder's library is known to be built from exactly these."""
    digest = hashlib.sha256(" ".join(CFLAGS + LDFLAGS).encode() + b"\0")
    for name in sorted(CSRC.glob("*cpu*")):
        digest.update(name.name.encode() + b"\0" + name.read_bytes())
    return digest.hexdigest()[:12]


def build_directory() -> Path:
    """Where the build goes: ``$FLEXCORE_BUILD_DIR/cpu-<sources>``, else
    ``~/.cache/flexcore/torch-<version>-<python ABI>-<machine>-cpu-<sources>``, ``<sources>``
    being :func:`source_hash`."""
    env = os.environ.get("FLEXCORE_BUILD_DIR")
    if env:
        return Path(env).expanduser() / f"cpu-{source_hash()}"
    abi = sysconfig.get_config_var("SOABI") or "py{}{}".format(*sys.version_info[:2])
    tag = f"torch-{torch.__version__}-{abi}-{platform.machine()}-cpu-{source_hash()}"
    return Path.home() / ".cache" / "flexcore" / tag.replace("+", "_")


@contextlib.contextmanager
def _build_lock(build_dir: Path):
    """Exclusive lock on ``build_dir/flexcore.lock`` for one load (released when the process
    dies, unlike torch's own ``lock`` file, which a killed build leaves behind: holding this
    lock, such a file is known to be stale and is removed)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: rely on torch's own lock file
        yield
        return
    with open(build_dir / "flexcore.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            stale = build_dir / "lock"
            if stale.exists():
                stale.unlink()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _ninja_on_path():
    """torch runs ``ninja`` from PATH; the ``ninja`` package's binary sits in the virtual
    environment, which is not on PATH unless it is activated."""
    old = os.environ.get("PATH", "")
    if shutil.which("ninja") is None:
        try:
            import ninja

            os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, old])
        except ImportError:
            pass
    try:
        yield
    finally:
        os.environ["PATH"] = old


def _import_built(library: Path):
    """The extension module from an already built library (what torch's ``load`` does last)."""
    spec = importlib.util.spec_from_file_location(NAME, library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build():
    build_dir = build_directory()
    build_dir.mkdir(parents=True, exist_ok=True)
    library = build_dir / f"{NAME}{importlib.machinery.EXTENSION_SUFFIXES[-1]}"
    with _build_lock(build_dir):
        # The folder is named by the sources, flags, torch and Python: a library in it is
        # this build, whichever checkout made it. Importing it directly skips torch's
        # ``load`` (0.3-0.5 s of setuptools import and a ninja run in every process) and the
        # rebuild ``load`` starts when another checkout's paths wrote build.ninja. A library
        # that does not import (a build killed while linking) is built again below, and
        # FLEXCORE_BUILD_VERBOSE=1 always goes through ``load`` so that its log is shown.
        if library.is_file() and os.environ.get("FLEXCORE_BUILD_VERBOSE", "") != "1":
            try:
                return _import_built(library)
            except ImportError as exc:
                log.debug("rebuilding the CPU kernels: %s did not import (%s)", library, exc)
        from torch.utils.cpp_extension import load

        # ninja follows the headers through the compiler's dependency files
        with _ninja_on_path():
            return load(
                name=NAME,
                sources=[str(CSRC / s) for s in SOURCES],
                extra_cflags=list(CFLAGS),
                extra_ldflags=list(LDFLAGS),
                build_directory=str(build_dir),
                verbose=os.environ.get("FLEXCORE_BUILD_VERBOSE", "") == "1",
            )


def load_extension():
    """The compiled CPU kernels' module, or ``None`` (one warning) when they are unavailable.

    The result, module or ``None``, is cached for the process.
    """
    global _EXTENSION, _EXTENSION_TRIED
    if _EXTENSION_TRIED:
        return _EXTENSION
    _EXTENSION_TRIED = True
    try:
        _EXTENSION = _build()
    except Exception as exc:  # any build or load failure means "use the reference"
        detail = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {detail[0] if detail else ''}"
        try:
            err = build_directory() / "last_build_error.txt"
            err.parent.mkdir(parents=True, exist_ok=True)
            err.write_text(traceback.format_exc())
            reason += f" (full log: {err})"
        except OSError:
            pass
        log.warning("native CPU splat kernels unavailable (%s); using the PyTorch reference",
                    reason)
    return _EXTENSION


def _require_extension():
    ext = load_extension()
    if ext is None:
        raise RuntimeError("the native CPU splat extension is unavailable (see the warning above)")
    return ext


class SplatProjectCPUFunction(torch.autograd.Function):
    """Autograd wrapper of the CPU kernels; gradients for ``density`` and ``displacements``
    (none for the geometry or the rotations; no double backward)."""

    @staticmethod
    def forward(ctx, density, coords, vertex_index, barycentric, displacements, rotations,
                image_size):
        ext = _require_extension()
        f32 = dict(dtype=torch.float32)
        dens = density.detach().to(**f32).contiguous()
        xyz = coords.detach().to(**f32).contiguous()
        vidx = vertex_index.to(torch.int32).contiguous()
        bary = barycentric.detach().to(**f32).contiguous()
        disp = None if displacements is None else displacements.detach().to(**f32).contiguous()
        rot = rotations.detach().to(**f32).contiguous()
        out = ext.forward(dens, xyz, vidx, bary, disp, rot, int(image_size))
        ctx.save_for_backward(dens, xyz, vidx, bary, disp, rot)
        ctx.image_size = int(image_size)
        ctx.dtypes = (density.dtype, None if displacements is None else displacements.dtype)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        dens, xyz, vidx, bary, disp, rot = ctx.saved_tensors
        need_gd = bool(ctx.needs_input_grad[0])
        need_gp = bool(ctx.needs_input_grad[4]) and disp is not None
        grad_density = grad_disp = None
        if need_gd or need_gp:
            gd, gp = _require_extension().backward(
                grad_out.to(torch.float32).contiguous(), dens, xyz, vidx, bary, disp, rot,
                ctx.image_size, need_gd, need_gp)
            if need_gd:
                grad_density = gd.to(ctx.dtypes[0])
            if need_gp:
                grad_disp = gp.to(ctx.dtypes[1])
        return grad_density, None, None, None, grad_disp, None, None


def splat_project_cpu(
    density: torch.Tensor,
    geometry: VoxelGeometry,
    displacements: torch.Tensor | None,
    rotations: torch.Tensor,
    image_size: int,
) -> torch.Tensor:
    """Native CPU push + splat projection; arguments and result as
    :func:`~flexcore.core.ops.reference.splat_project_reference` (float32 ``(B, D, D)``).

    Inputs must be CPU tensors (validated by :func:`flexcore.core.ops.splat_project`); they
    are converted to float32 / int32 contiguous tensors here.
    """
    return SplatProjectCPUFunction.apply(density, geometry.coords, geometry.vertex_index,
                                         geometry.barycentric, displacements, rotations,
                                         int(image_size))


class RigidityCPUFunction(torch.autograd.Function):
    """Autograd wrapper of the CPU rigidity kernel: the forward also forms the per-image
    gradient in the displacements (one pass over the cells), the backward scales it."""

    @staticmethod
    def forward(ctx, points, cells, edges_inv, weights, displacements, iterations):
        need = bool(ctx.needs_input_grad[4])
        pen, grad = _require_extension().rigidity_penalty(
            points.detach().contiguous(), cells.to(torch.int64).contiguous(),
            edges_inv.detach().contiguous(), weights.detach().contiguous(),
            displacements.detach().contiguous(), need, int(iterations))
        ctx.save_for_backward(grad)
        return pen

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        if not ctx.needs_input_grad[4]:
            return None, None, None, None, None, None
        return None, None, None, None, grad * grad_out.view(-1, 1, 1), None


def rigidity_penalty_cpu(points, cells, edges_inv, weights, displacements,
                         iterations: int = 12) -> torch.Tensor:
    """Native :func:`flexcore.core.model.priors.rigidity_penalty` for float32 CPU tensors
    (gradient for ``displacements`` only)."""
    return RigidityCPUFunction.apply(points, cells, edges_inv, weights, displacements,
                                     iterations)


@torch.no_grad()
def splat_project_cpu_rows(density, geometry, displacements, displacement_rows, rotations,
                           image_size: int) -> torch.Tensor:
    """Forward only (no gradients): image ``b`` moves by
    ``displacements[displacement_rows[b]]``, read from the ``(R, Nv, 3)`` table in place
    (validated by :func:`flexcore.core.ops.splat_project`)."""
    f32 = dict(dtype=torch.float32)
    return _require_extension().forward(
        density.detach().to(**f32).contiguous(), geometry.coords.detach().to(**f32).contiguous(),
        geometry.vertex_index.to(torch.int32).contiguous(),
        geometry.barycentric.detach().to(**f32).contiguous(),
        displacements.detach().to(**f32).contiguous(), rotations.detach().to(**f32).contiguous(),
        int(image_size), displacement_rows.to(torch.int64).contiguous())


def main(argv=None) -> int:
    """``python -m flexcore.core.ops.cpu --build``: build (or find) the extension, say where."""
    ap = argparse.ArgumentParser(prog="python -m flexcore.core.ops.cpu",
                                 description="Build the native CPU splat kernels ahead of time.")
    ap.add_argument("--build", action="store_true", help="build (or load) the extension")
    args = ap.parse_args(argv)
    if not args.build:
        ap.print_help()
        return 2
    ext = load_extension()
    if ext is None:
        print("flexcore: native CPU splat kernels NOT built; the PyTorch reference will be used "
              f"(details: {build_directory() / 'last_build_error.txt'})", file=sys.stderr)
        return 1
    print(f"flexcore: native CPU splat kernels ready ({ext.isa()}) in {build_directory()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
