"""Collect the runs of a latent-quality factor study into one table and one figure.

Every ``latent_quality*.json`` that ``bench_latent_quality.py`` wrote into one data folder
(one per ``--tag``, all on the same simulated particles and the same Bayes limit) becomes a
row: the factor changed from the baseline, the last epoch's |ρ| and kNN R² (and their
ratios to the limit), the generated maps' span of the motion, the latents' spread, the
flow's largest displacement, the validation gain and, where the run reconstructed, the
per-state maps against the truth. The figure plots |ρ|, kNN R² and the recovered fraction
of the motion per epoch for every run, the limits as dashed lines.

    python benchmarks/latent_quality_study.py /path/to/box64_n10000 --out docs/images/study
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from matplotlib.ticker import MaxNLocator

from flexcore.core.utils.figures import new_figure, save_png

# what a run is compared with: the baseline is the untagged run (the workflow's defaults)
BASE_TAG = "baseline"
TARGETS = {"spearman": 0.95, "knn_r2": 0.9, "end_error": 0.10}


def load_runs(folder: Path) -> dict[str, dict]:
    """``tag → result`` for every ``latent_quality*.json`` in ``folder`` (untagged:
    ``baseline``), the baseline first, then in the order they were run."""
    found = []
    for path in folder.glob("latent_quality*.json"):
        result = json.loads(path.read_text())
        tag = result.get("settings", {}).get("tag") or BASE_TAG
        found.append((tag != BASE_TAG, result.get("date", ""), tag, result))
    runs = {tag: result for _, _, tag, result in sorted(found, key=lambda f: f[:3])}
    if not runs:
        raise SystemExit(f"{folder}: no latent_quality*.json (run bench_latent_quality.py first)")
    return runs


def changed(result: dict, base: dict | None) -> str:
    """The training options that differ from the baseline's, as ``key=value``."""
    if base is None or result is base:
        return "—"
    a, b = result["train_config"], base["train_config"]
    diff = [f"{k}={a[k]}" for k in sorted(a) if a.get(k) != b.get(k)]
    return ", ".join(diff) or "(same options)"


def summarise(runs: dict[str, dict]) -> list[dict]:
    """One row per run: the last epoch's numbers against the limit."""
    base = runs.get(BASE_TAG)
    rows = []
    for tag, r in runs.items():
        last, bayes = r["epochs"][-1], r["bayes"]
        amp = last["amplitude"]
        row = {"tag": tag, "changed": changed(r, base), "epochs": last["epoch"],
               "spearman": last["spearman_best"], "spearman_ratio": last["spearman_best"]
               / bayes["spearman"], "knn_r2": last["knn_r2"],
               "knn_r2_ratio": last["knn_r2"] / bayes["knn_r2"], "fraction": amp["fraction"],
               "end_error": max(amp["end_errors"]),
               "epoch1_spearman": r["epochs"][0]["spearman_best"],
               "latent_sd": last.get("latent_sd"), "max_displacement_A":
               last.get("max_displacement_A"), "val_gain": last.get("val_gain_per_particle")}
        if r.get("per_state"):
            p = r["per_state"]
            row.update(flex=p["mean_fsc_moving_flex"], rigid=p["mean_fsc_moving_rigid"],
                       states_won=f"{p['flex_better_moving']}/{p['n_states']}")
        rows.append(row)
    return rows


def markdown(rows: list[dict], bayes: dict) -> str:
    head = ("| run | changed | \\|ρ\\| (÷ limit) | kNN R² (÷ limit) | motion spanned | worst end "
            "error | latent SD | max disp. (Å) | val gain | per-state flex / rigid (won) |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    lines = [f"| Bayes limit | — | {bayes['spearman']:.3f} | {bayes['knn_r2']:.3f} | 1.00 | 0 "
             "| | | | |"]
    for r in rows:
        sd = " / ".join(f"{v:.2f}" for v in r["latent_sd"] or [])
        per_state = (f"{r['flex']:.3f} / {r['rigid']:.3f} ({r['states_won']})" if "flex" in r
                     else "")
        gain = f"{r['val_gain']:.2f}" if r["val_gain"] is not None else ""
        disp = f"{r['max_displacement_A']:.1f}" if r["max_displacement_A"] is not None else ""
        lines.append(f"| {r['tag']} | {r['changed']} | {r['spearman']:.3f} "
                     f"({r['spearman_ratio']:.3f}) | {r['knn_r2']:.3f} ({r['knn_r2_ratio']:.3f}) "
                     f"| {r['fraction']:.2f} | {r['end_error']:.2f} | {sd} | {disp} | {gain} | "
                     f"{per_state} |")
    return head + "\n".join(lines) + "\n"


def plot(runs: dict[str, dict], path: Path) -> None:
    """|ρ|, kNN R² and the spanned fraction of the motion per epoch, every run."""
    bayes = next(iter(runs.values()))["bayes"]
    fig = new_figure((13, 4.0), dpi=100)
    panels = (("spearman_best", "best |Spearman ρ| with t", bayes["spearman"]),
              ("knn_r2", "kNN R² of t from the latents", bayes["knn_r2"]),
              ("amplitude", "fraction of the motion spanned by generated maps", 1.0))
    for i, (key, title, limit) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        for tag, r in runs.items():
            epochs = [e["epoch"] for e in r["epochs"]]
            vals = [e[key]["fraction"] if key == "amplitude" else e[key] for e in r["epochs"]]
            ax.plot(epochs, vals, "o-", ms=3, lw=1.2, label=tag)
        ax.axhline(limit, color="k", ls="--", lw=1,
                   label="Bayes limit" if key != "amplitude" else "the true motion")
        if key != "amplitude":
            target = limit * TARGETS["spearman" if key == "spearman_best" else "knn_r2"]
            ax.axhline(target, color="grey", ls=":", lw=1, label="target")
        else:
            ax.axhline(1.0 - 2 * TARGETS["end_error"], color="grey", ls=":", lw=1,
                       label="target (both ends within 10 %)")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, fontsize=9)
        if i == 0:
            ax.legend(fontsize=6, loc="lower right", ncol=2)
    fig.tight_layout()
    save_png(fig, path)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="the data folder of bench_latent_quality.py (box*_n*)")
    ap.add_argument("--plot-runs", default=None,
                    help="comma-separated tags to draw in the figure (default: every run)")
    ap.add_argument("--out", default=None,
                    help="path stem of the .md table and .png figure (default: folder/study)")
    args = ap.parse_args(argv)
    folder = Path(args.folder)
    runs = load_runs(folder)
    rows = summarise(runs)
    stem = Path(args.out) if args.out else folder / "study"
    stem.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, next(iter(runs.values()))["bayes"])
    stem.with_suffix(".md").write_text(text)
    shown = runs
    if args.plot_runs:
        tags = [t.strip() for t in args.plot_runs.split(",")]
        unknown = [t for t in tags if t not in runs]
        if unknown:
            raise SystemExit(f"--plot-runs: no run tagged {', '.join(unknown)} in {folder}")
        shown = {t: runs[t] for t in tags}
    plot(shown, stem.with_suffix(".png"))
    print(text)
    print(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.png')}")
    return rows


if __name__ == "__main__":
    main()
