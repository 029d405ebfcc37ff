"""High-resolution canonical map under learned deformations, by L-BFGS (3D Flex Reconstruction).

Unknowns: the map values ``V`` on the voxels of the mesh's mask upscaled to the
reconstruction box ``N`` (prep's crop box), ``(M,)`` in the order of
:meth:`~flexcore.core.mesh.TetMesh.voxel_data`. Latents, poses, shifts and CTFs are fixed. Per
half set the objective is

``E(V) = Σ_i ½ Σ_k w_k |I_i(k) − F_i(V)(k)|² / (N² σ²) + ½ ρ ‖V‖²``

with ``F_i(V) = FFT(splat(V; Δ_i, A_i)) · c(k) · CTF_i(k) · e^{iφ_odd} · shift(−origin_i)``
(:class:`~flexcore.core.model.image_model.ImageFormation`; ``c`` the bilinear-splat correction),
``w_k`` the half-plane weights of every coefficient with ``|k| ≤ ½`` (Nyquist), ``σ²`` prep's
per-pixel noise variance scaled from the training box to ``N`` (``× (N/N_train)²``, since
Fourier cropping scales the pixel variance by the square of the box ratio), and ``Δ_i`` the
flow's vertex displacements at the particle's final training latent, scaled by
``N / N_train`` (same physical frame). ``Δ = None`` is the rigid model — the rigid baseline
runs exactly this code with no displacements. The unknowns are densities (no soft-mask
factor): flexcore meshes have ``mask_soft = 1`` on every mask voxel.

``E`` is quadratic in ``V``, so :func:`~flexcore.stages.reconstruct.lbfgs.minimize_quadratic` uses the exact
line search; each iteration is one pass over the half with images (objective + gradient by
autograd through the splat) and one pass without images (curvature ``dᵀHd``).

``E`` is a sum over particles: under torchrun each rank passes over its own particles of
the half, and the pass's sums (objective, gradient, curvature) are added over ranks in
float64 before the ridge term, so every rank holds the same ``E`` and ``∇E`` and takes the
same L-BFGS steps; the Wiener start's Fourier accumulators are added in place (float32).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ...core.ctf import calculate_ctf_2d
from ...core.model.image_model import ImageFormation
from ...core.ops import splat_project
from ...core.utils import distributed
from ...core.utils.logging import get_logger
from ...core.utils.progress import progress
from ...core.wiener import FourierAccumulator
from .aberrations import OpticsAberrations
from .lbfgs import LbfgsResult, minimize_quadratic
from .particles import ImageStream, ReconParticles

log = get_logger("flexcore.recon.flex")


class FlexOperator:
    """Forward model at the reconstruction box for an upscaled mesh.

    Parameters
    ----------
    mesh : :class:`~flexcore.core.mesh.TetMesh` at the reconstruction box ``N``.
    pixel_size_A : pixel size at ``N`` (Å).
    noise_var : real-space per-pixel noise variance ``σ²`` of the images at ``N``.
    aberrations : optional :class:`~flexcore.stages.reconstruct.aberrations.OpticsAberrations` at ``N``.
    """

    def __init__(self, mesh, pixel_size_A: float, noise_var: float, device,
                 aberrations: OpticsAberrations | None = None):
        self.box = int(mesh.box)
        self.pixel_size_A = float(pixel_size_A)
        self.noise_var = float(noise_var)
        self.device = torch.device(device)
        self.geometry = mesh.voxel_tensors(self.device)
        self.model = ImageFormation(self.box, self.pixel_size_A, self.device)
        self.band = self.model.band(0.5)
        self.aberrations = aberrations

    @property
    def n_voxels(self) -> int:
        return self.geometry.n_voxels

    def to_volume(self, x: torch.Tensor) -> torch.Tensor:
        """Scatter mask-voxel values ``(M,)`` into an ``(N, N, N)`` ``[z, y, x]`` map."""
        return self.geometry.scatter(x)

    def from_volume(self, volume: torch.Tensor) -> torch.Tensor:
        """Mask-voxel values ``(M,)`` of an ``(N, N, N)`` map."""
        return self.geometry.gather(volume.to(self.device, torch.float32))

    def ctf(self, particles: ReconParticles, idx: np.ndarray) -> torch.Tensor:
        """CTFs ``(B, N, N//2+1)`` of particles ``idx`` at ``N`` (even aberrations in χ)."""
        it = torch.as_tensor(idx, dtype=torch.long)
        params = {k: v[it].to(self.device) for k, v in particles.ctf.items()}
        extra = None
        if self.aberrations is not None:
            extra = self.aberrations.even_phase(particles.optics_group[idx])
        return calculate_ctf_2d(pixel_size_A=self.pixel_size_A, image_size=self.box,
                                extra_phase=extra, **params)

    def spectra(self, density: torch.Tensor, displacements: torch.Tensor | None,
                rotations: torch.Tensor, ctf: torch.Tensor, shifts_px: torch.Tensor,
                odd: torch.Tensor | None) -> torch.Tensor:
        """Model spectra ``(B, N, N//2+1)`` of mask-voxel densities ``(M,)``;
        ``displacements (B, Nv, 3)`` in voxels of ``N`` or ``None`` (rigid)."""
        proj = splat_project(density, self.geometry, displacements, rotations, self.box)
        spec = self.model.spectra(proj, ctf, shifts_px)
        return spec if odd is None else spec * odd

    def data_term(self, model: torch.Tensor, observed: torch.Tensor | None) -> torch.Tensor:
        """``Σ_i ½ Σ_k w_k |I_i − F_i|² / (N² σ²)`` summed over the batch, a float64 scalar
        (the sum is taken in float64 so objectives of whole passes compare reliably);
        ``observed = None`` gives ``½‖F‖²_w / (N²σ²)``."""
        r = model if observed is None else observed - model
        e = (r.real**2 + r.imag**2) * self.band
        return 0.5 * e.double().sum() / (self.box**2 * self.noise_var)


class HalfObjective:
    """The objective ``E`` of one half set, evaluated by streaming its particles.

    Parameters
    ----------
    op : the :class:`FlexOperator`.
    particles : all particles; ``positions`` selects this half's (prepared-order indices).
    stream : images of ``positions``, in the same order.
    displacement_fn : ``idx ↦ (B, Nv, 3)`` displacements at the reconstruction box for
        prepared-order indices ``idx``, or ``None`` for the rigid model.
    ridge : ``ρ``.
    """

    def __init__(self, op: FlexOperator, particles: ReconParticles, positions: np.ndarray,
                 stream: ImageStream, displacement_fn, ridge: float, batch_size: int,
                 label: str = ""):
        self.op, self.particles = op, particles
        self.positions = np.asarray(positions, dtype=np.int64)
        self.stream = stream
        self.displacement_fn = displacement_fn
        self.ridge = float(ridge)
        self.batch_size = int(batch_size)
        self.label = label
        self.passes = {"gradient": [0, 0.0], "curvature": [0, 0.0]}  # [count, seconds]

    @property
    def n_passes(self) -> int:
        return sum(v[0] for v in self.passes.values())

    @property
    def pass_seconds(self) -> float:
        return sum(v[1] for v in self.passes.values())

    def _count(self, kind: str, t0: float) -> None:
        self.passes[kind][0] += 1
        self.passes[kind][1] += time.time() - t0

    def _batches(self):
        starts = range(0, len(self.positions), self.batch_size)
        for s in progress(starts, len(starts), f"{self.label}pass", enabled=distributed.is_main()):
            yield np.arange(s, min(s + self.batch_size, len(self.positions)))

    def _inputs(self, local: np.ndarray):
        op, p = self.op, self.particles
        idx = self.positions[local]
        it = torch.as_tensor(idx, dtype=torch.long)
        rot = p.rotations[it].to(op.device)
        shifts = (p.shifts_A[it] / op.pixel_size_A).to(op.device)
        disp = None if self.displacement_fn is None else self.displacement_fn(idx)
        odd = None if op.aberrations is None else op.aberrations.odd_factor(p.optics_group[idx])
        return rot, shifts, op.ctf(p, idx), disp, odd

    def _progress(self, t0: float, last: list, done: int, what: str) -> None:
        now = time.time()
        if now - last[0] > 30.0:
            last[0] = now
            log.info("%s%s pass: %d/%d particles (%.0f particles/s)", self.label, what, done,
                     len(self.positions), done / max(now - t0, 1e-9))

    def value_and_grad(self, x: torch.Tensor) -> tuple[float, torch.Tensor]:
        """``(E(x), ∇E(x))``; one pass over the half's images."""
        t0 = time.time()
        last = [t0]
        op = self.op
        density = x.detach().clone().requires_grad_(True)
        total = 0.0
        for local in self._batches():
            rot, shifts, ctf, disp, odd = self._inputs(local)
            obs = op.model.observed(self.stream.read(local))
            spec = op.spectra(density, disp, rot, ctf, shifts, odd)
            loss = op.data_term(spec, obs)
            loss.backward()
            total += float(loss.detach())
            self._progress(t0, last, int(local[-1]) + 1, "gradient")
        grad = density.grad.detach() if density.grad is not None else torch.zeros_like(x)
        if distributed.is_distributed():  # every rank's particles: sums over ranks in float64
            grad = distributed.all_reduce_sum(grad, torch.float64)
            (total,) = distributed.sum_floats(total)
        total += 0.5 * self.ridge * float(torch.dot(x.double(), x.double()))
        grad = grad + self.ridge * x
        self._count("gradient", t0)
        return total, grad

    @torch.no_grad()
    def curvature(self, d: torch.Tensor) -> float:
        """``dᵀHd = Σ_i ‖F_i(d)‖²_w / (N²σ²) + ρ‖d‖²``; one pass without images."""
        t0 = time.time()
        last = [t0]
        op = self.op
        total = 0.0
        for local in self._batches():
            rot, shifts, ctf, disp, odd = self._inputs(local)
            spec = op.spectra(d, disp, rot, ctf, shifts, odd)
            total += 2.0 * float(op.data_term(spec, None))
            self._progress(t0, last, int(local[-1]) + 1, "curvature")
        (total,) = distributed.sum_floats(total)
        self._count("curvature", t0)
        return total + self.ridge * float(torch.dot(d.double(), d.double()))


def wiener_start(op: FlexOperator, particles: ReconParticles, positions: np.ndarray,
                 stream: ImageStream, batch_size: int, label: str = "") -> torch.Tensor:
    """Rigid Wiener reconstruction of one half set only (gold-standard independence),
    restricted to the mask voxels: ``(M,)``. Uses a small constant regulariser (no SSNR,
    which would need the other half); odd aberrations are ignored in this start map."""
    t0 = time.time()
    acc = FourierAccumulator(op.box, op.pixel_size_A, pad=2.0, device=op.device)
    positions = np.asarray(positions, dtype=np.int64)
    for s in range(0, len(positions), batch_size):
        local = np.arange(s, min(s + batch_size, len(positions)))
        idx = torch.as_tensor(positions[local], dtype=torch.long)
        params = {k: v[idx] for k, v in particles.ctf.items()}
        acc.add(stream.read(local), particles.rotations[idx], particles.shifts_A[idx], params)
    # the sums over every rank's particles, in place: the padded grid is the largest array
    distributed.all_reduce_(acc.sums)
    vol = acc.solve()
    del acc
    (n,) = distributed.sum_floats(len(positions))
    log.info("%srigid Wiener start map from %d particles in %.1f s", label, n, time.time() - t0)
    return op.from_volume(vol)


def solve_half(objective: HalfObjective, x0: torch.Tensor, iterations: int,
               history_size: int = 8, state: dict | None = None,
               on_iteration=None) -> LbfgsResult:
    """Run L-BFGS on one half's objective from ``x0`` (or continue from ``state``, an
    interrupted solve's last ``on_iteration`` state); the result's history gets the number
    of passes and their time."""
    res = minimize_quadratic(x0, objective.value_and_grad, objective.curvature,
                             iterations=iterations, history_size=history_size,
                             label=objective.label, state=state, on_iteration=on_iteration)
    log.info("%s%d iterations, %d passes over the half in %.1f s (objective %.8g → %.8g)",
             objective.label, len(res.history) - 1, objective.n_passes, objective.pass_seconds,
             res.history[0]["objective"], res.objective)
    return res
