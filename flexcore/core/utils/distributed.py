"""Data parallelism on ``torch.distributed``: one process (*rank*) per GPU, started by torchrun.

``torchrun`` (``python -m torch.distributed.run``) starts the ranks and gives each the
environment ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``
and ``MASTER_PORT``. :func:`process_group` joins them (backend ``nccl`` when the rank
computes on CUDA, ``gloo`` on the CPU); the other helpers are what training and
reconstruction share: who am I, sums over ranks, rows of every rank put back in particle
order, and "rank 0 only" sections whose errors reach every rank.

Without torchrun's environment nothing is initialised and every helper is the identity
(a sum over one rank is the value itself), so a single process computes exactly what it
computed before these helpers existed. Collectives must be called by every rank in the
same order; the callers keep the number of calls independent of each rank's data.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist

from ..errors import ConfigError, OtherRankError  # noqa: F401 (OtherRankError re-exported)
from .logging import get_logger

log = get_logger("flexcore.distributed")
# How long a rank waits in a collective: rank 0 alone hashes the inputs at the start and
# exports the latents at the end, minutes for millions of particles (the backends' defaults
# are 10 min for nccl, 30 for gloo); a rank that fails makes torchrun stop the others.
TIMEOUT = datetime.timedelta(minutes=60)


def launched() -> bool:
    """True when this process was started by torchrun (``WORLD_SIZE`` and ``RANK`` set)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def is_distributed() -> bool:
    """True while a process group is initialised (any number of ranks, also one)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0, the rank that prepares and writes outputs."""
    return rank() == 0


def local_rank() -> int:
    """Rank on this node (torchrun's ``LOCAL_RANK``; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if launched() else 0


def ranks_on_node() -> int:
    """Ranks sharing this node's memory (torchrun's ``LOCAL_WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if launched() else 1


def resolve_device(name: str, key: str) -> torch.device:
    """The device this process computes on, for a configured ``name`` (``auto``, ``cpu``,
    ``cuda``, ``cuda:N``; ``key`` names the setting in messages).

    Without torchrun: ``auto`` is CUDA when available, else the CPU. Under torchrun every
    rank takes the GPU of its ``LOCAL_RANK`` (``auto`` or ``cuda``); ``cuda:N`` is refused
    when more than one rank runs, since all would share one GPU.
    """
    cuda = torch.cuda.is_available()
    if str(name).startswith("cuda") and not cuda:
        raise ConfigError(f"{key} = {name!r} but no CUDA device is available")
    if name == "cpu" or (name == "auto" and not cuda):
        return torch.device("cpu")
    if not launched():
        return torch.device("cuda" if name == "auto" else name)
    world = int(os.environ["WORLD_SIZE"])
    if name not in ("auto", "cuda"):
        if world > 1:
            raise ConfigError(f"{key} = {name!r}: with {world} ranks each rank uses the GPU of "
                              "its LOCAL_RANK; set it to auto or cuda")
        return torch.device(name)
    index = local_rank()
    if index >= torch.cuda.device_count():
        raise ConfigError(f"{key}: {ranks_on_node()} ranks run on this node but only "
                          f"{torch.cuda.device_count()} GPU(s) are visible; start at most one "
                          "rank per GPU (torchrun --nproc-per-node)")
    return torch.device("cuda", index)


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join torchrun's ranks for the duration of the block (``nccl`` for a CUDA ``device``,
    ``gloo`` for the CPU), and leave again at the end.

    Does nothing without torchrun's environment or when a process group already exists
    (then its owner ends it). On ranks other than 0 the package logs only warnings and
    errors, each line marked with the rank.
    """
    if not launched() or is_distributed():
        yield
        return
    device = torch.device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=TIMEOUT)
    logger = logging.getLogger("flexcore")
    level, formats = logger.level, [h.formatter for h in logger.handlers]
    if world_size() > 1:
        for h in logger.handlers:
            h.setFormatter(logging.Formatter(
                f"%(asctime)s %(levelname)s [%(name)s, rank {rank()}] %(message)s", "%H:%M:%S"))
        if rank() != 0:
            logger.setLevel(logging.WARNING)
    log.info("rank %d of %d joined (%s backend, device %s)", rank(), world_size(), backend,
             device)
    try:
        yield
    finally:
        logger.setLevel(level)
        for h, f in zip(logger.handlers, formats):
            h.setFormatter(f)
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """Where tensors must be for the backend: the current GPU for nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Sum of ``tensor`` over ranks, as a new tensor of ``tensor``'s device and dtype
    (accumulated in ``dtype``, e.g. ``torch.float64``, when given). Without a process group
    returns ``tensor`` itself."""
    if not is_distributed():
        return tensor
    buf = tensor.detach().to(_comm_device(), dtype or tensor.dtype, copy=True)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(tensor.device, tensor.dtype)


def all_reduce_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (in its own dtype, no second copy where the
    backend can read it: large accumulators); return it."""
    if not is_distributed():
        return tensor
    if tensor.device == _comm_device():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor
    buf = tensor.to(_comm_device())
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    tensor.copy_(buf)
    return tensor


