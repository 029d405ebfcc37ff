"""Latent quality against the truth and against the Bayes limit, per training epoch.

simulate (one hinged domain, large motion, low SNR, random poses, CTF) → prep → mesh → train
(the workflow's defaults, K = 2, training box 32, 4 epochs; ``--rigidity`` and
``--train-config`` change any training option) → optionally
reconstruct; then, from every epoch's checkpoint:

* best |Spearman ρ| of a latent dimension with the true coordinate t, and the kNN R² of t
  from the latents (5-fold, seeded; :mod:`flexcore.core.latent_metrics`);
* amplitude recovery: maps generated at the 1st … 99th percentile of the latents along the
  direction that best predicts t, each matched to the true coordinate whose true map
  (41 rendered along the motion) correlates best in the moving-domain mask;

and, once, the **Bayes limit**: the posterior mean of t from the first ``--bayes-n`` images
under the simulator's own image model and noise σ
(:func:`flexcore.stages.simulate.truth.bayes_posterior`), scored the same way. With
``--reconstruct``, the flexible reconstruction deformed to each true state and the rigid
reconstruction are compared with the true maps (mean FSC in the moving domain), half-map
FSC beside them (``flexcore.stages.evaluate_reconstruction``).

Writes ``latent_quality.json`` and ``latent_quality.png`` in the work folder (or ``--out``)
and prints a table.

    python benchmarks/bench_latent_quality.py --n 2000 --box 48 --reconstruct
    python benchmarks/bench_latent_quality.py --tiny        # ~1–2 min on one core
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from flexcore.core.checkpoint import load_checkpoint
from flexcore.core.deform import VolumeDeformer
from flexcore.core.fourier import band_limit_resample_3d, fourier_crop
from flexcore.core.ground_truth import read_truth
from flexcore.core.io import read_map, write_map
from flexcore.core.latent_metrics import amplitude_recovery, best_spearman, knn_r2, state_recovery
from flexcore.core.train_config import TrainConfig
from flexcore.core.trained import load_trained_model
from flexcore.core.utils.atomic import write_text_atomic
from flexcore.core.utils.figures import new_figure, save_png
from flexcore.stages.evaluate_reconstruction.step import evaluate_reconstruction
from flexcore.stages.mesh.step import run_mesh
from flexcore.stages.prep.step import run_prep
from flexcore.stages.reconstruct.step import run_reconstruct
from flexcore.stages.simulate import run_simulate
from flexcore.stages.simulate.truth import bayes_posterior, load_forward_model, render_true_maps
from flexcore.stages.train import run_train

TINY = dict(n=160, box=32, pixel_size=3.2, train_box=16, epochs=2, bayes_n=40, n_true_maps=21,
            recon_iterations=1)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="particles")
    ap.add_argument("--box", type=int, default=64, help="simulated box (px)")
    ap.add_argument("--pixel-size", type=float, default=None,
                    help="Å/px (default: a 102.4 Å box, 1.6 Å/px at box 64)")
    ap.add_argument("--snr", type=float, default=0.05)
    ap.add_argument("--max-angle", type=float, default=25.0,
                    help="hinge angle at t = ±1 (25°: 15.2 Å RMSD of the moving domain)")
    ap.add_argument("--train-box", type=int, default=32)
    ap.add_argument("--latent-dim", type=int, default=2)
    ap.add_argument("--rigidity", type=float, default=None,
                    help="rigidity_lambda (default: the training default)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train-config", default="{}",
                    help="JSON of further training options (TrainConfig keys)")
    ap.add_argument("--bayes-n", type=int, default=1000, help="images for the Bayes limit")
    ap.add_argument("--bayes-grid", type=int, default=21)
    ap.add_argument("--n-true-maps", type=int, default=41,
                    help="true maps along the motion for amplitude matching")
    ap.add_argument("--reconstruct", action="store_true",
                    help="also reconstruct and compare per-state maps with the truth")
    ap.add_argument("--recon-iterations", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="a minute-sized run that checks the "
                    "pipeline and the metric code, not the quality")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default="benchmarks/out/latent_quality")
    ap.add_argument("--tag", default="",
                    help="name of this training run: trains into train_TAG/ and writes "
                         "latent_quality_TAG.json beside the shared data (a factor study)")
    ap.add_argument("--out", default=None, help="JSON path (default: in the work folder)")
    args = ap.parse_args(argv)
    if args.tiny:
        for k, v in TINY.items():
            setattr(args, k, v)
        args.reconstruct = True
    args.pixel_size = args.pixel_size or 102.4 / args.box
    return args


DATA_KEYS = ("n", "box", "pixel_size", "snr", "max_angle", "train_box", "seed")


def prepare_data(args, work: Path) -> dict:
    """Simulate, prep and mesh; reused when ``data.json`` says the same settings made them
    (the simulation is seeded, so a rebuild would give the same files)."""
    stamp = work / "data.json"
    settings = {k: getattr(args, k) for k in DATA_KEYS}
    if stamp.is_file() and (work / "mesh" / "mesh.npz").is_file():
        done = json.loads(stamp.read_text())
        if done.get("settings") == settings:
            print(f"reusing the simulated, prepared and meshed data in {work}")
            return done["summary"]
    for stale in work.glob("bayes_*.json"):  # limits of other data
        stale.unlink()
    sim = run_simulate(work / "sim", n_particles=args.n, box=args.box,
                       pixel_size_A=args.pixel_size, snr=args.snr, n_motions=1,
                       max_angle_deg=args.max_angle, seed=args.seed, device=args.device)
    run_prep(sim.particles, sim.consensus, work / "prep", train_box=args.train_box,
             seed=args.seed)
    mask, psize = read_map(sim.mask)  # the simulation's mask at the training box
    small = fourier_crop(torch.from_numpy(mask), args.train_box, 3).numpy().clip(0, 1)
    write_map(work / "mask_train.mrc", small, psize * args.box / args.train_box)
    run_mesh(work / "prep" / "consensus.mrc", work / "mesh", mask=work / "mask_train.mrc",
             n_cells=min(20, args.train_box // 2))
    summary = json.loads(json.dumps(sim.summary, default=float))
    write_text_atomic(stamp, json.dumps({"settings": settings, "summary": summary}, indent=2))
    return summary


def prepared_truth(work: Path) -> np.ndarray:
    """True coordinate ``(N,)`` of every prepared particle (prep's order)."""
    return read_truth(work / "sim", work / "prep")[1][:, 0]


def epoch_metrics(checkpoint: Path, t: np.ndarray, true_maps: np.ndarray,
                  true_coords: np.ndarray, moving: np.ndarray, seed: int) -> dict:
    """|ρ|, kNN R² and amplitude recovery of one checkpoint (maps at the training box, the
    true maps band-limited as the model's canonical map)."""
    model = load_trained_model(checkpoint)
    z = model.latents
    rho, per_dim = best_spearman(z, t)
    r2 = knn_r2(z, t, seed=seed)

    def at_model(vol):
        return band_limit_resample_3d(torch.as_tensor(vol, dtype=torch.float32), model.box,
                                      model.k_max)

    deformer = VolumeDeformer(model, at_model(model.volume), model.pixel_size_A, supersample=2,
                              device="cpu", keep_outside=False)
    truth_small = np.stack([at_model(m).numpy() for m in true_maps])
    mask = fourier_crop(torch.as_tensor(moving), model.box, 3).numpy().clip(0, 1)
    amp = amplitude_recovery(deformer.frame, z, t, truth_small, true_coords, mask)
    states = state_recovery(deformer.frame, z, t, truth_small, true_coords, mask)
    return {"epoch": model.epoch, "spearman_best": rho, "spearman": per_dim, "knn_r2": r2,
            "amplitude": amp, "states": states, **motion_diagnostics(model, checkpoint)}


def motion_diagnostics(model, checkpoint: Path) -> dict:
    """What the model holds after an epoch: the latents' SD per dimension, the largest vertex
    displacement (Å) at the latents' 1st and 99th percentile along each dimension, and the
    epoch's validation NLL gain per particle of the flow over the rigid model."""
    z = model.latents
    points = []
    for d in range(z.shape[1]):
        for q in (1, 99):
            p = np.median(z, axis=0)
            p[d] = np.percentile(z[:, d], q)
            points.append(p)
    disp = model.displacements(np.stack(points)).norm(dim=-1).amax(dim=-1)
    history = load_checkpoint(checkpoint).get("history") or [{}]
    rec = history[-1]
    gain = (rec["val_nll_rigid"] - rec["val_nll_flow"]) if "val_nll_flow" in rec else None
    return {"latent_sd": z.std(axis=0).tolist(),
            "max_displacement_A": float(disp.max()) * model.pixel_size_A,
            "val_gain_per_particle": gain,
            "train_nll": rec.get("train_nll"), "val_nll_flow": rec.get("val_nll_flow")}


def bayes_limit(work: Path, n_images: int, n_grid: int, seed: int) -> dict:
    """The Bayes limit's scores, cached in the work folder (``bayes_N_G_seedS.json``) for the
    data it holds; :func:`prepare_data` removes the cache when it rebuilds the data."""
    cache = work / f"bayes_{n_images}_{n_grid}_seed{seed}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    post = bayes_posterior(work / "sim", n_images=n_images, n_grid=n_grid)
    rho, _ = best_spearman(post["posterior_mean"], post["truth"])
    result = {"n_images": len(post["truth"]), "grid": n_grid, "noise_sigma": post["noise_sigma"],
              "spearman": rho, "knn_r2": knn_r2(post["posterior_mean"], post["truth"], seed=seed),
              "mean_posterior_sd": float(post["posterior_sd"].mean()),
              "rmse_posterior_mean": float(np.sqrt(np.mean((post["posterior_mean"]
                                                             - post["truth"]) ** 2)))}
    write_text_atomic(cache, json.dumps(result, indent=2) + "\n")
    return result


def per_state_maps(args, work: Path, checkpoint: Path) -> dict:
    """Flexible reconstruction deformed to each true state vs the rigid one, against the truth."""
    recon = work / f"recon{suffix(args)}"
    run_reconstruct(checkpoint, work / "prep", recon, iterations=args.recon_iterations,
                    device=args.device)
    rec = evaluate_reconstruction(work / "sim", work / "prep", checkpoint, recon)
    return {"states": [{k: r[k] for k in ("coordinate", "n_particles", "fsc_moving_flex",
                                          "fsc_moving_rigid")} for r in rec["maps"]],
            "mean_fsc_moving_flex": rec["mean_fsc_moving_flex"],
            "mean_fsc_moving_rigid": rec["mean_fsc_moving_rigid"],
            "flex_better_moving": rec["flex_better_moving"], "n_states": rec["n_maps"],
            "half_map_res0143_A": rec["half_map_res0143_A"]}


def plot(result: dict, path: Path) -> None:
    """|ρ|, kNN R² and the recovered fraction of the amplitude per epoch, limits as lines."""
    epochs = [e["epoch"] for e in result["epochs"]]
    fig = new_figure((12, 3.6), dpi=100)
    panels = (("spearman_best", "best |Spearman ρ| with t", result["bayes"]["spearman"]),
              ("knn_r2", "kNN R² of t from the latents", result["bayes"]["knn_r2"]),
              ("amplitude", "fraction of the motion range spanned", 1.0))
    for i, (key, title, limit) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        vals = [e[key]["fraction"] if key == "amplitude" else e[key] for e in result["epochs"]]
        ax.plot(epochs, vals, "o-", color="tab:blue", label="flexcore")
        ax.axhline(limit, color="tab:red", ls="--",
                   label="Bayes limit" if key != "amplitude" else "true range")
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        ax.set_ylim(min(0.0, min(vals)) - 0.05, 1.05)
        ax.set_xticks(epochs)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_png(fig, path)


def table(result: dict) -> str:
    b = result["bayes"]
    lines = ["epoch  |rho|   kNN R2  percentiles 1-99 match t  fraction  states match t"
             "             latent SD   max disp (Å)  val gain",
             f"Bayes  {b['spearman']:.3f}  {b['knn_r2']:6.3f}  (posterior mean of {b['n_images']}"
             " images)"]
    for e in result["epochs"]:
        a, s = e["amplitude"], e["states"]
        lines.append(f"{e['epoch']:5d}  {e['spearman_best']:.3f}  {e['knn_r2']:6.3f}  "
                     f"[{a['matched_range'][0]:+.2f}, {a['matched_range'][1]:+.2f}]"
                     f"{'':14s}{a['fraction']:.2f}      [{min(s['matched']):+.2f}, "
                     f"{max(s['matched']):+.2f}] of [{s['centres'][0]:+.2f}, "
                     f"{s['centres'][-1]:+.2f}]  "
                     f"{' '.join(f'{v:.2f}' for v in e.get('latent_sd', []))}  "
                     f"{e.get('max_displacement_A', float('nan')):6.2f}  "
                     f"{e.get('val_gain_per_particle') or float('nan'):8.2f}")
    if result.get("per_state"):
        p = result["per_state"]
        lines.append(f"per-state maps vs truth (mean FSC, moving domain): flex "
                     f"{p['mean_fsc_moving_flex']:.3f}, rigid {p['mean_fsc_moving_rigid']:.3f}; "
                     f"flex better at {p['flex_better_moving']}/{p['n_states']} states")
    return "\n".join(lines)


def suffix(args) -> str:
    """``_TAG`` for a tagged run's folders and files, nothing otherwise."""
    return f"_{args.tag}" if args.tag else ""


def git_commit() -> str | None:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=Path(__file__).parent, check=False)
    return done.stdout.strip() or None


