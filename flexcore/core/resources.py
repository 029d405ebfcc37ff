"""Memory, GPU memory and wall time of each workflow stage, from the size of the data.

The workflow asks Slurm (or the local scheduler) for what a job needs rather than one figure
for every dataset. The estimates follow the memory model of docs/training.md ("Memory per
rank") and the measured costs in docs/benchmarks.md (H100):

* training, per rank: images ``n/N · d² · 4`` bytes, particle metadata ``~1 kB`` each on
  every rank, the gradient-PCA matrix ``8 · min(n, 8000) · 3·Nv`` and ``~2 GB`` of runtime;
  GPU ``20 · d³`` bytes + the working memory of ``batch/N`` particles; 0.22 ms per particle
  and epoch at training box 128, scaling with ``d³``;
* reconstruction: streamed images (memory independent of ``n`` unless ``in_ram``), ``~380 B``
  per full-box voxel of CPU memory and ``~690 B`` of GPU memory (8.3 GiB RSS and 11.5 GiB GPU
  at box 256); 15.6 ms per particle for both halves, flexible and rigid, 20 iterations at
  box 256, scaling with ``D³`` and the iterations;
* map stages (generate, state maps, local resolution): a few dozen full-box volumes.

Every estimate is multiplied by a safety factor (:class:`ResourceFactors`, set in the
``resources`` section of the workflow configuration) and rounded up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

MB = 1e6
METADATA_BYTES = 1000  # per particle: the prepared table, poses, CTF
RUNTIME_BYTES = 2e9  # Python, PyTorch and CUDA runtime of one process
GPU_CONTEXT_BYTES = 1e9
TRAIN_SECONDS_PER_PARTICLE_EPOCH_128 = 0.22e-3  # H100, docs/benchmarks.md
RECON_SECONDS_PER_PARTICLE_256 = 15.6e-3  # H100, both halves, flex + rigid, 20 iterations
RECON_CPU_BYTES_PER_VOXEL = 380.0
RECON_GPU_BYTES_PER_VOXEL = 690.0
CPU_STAGES = ("simulate", "prep", "mesh", "select", "evaluate", "evaluate_reconstruction",
              "explore", "report_pages")
GPU_STAGES = ("train", "reconstruct", "generate", "state_maps", "localres")


@dataclass(frozen=True)
class DatasetSize:
    """What the resources scale with: particles, full (crop) box and training box (px)."""

    n_particles: int
    box: int
    train_box: int


@dataclass(frozen=True)
class ResourceFactors:
    """Safety factors and the node the defaults are sized for (config section ``resources``).

    ``memory_factor`` and ``runtime_factor`` multiply every estimate; ``min_runtime_min`` is
    the shortest wall time asked for; ``node_memory_mb`` and ``gpu_memory_mb`` are what one
    node and one GPU offer (a "64 GB" node has about 60 000 MB usable), used to warn when a
    job will not fit.
    """

    memory_factor: float = 1.5
    runtime_factor: float = 3.0
    min_runtime_min: int = 10
    node_memory_mb: int = 60000
    gpu_memory_mb: int = 40000

    @classmethod
    def from_config(cls, section: dict | None) -> ResourceFactors:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (section or {}).items() if k in names})


def _mb(nbytes: float, factor: float) -> int:
    """Bytes → MB times the factor, rounded up to 100 MB (at least 1000 MB)."""
    return max(1000, int(math.ceil(nbytes * factor / MB / 100.0)) * 100)


def mesh_vertices(n_cells: int) -> int:
    """Vertices of a regular mesh of ``n_cells`` cubes across the box (an upper bound)."""
    return (n_cells + 1) ** 3


def memory_mb(stage: str, size: DatasetSize, factors: ResourceFactors = ResourceFactors(), *,
              ranks: int = 1, n_cells: int = 20, in_ram: bool = False) -> int:
    """CPU memory of one job of ``stage`` (MB, all its ranks together)."""
    n, big, d = size.n_particles, size.box, size.train_box
    if stage == "train":
        pca = 8.0 * min(n, 8000) * 3 * mesh_vertices(n_cells)
        per_rank = n * METADATA_BYTES + pca + RUNTIME_BYTES
        need = n * d * d * 4.0 + ranks * per_rank
    elif stage in ("reconstruct", "reconstruct_half"):
        need = RUNTIME_BYTES + RECON_CPU_BYTES_PER_VOXEL * big**3 + n * METADATA_BYTES
        if in_ram:
            need += n / 2 * big * big * 4.0
        need = need * max(1, ranks)
    elif stage == "prep":
        need = RUNTIME_BYTES + n * METADATA_BYTES * 4 + 512 * big * big * 4.0 * 8 + big**3 * 4.0 * 8
    elif stage == "simulate":
        need = RUNTIME_BYTES + n * METADATA_BYTES * 4 + 512 * big * big * 4.0 * 8 + big**3 * 4.0 * 32
    elif stage == "mesh":
        need = RUNTIME_BYTES + d**3 * 4.0 * 40
    elif stage == "explore":  # volumes at the training box along each latent axis
        need = RUNTIME_BYTES + d**3 * 4.0 * 200 + n * METADATA_BYTES
    elif stage in ("generate", "state_maps", "localres", "evaluate_reconstruction",
                   "reconstruct_combine"):
        need = RUNTIME_BYTES + big**3 * 4.0 * 40 + n * METADATA_BYTES
    else:  # select, evaluate: tables and latents
        need = RUNTIME_BYTES + n * METADATA_BYTES * 4 + d**3 * 4.0 * 20
    return _mb(need, factors.memory_factor)


def gpu_memory_mb(stage: str, size: DatasetSize, factors: ResourceFactors = ResourceFactors(),
                  *, ranks: int = 1, batch_size: int = 256) -> int:
    """GPU memory one GPU of a ``stage`` job needs (MB); 0 for CPU stages."""
    d, big = size.train_box, size.box
    if stage == "train":
        per_particle = d * d * 4.0 * 64  # spectra, CTF, gradients of one particle's image
        need = GPU_CONTEXT_BYTES + 20.0 * d**3 + batch_size / max(1, ranks) * per_particle
    elif stage in ("reconstruct", "reconstruct_half"):
        need = GPU_CONTEXT_BYTES + RECON_GPU_BYTES_PER_VOXEL * big**3
    elif stage in ("generate", "state_maps", "localres"):
        need = GPU_CONTEXT_BYTES + big**3 * 4.0 * 24
    else:
        return 0
    return _mb(need, factors.memory_factor)


def runtime_min(stage: str, size: DatasetSize, factors: ResourceFactors = ResourceFactors(),
                *, epochs: int = 16, iterations: int = 20, ranks: int = 1) -> int:
    """Wall time of one ``stage`` job (minutes) on a GPU like the benchmarks' (H100)."""
    n, big, d = size.n_particles, size.box, size.train_box
    if stage == "train":
        seconds = 600 + epochs * n * TRAIN_SECONDS_PER_PARTICLE_EPOCH_128 * (d / 128.0) ** 3
        seconds /= max(1, ranks)
    elif stage in ("reconstruct", "reconstruct_half"):
        seconds = 600 + n * RECON_SECONDS_PER_PARTICLE_256 * (big / 256.0) ** 3 \
            * max(iterations, 1) / 20.0 / max(1, ranks)
    elif stage in ("prep", "simulate"):
        seconds = 300 + n * 2e-3 * (big / 256.0) ** 2
    else:
        seconds = 300 + (big / 256.0) ** 3 * 300
    return max(factors.min_runtime_min, int(math.ceil(seconds * factors.runtime_factor / 60.0)))


def fit_problems(stage: str, size: DatasetSize, factors: ResourceFactors = ResourceFactors(),
                 **kwargs) -> list[str]:
    """Why a ``stage`` job of this size will not fit the node in ``factors`` (empty: it fits)."""
    problems = []
    mem_kwargs = {k: v for k, v in kwargs.items() if k in ("ranks", "n_cells", "in_ram")}
    mem = memory_mb(stage, size, factors, **mem_kwargs)
    if mem > factors.node_memory_mb:
        problems.append(f"{stage} needs about {mem} MB of memory, more than the "
                        f"{factors.node_memory_mb} MB of a node (resources.node_memory_mb)")
    gpu_kwargs = {k: v for k, v in kwargs.items() if k in ("ranks", "batch_size")}
    gpu = gpu_memory_mb(stage, size, factors, **gpu_kwargs)
    if gpu > factors.gpu_memory_mb:
        problems.append(f"{stage} needs about {gpu} MB of GPU memory, more than the "
                        f"{factors.gpu_memory_mb} MB of a GPU (resources.gpu_memory_mb)")
    return problems
