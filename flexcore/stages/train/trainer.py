"""The training loop: latent inference, joint θ/V updates, validation, checkpoints.

Data parallel under torchrun (:mod:`flexcore.core.utils.distributed`): every rank holds a fixed
shard of the particles (:func:`~flexcore.core.utils.distributed.shard_rows`), their images and
their latents, and infers those latents itself. Per step each rank takes its share of
``batch_size`` from its shard; each rank's loss is its particles' NLL sum divided by the
particles of the whole step (and its share of the rigidity sub-batch's penalty divided
by the whole sub-batch), so the θ and V gradients summed over ranks are those of the
single-process loss on the union of the ranks' batches, and every rank takes the same
Adam step. Validation sums are added over ranks; the latents are put back in particle
order for checkpoints, which are therefore the same whatever the number of ranks.
Without torchrun, one process holds everything and the loop is the single-process one.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from ...core.checkpoint import rng_state, save_checkpoint, set_rng_state
from ...core.errors import ConfigError
from ...core.model.flow import FlowGenerator
from ...core.model.priors import inject_noise, rigidity_penalty
from ...core.schedule import k_max_for_epoch, lr_for_epoch, working_box
from ...core.train_config import TrainConfig
from ...core.utils import distributed
from ...core.utils.files import file_sha256
from ...core.utils.logging import get_logger
from ...core.utils.progress import format_eta, progress
from .adam import Adam
from .data import TrainingData
from .init_latents import gradient_pca_latents
from .latents import LatentInference
from .renderer import Renderer

log = get_logger("flexcore.train")


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """Seed of an epoch's random draws (order, candidates) on ``rank``."""
    return seed * 100_003 + epoch + 1_000_003 * rank


def self_init_sd(cfg: TrainConfig) -> float:
    """Spread of the random initial latents (no input latents given)."""
    return cfg.init_latent_sd


def standardise_latents(z: np.ndarray, limit: float) -> np.ndarray:
    """Given latents (e.g. from 3DVA): centre, scale each dimension to SD 0.5, clip."""
    z = np.asarray(z, dtype=np.float64)
    z = (z - z.mean(0)) / np.maximum(z.std(0), 1e-12) * 0.5
    return np.clip(z, -0.93 * limit, 0.93 * limit).astype(np.float32)


