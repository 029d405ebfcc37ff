"""``flexcore train``: the training step function (CLI and Snakemake call this)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ...core.checkpoint import load_checkpoint, save_checkpoint
from ...core.errors import ConfigError, InputFileError
from ...core.io import read_init_latents, read_map
from ...core.prep_info import PrepInfo
from ...core.strain import log_strain, measure_strain
from ...core.train_config import TrainConfig
from ...core.utils import distributed
from ...core.utils.atomic import write_text_atomic
from ...core.utils.launch import ranks_to_start, start_ranks
from ...core.utils.logging import get_logger
from ...core.utils.outputs import prepare_outputs
from ...core.utils.progress import format_eta
from ...core.utils.provenance import write_provenance
from .data import TrainingData
from .export import export_latents
from .plots import plot_examples, plot_latents, plot_losses
from .resume import PREP_FILES, TRAIN_OUTPUTS, checkpoint_to_resume, training_fingerprint
from .trainer import Trainer

log = get_logger("flexcore.train")

LOSS_PLOT_EVERY_S = 15.0


def load_mesh_for_training(mesh_path, box: int, pixel_size_A: float):
    """Load a mesh and check it was built for the training box."""
    from ...core.mesh import TetMesh

    mesh = TetMesh.load(mesh_path)
    if mesh.box != box:
        raise InputFileError(mesh_path, f"mesh was built for a {mesh.box} px box but the prepared "
                                        f"particles are {box} px; rebuild it from prep's consensus map")
    if mesh.pixel_size_A and abs(mesh.pixel_size_A - pixel_size_A) > 0.01 * pixel_size_A:
        raise InputFileError(mesh_path, f"mesh pixel size {mesh.pixel_size_A:.4f} Å differs from "
                                        f"the prepared particles' {pixel_size_A:.4f} Å")
    return mesh


def run_train(prep_dir, mesh_path, out_dir, config: dict | TrainConfig | None = None, *,
              on_existing: str = "refuse", init_latents=None, resume: bool = False,
              gpus: int = 1, image_paths: str = "original") -> dict:
    """Train latents, flow and canonical map; write checkpoints, latents and plots.

    Outputs in ``out_dir``: ``model.pt`` (the trained model, written last),
    ``checkpoints/checkpoint_epochNNN.pt`` and ``checkpoint_last.pt`` (after every epoch),
    ``latents.npy/.star/.cs``, ``history.json``, ``loss.png``, ``latents_epochNNN.png``,
    ``latents.png``, ``examples.png``, ``train.json``.

    ``on_existing`` says what to do when ``out_dir`` holds an earlier run: ``"refuse"``
    (default), ``"resume"`` (continue a compatible checkpoint), ``"restart"`` (remove it)
    or ``"auto"`` (resume when compatible, else restart); see :mod:`flexcore.stages.train.resume`.
    ``resume=True`` is ``on_existing="resume"``. ``image_paths``: stack names in
    ``latents.star``/``.cs``, ``original`` (as the input names them: the files open from the
    same RELION or cryoSPARC project folder) or ``absolute``.

    ``gpus > 1`` trains on that many ranks of this node: this call starts them with torchrun
    (:func:`~flexcore.core.utils.launch.start_ranks`; also when started under torchrun
    yourself). The N processes train one model data-parallel (see
    :mod:`flexcore.stages.train.trainer`); rank 0 alone checks and writes the outputs, which
    are those of a single process.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config or {})
    cfg.validate()
    if image_paths not in ("original", "absolute"):
        raise ConfigError(f"image_paths = {image_paths!r}: must be original or absolute")
    on_existing = "resume" if resume else on_existing
    if ranks_to_start(gpus):
        kwargs = dict(prep_dir=str(prep_dir), mesh_path=str(mesh_path), out_dir=str(out_dir),
                      config=cfg.to_dict(), on_existing=on_existing,
                      init_latents=str(init_latents) if init_latents else None, gpus=gpus,
                      image_paths=image_paths)
        return start_ranks("flexcore.stages.train.step:run_train", gpus, kwargs)
    with distributed.process_group(distributed.resolve_device(cfg.device, "train.device")):
        return _train(Path(prep_dir), mesh_path, out_dir, cfg, on_existing, init_latents,
                      image_paths)


