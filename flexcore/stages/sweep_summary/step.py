"""Comparison of the points of a parameter sweep (the workflow's ``sweep_summary`` rule).

One row per point: its swept keys' values (one column per key, named as in the sweep
file: ``rigidity_lambda``, ``prep.train_box``), the final validation NLL with the learned flow
and with zero flow (per particle; ``val_nll_gain`` = rigid − flow, positive when the flow
explains held-out particles better), the spread (SD) of each latent dimension, and when
available the reconstruction's FSC 0.143 resolutions and the ground-truth Spearman ρ.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ...core.utils.atomic import atomic_path
from ...core.utils.figures import new_figure, save_png

# recon.json "resolution_0143_A" entries (masked FSC) read into the table: column → key
RECON_COLUMNS = {"fsc0143_flex_A": "flex_masked", "fsc0143_rigid_A": "noflex_masked"}


def point_row(point: dict, train_json, latents_npy, recon_json=None, evaluation_json=None) -> dict:
    """The summary row of one point from its output files."""
    row = dict(point)
    final = json.loads(Path(train_json).read_text()).get("final", {})
    row["epochs"] = final.get("epoch")
    row["val_nll_flow"] = final.get("val_nll_flow", np.nan)
    row["val_nll_rigid"] = final.get("val_nll_rigid", np.nan)
    row["val_nll_gain"] = row["val_nll_rigid"] - row["val_nll_flow"]
    z = np.load(latents_npy, allow_pickle=False)
    for k in range(z.shape[1]):
        row[f"latent_sd_z{k + 1}"] = float(z[:, k].std())
    if recon_json is not None:
        resolutions = json.loads(Path(recon_json).read_text())["resolution_0143_A"]
        for column, key in RECON_COLUMNS.items():
            row[column] = resolutions.get(key, np.nan)
    if evaluation_json is not None:
        ev = json.loads(Path(evaluation_json).read_text())
        for m, rho in enumerate(ev["spearman_best"]):
            row[f"spearman_rho_motion{m + 1}"] = rho
        for key in sorted(k for k in ev if k.startswith("generated_better")):
            row[f"gt_maps_{key}"] = f"{ev[key]}/{ev['n_maps']}"
    return row


def swept_keys(points: list[dict]) -> list[str]:
    """The swept keys of ``points`` (every key but ``folder``), in the order first seen."""
    keys = []
    for point in points:
        keys += [k for k in point if k != "folder" and k not in keys]
    return keys


def run_sweep_summary(points: list[dict], files: dict[str, list], table_path,
                      plot_path, mode: str = "grid") -> pd.DataFrame:
    """Write the sweep table (TSV) and a plot of its metrics per point; return the table.

    ``points`` are ``{"folder": ..., <key>: value}`` in the order of ``files``' lists
    (``train``, ``latents`` and optionally ``recon``, ``evaluation``); ``mode`` (``grid`` or
    ``zip``) is named in the plot's title with every swept key.
    """
    rows = []
    for i, point in enumerate(points):
        extra = {k: files[k][i] for k in ("recon", "evaluation") if files.get(k)}
        rows.append(point_row(point, files["train"][i], files["latents"][i],
                              extra.get("recon"), extra.get("evaluation")))
    table = pd.DataFrame(rows)
    with atomic_path(table_path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    plot_sweep(table, plot_path, swept_keys(points), mode)
    return table


def point_label(row, keys: list[str]) -> str:
    """``key=value`` of every swept key, one per line (an x tick of the plot)."""
    return "\n".join(f"{k}={row[k]}" for k in keys) if keys else str(row["folder"])


def plot_sweep(table: pd.DataFrame, path, keys: list[str] | None = None,
               mode: str = "grid") -> None:
    """One panel per metric: validation NLL gain, latent SD, FSC 0.143 (flexible and rigid),
    Spearman ρ; the points along x, each labelled with its value of every swept key, and
    the swept keys in the title."""
    keys = [k for k in (keys or []) if k in table]
    panels = [("validation NLL gain\n(rigid − flow, per particle)", ["val_nll_gain"])]
    panels.append(("latent spread (SD)", [c for c in table if c.startswith("latent_sd")]))
    panels.append(("FSC 0.143 (Å, lower is better)", [c for c in RECON_COLUMNS if c in table]))
    panels.append(("Spearman ρ with the true motion",
                   [c for c in table if c.startswith("spearman")]))
    panels = [(title, columns) for title, columns in panels if columns]
    x = range(len(table))
    labels = [point_label(row, keys) for _, row in table.iterrows()]
    fig = new_figure((3.4 * len(panels), 3.4 + 0.25 * len(keys)))
    axes = fig.subplots(1, len(panels), squeeze=False)
    if keys:
        fig.suptitle(f"sweep ({mode}) over {', '.join(keys)}", fontsize=10)
    for ax, (title, columns) in zip(axes[0], panels):
        for column in columns:
            ax.plot(x, table[column].astype(float), "o-", label=column)
        if len(columns) > 1:
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path, dpi=100)
