"""The reconstruction's parameters as one typed, frozen record (:class:`ReconParams`).

``flexcore reconstruct`` (whole, or one solve of it), the workflow and the resume
fingerprint all read the same fields; :meth:`ReconParams.check` refuses a bad value with a
:class:`~flexcore.core.errors.ConfigError` naming the setting, and :meth:`ReconParams.record`
is what ``recon.json`` and the solve records store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...core.errors import ConfigError

SOLVES = ("flex_A", "noflex_A", "flex_B", "noflex_B")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v)


def check_bfactor(bfactor) -> None:
    """Raise :class:`ConfigError` unless ``bfactor`` is None or a finite number (Å²)."""
    if bfactor is not None and not _is_number(bfactor):
        raise ConfigError(f"reconstruct.bfactor = {bfactor!r}: must be a finite number (Å²) "
                          "or None")


@dataclass(frozen=True)
class ReconParams:
    """Everything that defines a reconstruction besides its input files.

    mesh : mesh file (None: the one the checkpoint records).
    iterations : L-BFGS iterations per half (CryoSPARC ``flex_bfgs_num_iters``, 20).
    batch_size : particles per batch of a pass.
    ridge : ``ρ`` of the ridge term ``½ρ‖V‖²`` per voxel (the data term is whitened, so
        1e-3 only matters where no data constrain the map).
    resplit, seed : a seeded random half-set split instead of the input split.
    in_ram : load each half's images into RAM once (when they fit).
    scratch_dir : copy the stacks to this local folder first (removed at the end).
    aberrations : apply the optics groups' beam tilt and odd/even Zernike terms.
    device : ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    rigid_baseline : also solve with zero flow (``noflex`` maps); whole reconstructions only.
    bfactor : B-factor (Å², positive = decay) removed when sharpening; None = Guinier fit.
    solve : one solve only (``flex_A``, ``noflex_B``, …), or None for all of them.
    """

    mesh: str | None = None
    iterations: int = 20
    batch_size: int = 64
    ridge: float = 1e-3
    resplit: bool = False
    seed: int = 0
    in_ram: bool = False
    scratch_dir: str | None = None
    aberrations: bool = False
    device: str = "auto"
    rigid_baseline: bool = True
    bfactor: float | None = None
    solve: str | None = None

    def check(self) -> ReconParams:
        """Raise :class:`ConfigError` naming the first bad parameter; return ``self``."""
        if not _is_int(self.iterations) or self.iterations < 0:
            raise ConfigError(f"reconstruct.iterations = {self.iterations!r}: must be an integer ≥ 0")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ConfigError(f"reconstruct.batch_size = {self.batch_size!r}: must be an integer ≥ 1")
        if not _is_number(self.ridge) or self.ridge < 0:
            raise ConfigError(f"reconstruct.ridge = {self.ridge!r}: must be a finite number ≥ 0")
        if not _is_int(self.seed):
            raise ConfigError(f"reconstruct.seed = {self.seed!r}: must be an integer")
        check_bfactor(self.bfactor)
        device = self.device
        if not (device in ("auto", "cpu", "cuda") or str(device).startswith("cuda:")):
            raise ConfigError(f"reconstruct.device = {device!r}: must be auto, cpu, cuda or cuda:N")
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"reconstruct.device = {device!r} but no CUDA device is available")
        scratch = self.scratch_dir
        if scratch is not None and Path(scratch).exists() and not Path(scratch).is_dir():
            raise ConfigError(f"reconstruct.scratch_dir = {str(scratch)!r} is not a folder")
        if self.solve is not None and self.solve not in SOLVES:
            raise ConfigError(f"reconstruct solve = {self.solve!r}: must be one of {', '.join(SOLVES)}")
        return self

    @property
    def kinds(self) -> list[str]:
        """The solves of each half: ``flex``, and ``noflex`` with the rigid baseline."""
        return ["flex", "noflex"] if self.rigid_baseline else ["flex"]

    def record(self) -> dict:
        """The parameters as recorded in ``recon.json`` (a whole reconstruction) or in a
        solve's record (``solve`` set, without ``rigid_baseline`` and ``bfactor``)."""
        extra = ({"solve": self.solve} if self.solve is not None
                 else {"rigid_baseline": bool(self.rigid_baseline), "bfactor": self.bfactor})
        return dict(mesh=str(self.mesh) if self.mesh else None, iterations=int(self.iterations),
                    batch_size=int(self.batch_size), ridge=float(self.ridge),
                    resplit=bool(self.resplit), seed=int(self.seed), in_ram=bool(self.in_ram),
                    scratch_dir=str(self.scratch_dir) if self.scratch_dir else None, **extra,
                    aberrations=bool(self.aberrations), device=self.device)