def main(argv=None) -> dict:
    args = parse_args(argv)
    work = Path(args.workdir) / ("tiny" if args.tiny else f"box{args.box}_n{args.n}")
    t0, commit = time.time(), git_commit()  # the code that runs, not what is checked out later
    summary = prepare_data(args, work)
    cfg = {"latent_dim": args.latent_dim,
           **({"rigidity_lambda": args.rigidity} if args.rigidity is not None else {}),
           "epochs": args.epochs, "device": args.device, "seed": args.seed, "log_every": 1000,
           **json.loads(args.train_config)}
    train = work / f"train{suffix(args)}"
    run_train(work / "prep", work / "mesh" / "mesh.npz", train, cfg,
              on_existing="restart")  # a benchmark always trains from scratch
    t_pipeline = time.time() - t0
    t = prepared_truth(work)
    fm = load_forward_model(work / "sim")
    true_coords = np.linspace(-1.0, 1.0, args.n_true_maps)
    true_maps = render_true_maps(fm, true_coords[:, None])
    moving, _ = read_map(work / "sim" / "moving_mask.mrc")
    checkpoints = sorted((train / "checkpoints").glob("checkpoint_epoch*.pt"))
    epochs = [epoch_metrics(ck, t, true_maps, true_coords, moving, args.seed)
              for ck in checkpoints]
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
        "commit": commit, "device": args.device, "torch": torch.__version__,
        "settings": {k: v for k, v in vars(args).items() if k not in ("workdir", "out")},
        "moving_domain_rmsd_A": summary["moving_domain_rmsd_A"][0],
        "train_config": TrainConfig.from_dict(cfg).to_dict(), "pipeline_s": round(t_pipeline, 1),
        "bayes": bayes_limit(work, args.bayes_n, args.bayes_grid, args.seed),
        "epochs": epochs,
    }
    if args.reconstruct:
        result["per_state"] = per_state_maps(args, work, checkpoints[-1])
    result["total_s"] = round(time.time() - t0, 1)
    out = Path(args.out) if args.out else work / f"latent_quality{suffix(args)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    plot(result, out.with_suffix(".png"))
    print(table(result))
    print(f"wrote {out} and {out.with_suffix('.png')} ({result['total_s']} s)")
    return result


if __name__ == "__main__":
    main()
