"""Start a step on N ranks of one node with torchrun, from inside the step itself.

A step that runs data parallel (``run_train``, ``run_reconstruct``) takes ``gpus=N``. Called
in a plain process with ``N > 1`` it calls :func:`start_ranks`, which writes its keyword
arguments into one JSON file and runs ``torchrun --standalone --nproc-per-node N`` (as
``python -m torch.distributed.run``, so the torchrun of the running interpreter is used) on
``python -m flexcore.core.utils.launch ARGS.json``. Each rank imports the same step
function and calls it with the same arguments; it now finds torchrun's ``RANK`` /
``WORLD_SIZE`` environment (:func:`~flexcore.core.utils.distributed.launched`), so it
computes instead of launching again. Rank 0 writes the step's return value back, and
:func:`start_ranks` returns it. ``--standalone`` finds a free port on this node, so several
jobs can share a node.

There is no round trip through a command line: the arguments travel as JSON, once.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import ConfigError, FlexcoreError
from .distributed import OtherRankError, launched


def check_gpus(gpus) -> int:
    """``gpus`` as an int ≥ 1, else :class:`ConfigError`."""
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 1:
        raise ConfigError(f"gpus = {gpus!r}: must be an integer ≥ 1")
    return gpus


def ranks_to_start(gpus) -> int:
    """How many ranks a step asked for ``gpus`` must start itself: ``gpus`` when it is more
    than one and this process is not already a rank of a torchrun launch, else 0."""
    return 0 if check_gpus(gpus) == 1 or launched() else gpus


def torchrun_command(nproc: int, module_args: list) -> list[str]:
    """The command line that runs ``python -m <module_args>`` on ``nproc`` ranks here."""
    check_gpus(nproc)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", *map(str, module_args)]


def start_ranks(function: str, nproc: int, kwargs: dict, *, log=None, threads: int | None = None):
    """Run ``function(**kwargs)`` on ``nproc`` ranks of this node and return rank 0's result.

    Parameters
    ----------
    function : ``"package.module:name"`` of the step function (it must accept ``gpus``).
    nproc : ranks (one per GPU; on a machine without GPUs, CPU processes with gloo).
    kwargs : its keyword arguments, JSON-serialisable (paths as strings or ``Path``).
    log : file object that receives every rank's output (default: this process's stderr).
    threads : CPU threads of the whole job (default: torch's intra-op threads of this
        process); each rank gets ``threads // nproc`` (at least 1) unless ``OMP_NUM_THREADS``
        is set already.

    Raises :class:`~flexcore.core.errors.FlexcoreError` naming the step when a rank fails
    (torchrun then stops the others); the ranks' own messages are in ``log``.
    """
    import torch

    out = log if log is not None else sys.stderr
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:
        threads = threads or torch.get_num_threads()
        env["OMP_NUM_THREADS"] = str(max(1, threads // nproc))
    with tempfile.TemporaryDirectory(prefix="flexcore-launch-") as tmp:
        request, result = Path(tmp, "request.json"), Path(tmp, "result.json")
        request.write_text(json.dumps({"function": function, "kwargs": kwargs,
                                       "result": str(result)}, default=str))
        cmd = torchrun_command(nproc, ["flexcore.core.utils.launch", request])
        out.write(f"starting {nproc} ranks: {' '.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=out, env=env, check=False)
        name = function.rpartition(":")[2].removeprefix("run_").replace("_", "-")
        if done.returncode != 0:
            raise FlexcoreError(f"{name} on {nproc} ranks failed (exit code {done.returncode}); "
                                "each rank's messages precede this line")
        return json.loads(result.read_text()) if result.is_file() else None


def main(argv: list[str] | None = None) -> int:
    """A rank's entry point: ``python -m flexcore.core.utils.launch REQUEST.json``."""
    argv = sys.argv[1:] if argv is None else argv
    request = json.loads(Path(argv[0]).read_text())
    module, _, name = request["function"].partition(":")
    function = getattr(importlib.import_module(module), name)
    try:
        value = function(**request["kwargs"])
    except OtherRankError:  # rank 0 failed and printed why
        return 1
    except FlexcoreError as exc:
        print(f"flexcore {name.removeprefix('run_').replace('_', '-')}: error: {exc}",
              file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":
        Path(request["result"]).write_text(json.dumps(value, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
