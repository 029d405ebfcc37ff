"""Per-conformation FSC-AUC against ground-truth maps (CryoBench's measure).

A benchmark dataset (CryoBench's IgG-1D, Ribosembly, …) comes with one ground-truth map
per conformation and the conformation of every particle. For each conformation, the model
generates the map at one latent: that of the conformation's particle nearest the mean
latent of its particles (CryoBench's choice). The generated map is compared with the
ground truth by FSC (optionally masked), and the FSC curve is summarised by its area
(:func:`~flexcore.core.fsc.fsc_auc`); the mean over conformations is the score.

``flexcore evaluate-conformations`` (:func:`~flexcore.stages.evaluate.step.run_evaluate_conformations`)
writes ``conformations.json`` (record, with every FSC curve) and ``conformations.tsv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...core.deform import VolumeDeformer
from ...core.errors import ConfigError, InputFileError
from ...core.fourier import band_limit_resample_3d, fourier_crop
from ...core.fsc import fsc_auc, fsc_curve, resolution_at
from ...core.io import read_map, read_particles
from ...core.trained import load_trained_model
from ...core.utils.logging import get_logger

log = get_logger("flexcore.evaluate")


def conformation_labels(n_source: int, labels=None, images_per_map: int | None = None
                        ) -> np.ndarray:
    """The conformation (0-based) of the first ``n_source`` source particles, int64.

    ``labels``: a ``.npy`` or text file with one integer per source particle (at least
    ``n_source`` of them); or
    ``images_per_map``: particles ``i·n … (i+1)·n − 1`` show map ``i`` (CryoBench's layout).
    """
    if (labels is None) == (images_per_map is None):
        raise ConfigError("give the particles' conformations as a labels file or as "
                          "images_per_map, not both or neither")
    if images_per_map is not None:
        if images_per_map < 1:
            raise ConfigError(f"images_per_map must be ≥ 1, got {images_per_map}")
        return np.arange(n_source, dtype=np.int64) // int(images_per_map)
    path = Path(labels)
    if not path.is_file():
        raise InputFileError(path, "labels file does not exist")
    try:
        lab = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, ndmin=1)
    except ValueError as exc:
        raise InputFileError(path, f"expected one integer per particle ({exc})") from None
    lab = np.asarray(lab).reshape(-1)
    if len(lab) < n_source or not np.all(lab == np.round(lab)) or lab.min() < 0:
        raise InputFileError(path, f"expected ≥ {n_source} non-negative integers (one per source "
                                   f"particle), got {len(lab)} values")
    return lab[:n_source].astype(np.int64)


def representative_latent(z: np.ndarray) -> np.ndarray:
    """The row of ``z (m, K)`` nearest its mean (CryoBench's latent per conformation)."""
    return z[np.argmin(((z - z.mean(axis=0)) ** 2).sum(axis=1))]


def evaluate_conformations(prep_dir, checkpoint, gt_maps, *, labels=None,
                           images_per_map: int | None = None, mask=None, mesh=None) -> dict:
    """Per-conformation FSC-AUC of the maps the model generates (see the module docstring).

    Parameters
    ----------
    prep_dir : the ``prep`` folder of the training run (``particles.star`` links each
        prepared particle to its source row).
    checkpoint : the trained model.
    gt_maps : ground-truth map files in conformation order (map ``i`` is conformation ``i``);
        any box of the same extent as the particles (Fourier-cropped to the training box).
    labels, images_per_map : each source particle's conformation
        (:func:`conformation_labels`).
    mask : optional real-space mask (same extent) applied to both maps before the FSC.
    """
    model = load_trained_model(checkpoint, mesh)
    prepared = read_particles(Path(prep_dir) / "particles.star")
    src = np.asarray(prepared.raw["flexSourceIndex"], dtype=np.int64)
    conf = conformation_labels(int(src.max()) + 1, labels, images_per_map)[src]
    z = model.latents
    box = model.box

    def at_train_box(path, what):
        v, _ = read_map(path)
        if v.shape[0] < box:
            raise InputFileError(path, f"{what} is {v.shape[0]} px, smaller than the training "
                                       f"box {box} px")
        return fourier_crop(torch.from_numpy(v), box, 3).numpy() if v.shape[0] > box else v

    m = np.clip(at_train_box(mask, "the mask"), 0, 1) if mask else None
    vol = band_limit_resample_3d(model.volume.float(), box, model.k_max)
    deformer = VolumeDeformer(model, vol, model.pixel_size_A, supersample=2, device="cpu",
                              keep_outside=False)
    rows, curves = [], []
    for i, path in enumerate(gt_maps):
        members = np.flatnonzero(conf == i)
        if len(members) == 0:
            log.warning("no prepared particle shows conformation %d (%s); skipped", i, path)
            continue
        z_i = representative_latent(z[members])
        fsc = fsc_curve(deformer.frame(z_i.astype(np.float32)), at_train_box(path, "the map"),
                        mask=m)
        curves.append(fsc.tolist())
        rows.append({"conformation": i, "gt_map": str(path), "n_particles": int(len(members)),
                     "latent": z_i.tolist(), "fsc_auc": fsc_auc(fsc),
                     "res05_A": resolution_at(fsc, 0.5, model.pixel_size_A)})
    if not rows:
        raise ConfigError("no ground-truth map has particles in the prepared set; check the "
                          "labels or images_per_map")
    aucs = np.array([r["fsc_auc"] for r in rows])
    return {"mean_fsc_auc": float(np.nanmean(aucs)), "median_fsc_auc": float(np.nanmedian(aucs)),
            "std_fsc_auc": float(np.nanstd(aucs)), "n_maps": len(rows), "box": box,
            "pixel_size_A": model.pixel_size_A, "masked": mask is not None,
            "conformations": rows, "fsc_curves": curves, "epoch": model.epoch}
