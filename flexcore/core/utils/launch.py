"""Start a ``flexcore`` command on N ranks of one node with torchrun.

``torchrun --standalone --nproc-per-node N`` (run as ``python -m torch.distributed.run``,
so the torchrun of the running interpreter is used) starts N processes of
``python -m flexcore <command> …`` with the ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
environment that :mod:`flexcore.core.utils.distributed` reads; ``--standalone`` finds a free
port on this node, so several jobs can share a node. The workflow's train and reconstruct
scripts call :func:`run_on_ranks` when a rule asks for more than one GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys

from ..errors import ConfigError, FlexcoreError


def torchrun_command(nproc: int, args: list) -> list[str]:
    """The command line that runs ``flexcore <args>`` on ``nproc`` ranks of this node."""
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise ConfigError(f"gpus = {nproc!r}: must be an integer ≥ 1")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "flexcore", *map(str, args)]


def run_on_ranks(nproc: int, args: list, log=None, threads: int | None = None) -> None:
    """Run ``flexcore <args>`` on ``nproc`` ranks and wait for it.

    Parameters
    ----------
    nproc : ranks (one per GPU; on a machine without GPUs, CPU processes with gloo).
    args : the command and its arguments, e.g. ``["train", prep, mesh, out, "--auto"]``.
    log : file object that receives every rank's output (default: this process's stderr).
    threads : CPU threads of the whole job; each rank gets ``threads // nproc`` (at least
        1) unless ``OMP_NUM_THREADS`` is set already.

    Raises :class:`~flexcore.core.errors.FlexcoreError` naming the command when a rank fails
    (torchrun then stops the others); the ranks' own messages are in ``log``.
    """
    cmd = torchrun_command(nproc, args)
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (threads or nproc) // nproc))
    out = log if log is not None else sys.stderr
    out.write(f"starting {nproc} ranks: {' '.join(cmd)}\n")
    out.flush()
    result = subprocess.run(cmd, stdout=out, stderr=out, env=env, check=False)
    if result.returncode != 0:
        raise FlexcoreError(f"`flexcore {args[0]}` on {nproc} ranks failed (exit code "
                            f"{result.returncode}); each rank's messages precede this line")
