"""Score a trained model against a simulated dataset's ground truth.

* ``|Spearman ρ|`` between each latent dimension and each ground-truth coordinate (best
  dimension reported);
* for every ground-truth map: the volume generated at the median latent of the particles
  whose true coordinate is nearest that map's, compared with the map by masked FSC, next to
  the consensus map's FSC with the same ground truth — inside the moving domain (where the
  motion is; the simulation's ``moving_mask.mrc``) and inside the whole solvent mask.

:func:`run_evaluate` is the ``evaluate`` step: it writes the record as ``evaluation.json``
and one row per ground-truth map as ``evaluation.tsv``. :func:`run_evaluate_conformations`
scores any dataset with ground-truth maps per conformation (CryoBench's FSC-AUC, see
:mod:`.conformations`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from ...core.deform import VolumeDeformer
from ...core.fourier import band_limit_resample_3d
from ...core.fsc import fsc_curve, mean_fsc, resolution_at
from ...core.ground_truth import check_latents_match, read_truth
from ...core.io import read_map
from ...core.trained import load_trained_model
from ...core.utils.atomic import atomic_path, write_text_atomic
from ...core.utils.logging import get_logger
from ...core.utils.outputs import prepare_outputs
from .conformations import evaluate_conformations

log = get_logger("flexcore.evaluate")


def evaluate_training(sim_dir, prep_dir, checkpoint, mesh=None, window: float = 0.15) -> dict:
    """Compare a trained model with the ground truth of ``flexcore simulate`` output.

    Particles are matched to the simulation by ``_flexSourceIndex`` (prep's link); the
    comparison is at the training box, inside the simulation's solvent mask, up to the
    resolution the model was trained to.
    """
    sim_dir, prep_dir = Path(sim_dir), Path(prep_dir)
    truth_info, truth = read_truth(sim_dir, prep_dir)
    n_motions = truth.shape[1]
    model = load_trained_model(checkpoint, mesh)
    z = model.latents
    check_latents_match(z, truth, checkpoint, prep_dir)
    rho = np.array([[abs(spearmanr(z[:, k], truth[:, m]).statistic) for m in range(n_motions)]
                    for k in range(z.shape[1])])
    best = rho.max(axis=0)

    # the canonical map as the generator sees it, deformed at median latents
    vol = band_limit_resample_3d(model.volume.float(), model.box, model.k_max)
    deformer = VolumeDeformer(model, vol, model.pixel_size_A, supersample=2, device="cpu",
                              keep_outside=False)
    from ...core.fourier import fourier_crop

    def to_train_box(path):
        v, _ = read_map(path)
        return fourier_crop(torch.from_numpy(v), model.box, 3).numpy()

    mask = np.clip(to_train_box(sim_dir / "mask.mrc"), 0, 1)
    moving = np.clip(to_train_box(sim_dir / "moving_mask.mrc"), 0, 1)
    consensus = to_train_box(sim_dir / "consensus.mrc")
    shell_max = int(model.k_max * model.box)
    rows = []
    for path, coord in zip(truth_info["gt_maps"], truth_info["gt_coordinates"]):
        coord = np.asarray(coord)
        near = np.all(np.abs(truth - coord) <= window, axis=1)
        if near.sum() < 5:
            continue
        z_med = np.median(z[near], axis=0)
        gen = deformer.frame(z_med.astype(np.float32))
        gt = to_train_box(sim_dir / path)
        row = {"gt_map": path, "coordinate": coord.tolist(), "n_particles": int(near.sum()),
               "median_latent": z_med.tolist()}
        for name, m in (("moving", moving), ("solvent", mask)):
            f_gen = fsc_curve(gen, gt, mask=m)
            f_con = fsc_curve(consensus, gt, mask=m)
            row[f"fsc_{name}_generated"] = mean_fsc(f_gen, shell_max)
            row[f"fsc_{name}_consensus"] = mean_fsc(f_con, shell_max)
            row[f"res05_{name}_generated_A"] = resolution_at(f_gen, 0.5, model.pixel_size_A)
            row[f"res05_{name}_consensus_A"] = resolution_at(f_con, 0.5, model.pixel_size_A)
        rows.append(row)
    return {"spearman_best": best.tolist(), "spearman": rho.tolist(), "maps": rows,
            "generated_better_moving": int(sum(r["fsc_moving_generated"] > r["fsc_moving_consensus"]
                                               for r in rows)),
            "generated_better_solvent": int(sum(r["fsc_solvent_generated"] >
                                                r["fsc_solvent_consensus"] for r in rows)),
            "n_maps": len(rows), "epoch": model.epoch}


def evaluation_table(record: dict):
    """One row per ground-truth map (a ``pandas.DataFrame``); latent points as text."""
    import pandas as pd

    table = pd.DataFrame(record["maps"])
    for name in ("coordinate", "median_latent"):
        if name in table:
            table[name] = [" ".join(f"{v:+.3f}" for v in row) for row in table[name]]
    table["spearman_best"] = " ".join(f"{r:.3f}" for r in record["spearman_best"])
    return table


def run_evaluate(sim_dir, prep_dir, checkpoint, out_dir, *, mesh=None) -> dict:
    """The ``evaluate`` step: :func:`evaluate_training`, written (atomically) as
    ``out_dir/evaluation.json`` and ``out_dir/evaluation.tsv``. Returns the record."""
    out = prepare_outputs("evaluate", out_dir, ["evaluation.json", "evaluation.tsv"],
                          {"checkpoint": checkpoint, "mesh": mesh})
    record = evaluate_training(sim_dir, prep_dir, checkpoint, mesh=mesh)
    write_text_atomic(out / "evaluation.json", json.dumps(record, indent=2) + "\n")
    with atomic_path(out / "evaluation.tsv") as tmp:
        evaluation_table(record).to_csv(tmp, sep="\t", index=False, float_format="%.4g")
    log.info("Spearman rho (best per motion): %s; generated maps beat the consensus at %d/%d "
             "ground-truth states in the moving domain; wrote %s", record["spearman_best"],
             record["generated_better_moving"], record["n_maps"], out)
    return record


def run_evaluate_conformations(prep_dir, checkpoint, gt_maps, out_dir, *, labels=None,
                               images_per_map: int | None = None, mask=None, mesh=None) -> dict:
    """Write :func:`evaluate_conformations`'s record as ``conformations.json`` and a table
    ``conformations.tsv`` (atomically). Returns the record."""
    gt_maps = [str(p) for p in gt_maps]
    out = prepare_outputs("evaluate", out_dir, ["conformations.json", "conformations.tsv"],
                          {"checkpoint": checkpoint, "mask": mask, "labels": labels,
                           **{f"ground-truth map {p}": p for p in gt_maps}})
    record = evaluate_conformations(prep_dir, checkpoint, gt_maps, labels=labels,
                                    images_per_map=images_per_map, mask=mask, mesh=mesh)
    write_text_atomic(out / "conformations.json", json.dumps(record, indent=2) + "\n")
    with atomic_path(out / "conformations.tsv") as tmp:
        lines = ["conformation\tgt_map\tn_particles\tfsc_auc\tres05_A\tlatent"]
        lines += [f"{r['conformation']}\t{r['gt_map']}\t{r['n_particles']}\t{r['fsc_auc']:.4f}\t"
                  f"{r['res05_A']:.2f}\t" + " ".join(f"{v:+.3f}" for v in r["latent"])
                  for r in record["conformations"]]
        tmp.write_text("\n".join(lines) + "\n")
    log.info("per-conformation FSC-AUC: mean %.4f, median %.4f over %d maps; wrote %s",
             record["mean_fsc_auc"], record["median_fsc_auc"], record["n_maps"], out)
    return record