def sum_floats(*values: float) -> tuple[float, ...]:
    """Sums over ranks of Python numbers, in float64 (one collective for all of them)."""
    if not is_distributed():
        return tuple(float(v) for v in values)
    t = all_reduce_sum(torch.tensor(values, dtype=torch.float64))
    return tuple(float(v) for v in t)


def max_int(value: int) -> int:
    """Largest ``value`` over ranks."""
    if not is_distributed():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def per_rank(value: int) -> np.ndarray:
    """``(world_size,)`` integers: ``value`` of every rank, by rank."""
    counts = torch.zeros(world_size(), dtype=torch.int64)
    counts[rank()] = int(value)
    return all_reduce_sum(counts).numpy()


def all_reduce_grads(params: list[torch.Tensor]) -> None:
    """Replace every parameter's ``.grad`` by the sum over ranks (one flat buffer; a
    parameter without a gradient on this rank counts as zero and gets one)."""
    if not is_distributed():
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in params])
    flat = all_reduce_sum(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` (in place) with rank ``src``'s values; return it."""
    if not is_distributed():
        return tensor
    buf = tensor.detach().to(_comm_device(), copy=True)
    dist.broadcast(buf, src=src)
    with torch.no_grad():
        tensor.copy_(buf.to(tensor.device))
    return tensor


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` (picklable) on every rank."""
    if not is_distributed():
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def barrier() -> None:
    """Wait until every rank gets here."""
    if is_distributed():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def assemble_rows(values, rows: np.ndarray, n_total: int) -> torch.Tensor:
    """Every rank's rows in particle order, on every rank.

    Parameters
    ----------
    values : ``(n_local, ...)`` tensor (or array): this rank's rows.
    rows : ``(n_local,)`` their indices in ``0 … n_total−1``; over all ranks every index
        appears exactly once (checked).
    n_total : number of rows of the result.

    Returns ``(n_total, ...)`` on the CPU with ``values``' dtype: each row is copied from
    the rank that holds it (the sum with the other ranks' zeros is exact). A single process
    holding every row in order gets ``values`` back.
    """
    values = torch.as_tensor(values).detach().cpu()
    rows = np.asarray(rows, dtype=np.int64)
    if not is_distributed() and np.array_equal(rows, np.arange(n_total)):
        return values
    out = torch.zeros((n_total, *values.shape[1:]), dtype=values.dtype)
    out[torch.from_numpy(rows)] = values
    if not is_distributed():
        return out
    count = torch.zeros(n_total, dtype=torch.int32)
    count[torch.from_numpy(rows)] = 1
    count = all_reduce_sum(count)
    if not bool((count == 1).all()):
        raise RuntimeError(f"assemble_rows: {int((count != 1).sum())} of {n_total} rows are held "
                           "by no rank or by several")
    return all_reduce_sum(out)


def shard_rows(n_total: int, seed: int, world: int | None = None, index: int | None = None
               ) -> np.ndarray:
    """The rows (sorted) rank ``index`` of ``world`` owns: position ``j`` of a permutation
    seeded by ``seed`` goes to rank ``j mod world``. The shards are disjoint, cover every
    row and differ in size by at most one; one rank owns everything."""
    world = world_size() if world is None else world
    index = rank() if index is None else index
    if world == 1:
        return np.arange(n_total)
    perm = np.random.default_rng([seed, 0x5EED]).permutation(n_total)
    return np.sort(perm[index::world])


def share(count: int, world: int | None = None, index: int | None = None) -> int:
    """Rank ``index``'s part of ``count`` items split as evenly as possible over ``world``
    ranks (the parts sum to ``count``; lower ranks get the remainder)."""
    world = world_size() if world is None else world
    index = rank() if index is None else index
    return count // world + (1 if index < count % world else 0)


def contiguous_block(items: np.ndarray, world: int | None = None,
                     index: int | None = None) -> np.ndarray:
    """Rank ``index``'s contiguous block of ``items`` (blocks in rank order, sizes by
    :func:`share`)."""
    world = world_size() if world is None else world
    index = rank() if index is None else index
    start = sum(share(len(items), world, r) for r in range(index))
    return items[start:start + share(len(items), world, index)]


def on_main_rank(fn: Callable, *args, **kwargs):
    """Run ``fn`` on rank 0 only and return its (picklable) result on every rank.

    A :class:`~flexcore.core.errors.FlexcoreError` (or any other exception) on rank 0 is raised
    there and, as :class:`OtherRankError`, on every other rank, so no rank waits for one
    that has stopped.
    """
    if not is_distributed():
        return fn(*args, **kwargs)
    if rank() == 0:
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            broadcast_object(("error", str(exc) or type(exc).__name__))
            raise
        broadcast_object(("ok", result))
        return result
    status, payload = broadcast_object(None)
    if status == "error":
        raise OtherRankError(f"rank 0 stopped: {payload}")
    return payload