def _train(prep_dir: Path, mesh_path, out_dir, cfg: TrainConfig, on_existing: str,
           init_latents, image_paths: str = "original") -> dict:
    t0 = time.time()
    info = PrepInfo.read(prep_dir)
    mesh = load_mesh_for_training(mesh_path, info.train_box, info.train_pixel_size_A)
    inputs = {f"prepared {name}": prep_dir / name for name in (*PREP_FILES, "prep.json")}
    inputs.update({"mesh": mesh_path, "starting-latents file": init_latents,
                   "source particle file": info.source_particles})
    main = distributed.is_main()
    found: dict = {}

    def prepare():  # rank 0 checks the folder, hashes the inputs, decides about a checkpoint
        out = prepare_outputs("train", out_dir, TRAIN_OUTPUTS, inputs)
        fingerprint = training_fingerprint(cfg, mesh_path, prep_dir, init_latents)
        found["state"], ck = checkpoint_to_resume(out, fingerprint, on_existing)
        return out, fingerprint, ck

    out, fingerprint, ck = distributed.on_main_rank(prepare)
    resumed = found.get("state") if main else (load_checkpoint(ck) if ck is not None else None)
    shard = (lambda n: distributed.shard_rows(n, cfg.seed)) if distributed.is_distributed() else None
    data = TrainingData.load(prep_dir, float16=cfg.images_float16, rows=shard,
                             copies=distributed.ranks_on_node())
    n_total = data.n_total
    if n_total < 2 * cfg.batch_size and cfg.batch_size > 8:
        log.warning("only %d particles for batch size %d", n_total, cfg.batch_size)
    consensus, _ = read_map(prep_dir / "consensus.mrc")
    init_volume = consensus * info.image_scale
    z0 = read_init_latents(init_latents, n_total, cfg.latent_dim) if init_latents else None
    trainer = Trainer(data, mesh, cfg, out, mesh_path=mesh_path, init_volume=init_volume,
                      init_latents=z0, resuming=resumed is not None)
    trainer.fingerprint = {k: v for k, v in fingerprint.items() if k != "config"}
    if resumed is not None:
        trainer.load_state_dict(resumed)
        log.info("resumed from %s (epoch %d of %d done)", ck, trainer.epoch, cfg.total_epochs)
    log.info("training %d particles (%d held out), K=%d, mesh %d vertices / %d cells, device %s",
             len(trainer.train_idx), len(trainer.val_idx), cfg.latent_dim, mesh.n_vertices,
             mesh.n_cells, trainer.device)
    if distributed.world_size() > 1:
        log.info("data parallel on %d ranks: this rank holds %d particles, %d per step of %d",
                 distributed.world_size(), len(data), distributed.share(cfg.batch_size), cfg.batch_size)
    truth = _ground_truth_colour(prep_dir, data)
    t_loop, first_epoch = time.time(), trainer.epoch
    loss_drawn = -float("inf")
    while trainer.epoch < cfg.total_epochs:
        rec = trainer.run_epoch()
        state = trainer.state_dict()  # every rank: gathers the latents
        if main:
            trainer.save(state)
            # loss.png is for watching a run: redrawn when LOSS_PLOT_EVERY_S have passed (every
            # epoch of a real run; it took a sixth of a 2 s demo epoch), and at the end
            if time.time() - loss_drawn >= LOSS_PLOT_EVERY_S and trainer.epoch < cfg.total_epochs:
                plot_losses(trainer.history, out / "loss.png")
                loss_drawn = time.time()
            plot_latents(state["latents"].numpy(), out / f"latents_epoch{trainer.epoch:03d}.png",
                         f"latents after epoch {trainer.epoch}", cfg.latent_limit, color=truth)
            write_text_atomic(out / "history.json", json.dumps(trainer.history, indent=2) + "\n")
        per_epoch = (time.time() - t_loop) / (trainer.epoch - first_epoch)
        log.info("epoch %d/%d done in %.0f s (%.0f particles/s); run ETA %s", rec["epoch"],
                 cfg.total_epochs, rec["seconds"], rec["particles_per_s"],
                 format_eta(per_epoch * (cfg.total_epochs - trainer.epoch)))
    z = trainer.global_latents().numpy()
    strain = _write_results(trainer, z, out, info, mesh, truth, image_paths) if main else None
    final = trainer.state_dict()
    summary = {
        "n_particles": n_total, "epochs": trainer.epoch, "seconds": round(time.time() - t0, 1),
        "final": trainer.history[-1] if trainer.history else {},
        "model": str(out / "model.pt"),
        "checkpoint": str(out / "checkpoints" / "checkpoint_last.pt"),
        "resumed_from_epoch": int(resumed["epoch"]) if resumed is not None else None,
        "ranks": distributed.world_size(),
        "strain": strain,
    }
    if main:
        save_checkpoint(out / "model.pt", final)
        write_provenance(out / "train.json", "train", cfg.to_dict(), extra={
            "prep_dir": str(prep_dir.resolve()), "mesh": str(Path(mesh_path).resolve()),
            **summary})
    distributed.barrier()  # the other ranks return once the outputs exist
    return summary


