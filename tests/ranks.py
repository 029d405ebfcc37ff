"""Running code on several ranks in tests: spawned gloo processes, or torchrun on the CLI.

Every child runs with one thread (``OMP_NUM_THREADS=1``) so two ranks fit two cores.
"""

from __future__ import annotations

import os
import subprocess

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from flexcore.core.utils.launch import torchrun_command

CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _worker(index: int, world: int, store: str, fn, args) -> None:
    os.environ.update(CHILD_ENV, RANK=str(index), WORLD_SIZE=str(world), LOCAL_RANK=str(index),
                      LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=index, world_size=world)
    try:
        fn(*args)
    finally:
        dist.destroy_process_group()


def spawn_ranks(fn, world: int, tmp_path, *args) -> None:
    """Run ``fn(*args)`` on ``world`` spawned processes joined by a gloo process group (a
    file store under ``tmp_path``, no port); an exception in any of them fails the test."""
    store = tmp_path / f"store_{fn.__name__}"
    mp.spawn(_worker, args=(world, str(store), fn, args), nprocs=world, join=True)


def torchrun_flexcore(nproc: int, args: list, log_path) -> subprocess.CompletedProcess:
    """``flexcore <args>`` on ``nproc`` ranks started by torchrun, output to ``log_path``."""
    env = {**os.environ, **CHILD_ENV}
    with open(log_path, "w") as log:
        return subprocess.run(torchrun_command(nproc, ["flexcore", *args]), stdout=log,
                              stderr=subprocess.STDOUT, env=env, timeout=1200, check=False)