class Trainer:
    """Holds the model state of one run and advances it epoch by epoch."""

    def __init__(self, data: TrainingData, mesh, cfg: TrainConfig, out_dir, mesh_path=None,
                 init_volume: np.ndarray | None = None, init_latents: np.ndarray | None = None,
                 resuming: bool = False):
        self.data, self.mesh, self.cfg = data, mesh, cfg
        self.out = Path(out_dir)
        self.device = distributed.resolve_device(cfg.device, "train.device")
        self.mesh_path = str(mesh_path) if mesh_path else None
        self.mesh_sha = file_sha256(mesh_path) if mesh_path else None
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        self.distributed = distributed.is_distributed()
        if cfg.batch_size < distributed.world_size():
            raise ConfigError(f"train.batch_size = {cfg.batch_size}: must be at least the number "
                              f"of ranks ({distributed.world_size()})")
        n, k = data.n_total or len(data), cfg.latent_dim
        self.n_total = n
        self.rows = data.rows if data.rows is not None else np.arange(n)  # held particles
        dev = self.device
        self.flow = FlowGenerator(k, mesh.n_vertices, cfg.hidden_units, cfg.n_layers).to(dev)
        vol = init_volume if init_volume is not None else np.zeros((data.box,) * 3, np.float32)
        self.volume = torch.nn.Parameter(torch.as_tensor(vol, dtype=torch.float32, device=dev))
        rng = np.random.default_rng(cfg.seed)
        if init_latents is not None:
            z = standardise_latents(init_latents, cfg.latent_limit)
        else:
            z = np.clip(rng.normal(0.0, self_init_sd(cfg), size=(n, k)), -1.2, 1.2).astype(np.float32)
        self.latents = torch.as_tensor(z[self.rows])  # (held particles, K)
        n_val = 0 if cfg.validation_fraction == 0 else max(8, int(round(cfg.validation_fraction * n)))
        n_val = min(n_val, max(0, n - cfg.batch_size))
        perm = rng.permutation(n)
        # the split is global (prepared-particle indices); local_* are positions in the shard
        self.val_idx = np.sort(perm[:n_val])
        self.train_idx = np.sort(perm[n_val:])
        self._localise_split()
        self.opt_flow = Adam(self.flow.parameters(), lr=cfg.lr_flow_start)
        self.opt_density = Adam([self.volume], lr=cfg.lr_density_start)
        self.points = torch.as_tensor(mesh.points, dtype=torch.float32, device=dev)
        self.cells = torch.as_tensor(mesh.cells, device=dev)
        self.edges_inv = torch.as_tensor(mesh.rest_edges_inverse(), dtype=torch.float32, device=dev)
        self.rigidity_w = torch.as_tensor(mesh.rigidity, dtype=torch.float32, device=dev)
        self.noise_power = None
        if cfg.whiten:
            self.noise_power = np.asarray(data.info.noise_power, dtype=np.float32)
        self.noise_var = data.info.noise_variance
        self._renderers: dict[int, Renderer] = {}
        self.epoch = 0
        self.history: list[dict] = []
        self.fingerprint: dict = {}  # hashes of the inputs, recorded in every checkpoint
        # Latents that carry information (given, or from the data) are held fixed for the
        # first epoch, while the flow learns to produce their motions; inferring them
        # against the still-rigid initial model would only pull them to the origin.
        self.latents_from_data = init_latents is not None or cfg.init_latents == "gradient-pca"
        if (init_latents is None and cfg.init_latents == "gradient-pca" and not cfg.freeze_latents
                and not resuming):  # a resumed run takes its latents from the checkpoint
            plan = self.epoch_plan(0)
            r = self.renderer(plan["box"])
            self.latents = torch.as_tensor(gradient_pca_latents(
                r, data, self.volume, plan["k_max"], r.noise_var(self.noise_var), k, dev,
                mesh.n_vertices, seed=cfg.seed)[self.rows])

    def _localise_split(self) -> None:
        """Positions in the held rows of this rank's training and validation particles."""
        self.local_train = self.data.positions_of(self.train_idx)
        self.local_val = self.data.positions_of(self.val_idx)

    def global_latents(self) -> torch.Tensor:
        """Every particle's latent ``(N, K)`` in prepared-particle order (a collective
        under torchrun: every rank must call it)."""
        return distributed.assemble_rows(self.latents, self.rows, self.n_total).clone()

    # ----------------------------------------------------------------- helpers
    def renderer(self, box: int) -> Renderer:
        if box not in self._renderers:
            self._renderers[box] = Renderer(self.mesh, box, self.data.pixel_size_A, self.device,
                                            noise_power=self.noise_power,
                                            convection=self.cfg.convection)
        return self._renderers[box]

    def _step_sizes(self, n_local: int) -> tuple[int, int, list[int], list[int]]:
        """Batch and rigidity sub-batch of this rank, and per step of the epoch the
        particles and rigidity images of the whole step (all ranks; one process is the
        case of one rank)."""
        cfg = self.cfg
        world = distributed.world_size()
        counts = distributed.per_rank(n_local)
        bs = [distributed.share(cfg.batch_size, world, r) for r in range(world)]
        sub = [distributed.share(cfg.rigidity_subsample, world, r) for r in range(world)]
        n_steps = max(math.ceil(int(c) / b) for c, b in zip(counts, bs))
        step_n, step_sub = [], []
        for b in range(n_steps):
            part = [max(0, min(bs[r], int(counts[r]) - b * bs[r])) for r in range(world)]
            step_n.append(sum(part))
            step_sub.append(sum(min(sub[r], part[r]) for r in range(world)))
        me = distributed.rank()
        return bs[me], sub[me], step_n, step_sub

    def _sync_parameters(self) -> None:
        """Rank 0's θ and V on every rank (they agree already; this keeps them so)."""
        with torch.no_grad():
            for p in [*self.flow.parameters(), self.volume]:
                distributed.broadcast_(p)

    def epoch_plan(self, epoch: int) -> dict:
        cfg = self.cfg
        k_max = k_max_for_epoch(cfg, epoch, self.data.pixel_size_A)
        box = working_box(self.data.box, k_max, cfg.multires)
        return {"k_max": k_max, "box": box,
                "lr_flow": lr_for_epoch(cfg.lr_flow_start, cfg.lr_flow_end, epoch, cfg.epochs),
                "lr_density": lr_for_epoch(cfg.lr_density_start, cfg.lr_density_end, epoch,
                                           cfg.epochs),
                "resolution_A": self.data.pixel_size_A / k_max}

    def _searches_grid(self, use_grid: bool) -> bool:
        cfg = self.cfg
        return use_grid and not cfg.freeze_latents and cfg.latent_dim <= 2 and cfg.grid_points > 1

    def grid_plan(self, plan: dict) -> dict | None:
        """Where the latent grid is searched when ``grid_low_res`` is on: the band limit of
        the schedule's first epoch and the smallest box covering it, when that is below the
        epoch's ``plan``; None (search it at the epoch's band limit) otherwise."""
        if not self.cfg.grid_low_res:
            return None
        k = k_max_for_epoch(self.cfg, 0, self.data.pixel_size_A)
        if k >= plan["k_max"]:
            return None
        return {"k_max": k, "box": min(plan["box"], working_box(self.data.box, k, True))}

    def coarse_search(self, grid: dict | None, idx, images):
        """The grid's search at its band limit for the particles ``idx`` (their training-box
        ``images``): a :class:`LatentInference` on the grid's renderer and its data, or None
        when the grid is searched at the epoch's band limit."""
        if grid is None:
            return None
        cfg, dev = self.cfg, self.device
        r = self.renderer(grid["box"])
        _, rot, shifts, ctf = self.data.batch(idx, dev, r.box)
        with torch.no_grad():
            canon = r.canonical(self.volume, grid["k_max"])
        data = (canon, r.observed(images), rot, ctf, shifts, r.model.band(grid["k_max"] / r.scale),
                r.noise_var(self.noise_var))
        inference = LatentInference(self.flow, r, cfg.centering_lambda, cfg.centering_power,
                                    cfg.latent_limit, amp=cfg.amp)
        return inference, data

    def _infer(self, inference, idx, z0, canonical, obs, rot, ctf, shifts, band, noise_var,
               use_grid, generator, coarse=None):
        cfg = self.cfg
        data = (canonical, obs, rot, ctf, shifts, band, noise_var)
        if coarse is not None:
            z, e = inference.grid_search_low_res(z0, cfg.grid_points, 0.8 * cfg.latent_limit,
                                                 cfg.n_candidates, cfg.candidate_sigma, data,
                                                 *coarse, generator=generator)
        elif self._searches_grid(use_grid):
            z, e = inference.grid_search(z0, cfg.grid_points, 0.8 * cfg.latent_limit,
                                         cfg.n_candidates, cfg.candidate_sigma, *data,
                                         generator=generator)
        else:
            z, e = inference.search(z0, None, cfg.n_candidates, cfg.candidate_sigma, *data,
                                    generator=generator)
        return inference.refine(z, cfg.latent_steps, cfg.latent_lr, *data, start_energy=e)

    def use_grid(self, epoch: int) -> bool:
        """Coarse grid candidates (K ≤ 2) in the first epochs that infer latents."""
        first = 1 if self.latents_from_data else 0
        return first <= epoch < first + 2

    def step_loss(self, r: Renderer, canon, z, observed, rot, ctf, shifts, band, noise_var,
                  n_step: int, n_sub: int, sub: int):
        """This rank's part of one step's θ/V loss: ``(loss, nll, rigidity)``.

        ``z (B, K)`` are the (noise-injected) latents of this rank's ``B`` particles of the
        step, ``observed``, ``rot``, ``ctf``, ``shifts`` their data at the working box. The
        whole step has ``n_step`` particles over all ranks, ``n_sub`` of which enter the
        rigidity penalty (this rank's first ``sub``). Each rank returns its means weighted by
        its share of the step's counts, so the losses — and θ and V gradients — summed over
        ranks are those of the mean over the union batch: the rigidity prior is counted
        once, not once per rank. One process is one rank whose weights are 1: the batch
        means, rigidity over the first ``rigidity_subsample`` images.
        """
        cfg, dev = self.cfg, self.device
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16,
                            enabled=cfg.amp and dev.type == "cuda"):
            disp = self.flow(z)
        disp = disp.float()
        spec = r.spectra(canon, disp, rot, ctf, shifts)
        per_image = r.model.nll(spec, observed, band, noise_var)
        # this rank's means, weighted by its share of the step: summed over the ranks they
        # are the means over the union batch (with one rank the weights are exactly 1)
        nll = per_image.mean() * (len(per_image) / n_step)
        rig = torch.zeros((), device=dev)
        n_rig = min(sub, len(disp))
        if cfg.rigidity_lambda > 0 and n_rig > 0:
            rig = rigidity_penalty(self.points, self.cells, self.edges_inv, self.rigidity_w,
                                   disp[:sub]).mean() * (n_rig / n_sub)
        return nll + cfg.rigidity_lambda * rig, nll, rig

    # ----------------------------------------------------------------- one epoch
    def run_epoch(self) -> dict:
        cfg, dev, epoch = self.cfg, self.device, self.epoch
        plan = self.epoch_plan(epoch)
        r = self.renderer(plan["box"])
        band = r.model.band(plan["k_max"] / r.scale)
        noise_var = r.noise_var(self.noise_var)
        for g in self.opt_flow.param_groups:
            g["lr"] = plan["lr_flow"]
        for g in self.opt_density.param_groups:
            g["lr"] = plan["lr_density"]
        gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, distributed.rank()))
        if self.distributed:  # each rank's own noise-injection stream, re-derived each epoch
            torch.manual_seed(2**40 + epoch_seed(cfg.seed, epoch, distributed.rank()))
            self._sync_parameters()
        order = self.local_train[torch.randperm(len(self.local_train), generator=gen).numpy()]
        batch, sub, step_n, step_sub = self._step_sizes(len(order))
        params = [*self.flow.parameters(), self.volume]
        inference = LatentInference(self.flow, r, cfg.centering_lambda, cfg.centering_power,
                                    cfg.latent_limit, amp=cfg.amp)
        grid_now = self.use_grid(epoch)
        grid = self.grid_plan(plan) if self._searches_grid(grid_now) else None
        t0 = time.time()
        sums = {"nll": 0.0, "rigidity": 0.0, "n": 0}
        n_batches = len(step_n)
        log.info("epoch %d/%d: resolution %.1f Å (k_max %.3f/px), working box %d (%d voxels), "
                 "lr flow %.2g density %.2g", epoch + 1, cfg.total_epochs, plan["resolution_A"],
                 plan["k_max"], plan["box"], r.n_voxels, plan["lr_flow"], plan["lr_density"])
        if grid is not None:
            log.info("  latent grid searched at %.1f Å on box %d (%d voxels), decided at %.1f Å",
                     self.data.pixel_size_A / grid["k_max"], grid["box"],
                     self.renderer(grid["box"]).n_voxels, plan["resolution_A"])
        for b in progress(range(n_batches), n_batches, f"epoch {epoch + 1}/{cfg.total_epochs}",
                          enabled=distributed.is_main()):
            idx = order[b * batch:(b + 1) * batch]
            self.opt_flow.zero_grad(set_to_none=True)
            self.opt_density.zero_grad(set_to_none=True)
            if len(idx) == 0:  # this rank's shard is used up; it still joins the step
                distributed.all_reduce_grads(params)
                self.opt_flow.step()
                self.opt_density.step()
                continue
            images, rot, shifts, ctf = self.data.batch(idx, dev, r.box)
            obs = r.observed(images)
            # one band-limited map per batch: frozen (detached) for inference, live for θ/V
            canon = r.canonical(self.volume, plan["k_max"])
            if not cfg.freeze_latents and not (epoch == 0 and self.latents_from_data):
                self.flow.requires_grad_(False)
                z = self._infer(inference, idx, self.latents[idx].to(dev), canon.detach(), obs,
                                rot, ctf, shifts, band, noise_var, use_grid=grid_now,
                                generator=gen, coarse=self.coarse_search(grid, idx, images))
                self.latents[idx] = z.cpu()
                self.flow.requires_grad_(True)
            z_noisy = inject_noise(self.latents[idx].to(dev), cfg.noise_sigma, cfg.latent_limit,
                                   generator=None)
            loss, nll, rig = self.step_loss(r, canon, z_noisy, obs, rot, ctf, shifts, band,
                                            noise_var, step_n[b], step_sub[b], sub)
            loss.backward()
            distributed.all_reduce_grads(params)
            self.opt_flow.step()
            self.opt_density.step()
            sums["nll"] += float(nll.detach()) * step_n[b]
            sums["rigidity"] += float(rig.detach()) * step_n[b]
            sums["n"] += len(idx)
            if (b + 1) % cfg.log_every == 0 or b + 1 == n_batches:
                el = time.time() - t0
                rate = sums["n"] / max(el, 1e-9)
                eta = (len(order) - sums["n"]) / max(rate, 1e-9)
                # the epochs still to come at this epoch's pace (later ones work at a larger box)
                run_eta = eta + (cfg.total_epochs - epoch - 1) * len(order) / max(rate, 1e-9)
                log.info("  epoch %d/%d batch %d/%d: nll %.2f rigidity %.4f | %.0f particles/s, "
                         "epoch ETA %s, run ETA %s", epoch + 1, cfg.total_epochs, b + 1, n_batches,
                         sums["nll"] / sums["n"], sums["rigidity"] / sums["n"], rate,
                         format_eta(eta), format_eta(run_eta))
        # the epoch's sums over every rank's particles
        sums["nll"], sums["rigidity"], n_all = distributed.sum_floats(sums["nll"], sums["rigidity"],
                                                                      sums["n"])
        sums["n"] = int(n_all)
        # coefficients in the band (each of the full FFT once): the NLL grows with their
        # number, so the loss plot divides by it (≈ ½ per coefficient at the noise level)
        n_coeff = float(((band > 0) * r.model.half_weight).sum())
        record = {"epoch": epoch + 1, **plan, "band_coefficients": n_coeff,
                  "train_nll": sums["nll"] / max(sums["n"], 1),
                  "train_rigidity": sums["rigidity"] / max(sums["n"], 1),
                  "seconds": time.time() - t0, "particles_per_s": sums["n"] / (time.time() - t0)}
        if grid is not None:
            record.update(grid_box=grid["box"], grid_k_max=grid["k_max"])
        record.update(self.validate(r, plan, band, noise_var, gen))
        if dev.type == "cuda":
            record["peak_gpu_memory_GiB"] = torch.cuda.max_memory_allocated(dev) / 2**30
        self.history.append(record)
        self.epoch += 1
        return record

    def validate(self, r, plan, band, noise_var, gen) -> dict:
        """Infer latents of held-out particles; mean NLL with the learned flow and rigid.

        The held-out latents persist between epochs, so the grid is searched where training
        searches it and at the first validation; later ones start from the last latents."""
        if len(self.val_idx) == 0:
            return {}
        cfg, dev = self.cfg, self.device
        use_grid = self.use_grid(self.epoch) or self.epoch == 0
        grid = self.grid_plan(plan) if self._searches_grid(use_grid) else None
        inference = LatentInference(self.flow, r, cfg.centering_lambda, cfg.centering_power,
                                    cfg.latent_limit, amp=cfg.amp)
        full = rigid = 0.0
        self.flow.requires_grad_(False)
        with torch.no_grad():
            canon = r.canonical(self.volume, plan["k_max"])
        for s in range(0, len(self.local_val), cfg.batch_size):
            idx = self.local_val[s:s + cfg.batch_size]
            images, rot, shifts, ctf = self.data.batch(idx, dev, r.box)
            obs = r.observed(images)
            if not cfg.freeze_latents:
                z = self._infer(inference, idx, self.latents[idx].to(dev), canon, obs, rot, ctf,
                                shifts, band, noise_var, use_grid=use_grid, generator=gen,
                                coarse=self.coarse_search(grid, idx, images))
                self.latents[idx] = z.cpu()
            with torch.no_grad():
                z = self.latents[idx].to(dev)
                spec_f = r.spectra(canon, self.flow(z), rot, ctf, shifts)
                spec_r = r.spectra(canon, None, rot, ctf, shifts)
                full += float(r.model.nll(spec_f, obs, band, noise_var).sum())
                rigid += float(r.model.nll(spec_r, obs, band, noise_var).sum())
        self.flow.requires_grad_(True)
        full, rigid = distributed.sum_floats(full, rigid)
        n = len(self.val_idx)
        log.info("  validation (%d particles): nll with flow %.3f, rigid %.3f (gain %.3f per "
                 "particle)", n, full / n, rigid / n, (rigid - full) / n)
        return {"val_nll_flow": full / n, "val_nll_rigid": rigid / n}

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Everything a checkpoint holds, independent of the number of ranks (a collective
        under torchrun: every rank must call it)."""
        return {
            "epoch": self.epoch,
            "config": self.cfg.to_dict(),
            "flow": self.flow.state_dict(),
            "volume": self.volume.detach().cpu(),
            "latents": self.global_latents(),
            "opt_flow": self.opt_flow.state_dict(),
            "opt_density": self.opt_density.state_dict(),
            "rng": rng_state(cuda=not self.distributed),
            "train_idx": self.train_idx, "val_idx": self.val_idx,
            "history": self.history,
            "mesh_path": self.mesh_path, "mesh_sha256": self.mesh_sha,
            "box": self.data.box, "pixel_size_A": self.data.pixel_size_A,
            "prep": self.data.info.to_dict(),
            **self.fingerprint,
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.flow.load_state_dict(state["flow"])
        with torch.no_grad():
            self.volume.copy_(state["volume"].to(self.device))
        self.latents = state["latents"][torch.as_tensor(self.rows)].clone()
        self.opt_flow.load_state_dict(state["opt_flow"])
        self.opt_density.load_state_dict(state["opt_density"])
        self.train_idx, self.val_idx = state["train_idx"], state["val_idx"]
        self._localise_split()
        self.history = list(state["history"])
        if not self.distributed:  # ranks re-derive their streams from (seed, epoch, rank)
            set_rng_state(state["rng"])

    def save(self, state: dict | None = None) -> Path:
        """Write ``checkpoint_epochNNN.pt`` and ``checkpoint_last.pt`` (both atomic) from
        ``state`` (default: :meth:`state_dict`)."""
        state = self.state_dict() if state is None else state
        ck = self.out / "checkpoints"
        path = ck / f"checkpoint_epoch{self.epoch:03d}.pt"
        save_checkpoint(path, state)
        save_checkpoint(ck / "checkpoint_last.pt", state)
        return path