def _write_results(trainer: Trainer, z: np.ndarray, out: Path, info: PrepInfo, mesh,
                   truth, image_paths: str = "original") -> dict:
    """Rank 0 after the last epoch: final plots, the latents exported into the user's
    particle file, and the strain of the learned motion (returned)."""
    cfg, data = trainer.cfg, trainer.data
    plot_latents(z, out / "latents.png", "final latents", cfg.latent_limit, color=truth)
    if trainer.history:
        plot_losses(trainer.history, out / "loss.png")
        write_text_atomic(out / "history.json", json.dumps(trainer.history, indent=2) + "\n")
    _plot_examples(trainer, out / "examples.png")
    source_rows = np.asarray(data.table.raw["flexSourceIndex"], dtype=np.int64)
    export_latents(z, info.source_particles, source_rows, out, project_dir=info.project_dir,
                   image_paths=image_paths)
    strain = measure_strain(
        lambda zz: trainer.flow(torch.as_tensor(zz, device=trainer.device)), mesh, z,
        threshold=cfg.strain_threshold, seed=cfg.seed)["summary"]
    log_strain(strain, "train")
    return strain


def _ground_truth_colour(prep_dir, data) -> np.ndarray | None:
    """Ground-truth coordinate per particle when the data are simulated (for plots)."""
    raw = data.table.raw
    if raw is not None and hasattr(raw, "columns") and "flexTrueCoord1" in raw.columns:
        return np.asarray(raw["flexTrueCoord1"], dtype=np.float64)
    return None


def _plot_examples(trainer: Trainer, path, n: int = 4) -> None:
    """Held-out particles of this rank next to the model with and without flow."""
    idx = trainer.local_val[:n] if len(trainer.local_val) >= n else trainer.local_train[:n]
    plan = trainer.epoch_plan(max(0, trainer.epoch - 1))
    r = trainer.renderer(trainer.data.box)
    band = r.model.band(plan["k_max"]) > 0
    with torch.no_grad():
        images, rot, shifts, ctf = trainer.data.batch(idx, trainer.device, r.box)
        canon = r.canonical(trainer.volume, plan["k_max"])
        z = trainer.latents[idx].to(trainer.device)
        flex = r.spectra(canon, trainer.flow(z), rot, ctf, shifts)
        rigid = r.spectra(canon, None, rot, ctf, shifts)
        obs = r.observed(images)
        to_img = lambda f: torch.fft.irfft2(f * band, s=(r.box, r.box)).cpu().numpy()  # noqa: E731
        plot_examples(to_img(obs), to_img(flex), to_img(rigid), path,
                      f"held-out particles at {plan['resolution_A']:.1f} Å")
