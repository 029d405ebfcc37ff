"""``flexcore select``: the step function (CLI and Snakemake call this).

Chooses particles by their latent coordinates (:mod:`flexcore.stages.select.regions`) and writes
each subset as the user's **original** particles — the rows of the particle file given to
``prep`` (``prep.json``'s ``source_particles``, rows linked by ``_flexSourceIndex``), full
resolution, every column and the optics table kept (:mod:`flexcore.core.io.subset`) — ready to
import into RELION or cryoSPARC and refine on their own.

Outputs in ``out_dir``: ``<subset>.star`` or ``<subset>.cs`` (the input's format; subsets are
``region``, ``cluster1…``, ``point1…``, or the names drawn in the latent explorer),
``selection.png`` (latent space with the selection) and ``select.json`` (provenance; per
subset its file, particle count, state latent and how it was chosen).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ...core.errors import ConfigError, InputFileError
from ...core.io import detect_particle_format, read_particles, resolve_image_path
from ...core.io.selection import latents_sha256, read_selection
from ...core.io.subset import IMAGE_PATH_MODES, write_source_rows
from ...core.prep_info import PrepInfo
from ...core.utils.logging import get_logger
from ...core.utils.outputs import prepare_outputs
from ...core.utils.provenance import write_provenance
from .plots import plot_selection
from .regions import define_subsets

log = get_logger("flexcore.select")


def load_latents(path, n_particles: int | None = None) -> np.ndarray:
    """Per-particle latents ``(N, K)`` in prepared order from train's ``latents.npy`` or a
    training checkpoint (``.pt``). Checks ``N`` against ``n_particles`` when given."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "latent file not found (train's latents.npy or a checkpoint)")
    if path.suffix == ".pt":
        from ...core.checkpoint import load_checkpoint

        z = load_checkpoint(path)["latents"].numpy()
    else:
        try:
            z = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise InputFileError(path, f"cannot be read as a .npy array: {exc}") from exc
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2:
        raise InputFileError(path, f"latents must be an (N, K) array, got shape {z.shape}")
    bad = np.flatnonzero(~np.isfinite(z).all(axis=1))
    if len(bad):
        raise InputFileError(path, f"{len(bad)} of {len(z)} particles have NaN or infinite "
                                   f"latents (first at row {bad[0] + 1}): the training diverged "
                                   "or the file is damaged; train again (e.g. with a lower "
                                   "learning rate) or use another checkpoint")
    if n_particles is not None and len(z) != n_particles:
        raise InputFileError(path, f"holds latents for {len(z)} particles but the prepared folder "
                                   f"holds {n_particles}")
    return z


def source_rows_of_prep(prep_dir) -> tuple[np.ndarray, Path, PrepInfo]:
    """Rows of the original particle file for every prepared particle, that file, and the
    prep record (``prep.json``)."""
    info = PrepInfo.read(prep_dir)
    star = Path(prep_dir) / "particles.star"
    raw = read_particles(star).raw
    if raw is None or "flexSourceIndex" not in getattr(raw, "columns", []):
        raise InputFileError(star, "has no _flexSourceIndex column (not written by flexcore prep)")
    source = Path(info.source_particles)
    if not source.is_file():
        raise InputFileError(source, "the original particle file named in prep.json "
                                     "(source_particles) does not exist")
    return np.asarray(raw["flexSourceIndex"], dtype=np.int64), source, info


def run_select(latents, prep_dir, out_dir, *, method: str = "kmeans", n_clusters: int = 3,
               center=None, half_widths=None, axis: int = 1, percentile_low: float = 75.0,
               percentile_high: float = 100.0, points=None, radius: float = 0.3, seed: int = 0,
               image_paths: str = "original", selection_file=None,
               class_numbers: bool = False) -> dict:
    """Select particles by latent region and write each subset as the original particles.

    Parameters
    ----------
    latents : train's ``latents.npy`` (prepared order) or a checkpoint ``.pt``.
    prep_dir : the prepared folder the model was trained on (``prep.json``,
        ``particles.star`` with ``_flexSourceIndex``).
    method : ``box``, ``ellipse``, ``percentile``, ``kmeans``, ``points`` or ``file``
        (:func:`~flexcore.stages.select.regions.define_subsets`).
    n_clusters, seed : k-means clusters and the seed of its k-means++ start.
    center, half_widths : box / ellipse centre and half widths (one number per latent
        dimension, or one number for all).
    axis, percentile_low, percentile_high : 1-based latent axis and percentile range.
    points, radius : latent points (list of lists) and the radius around each.
    image_paths : ``original`` (stack names as in the input) or ``absolute``.
    selection_file : method ``file``: a ``selection.json`` saved from the latent explorer
        (``flexcore explore``) on these latents.
    class_numbers : also write ``subsets.star``: every selected particle once, its
        ``rlnClassNumber`` the 1-based number of its subset (the first, where subsets
        overlap), for RELION's Subset selection (STAR input only).

    Returns the summary written into ``select.json``.
    """
    if image_paths not in IMAGE_PATH_MODES:
        raise ConfigError(f"select.image_paths = {image_paths!r}: must be one of "
                          f"{', '.join(IMAGE_PATH_MODES)}")
    rows, source, info = source_rows_of_prep(prep_dir)
    z = load_latents(latents, len(rows))
    drawn = None
    if method == "file":
        if not selection_file:
            raise ConfigError("select.selection_file is required for method 'file' (a "
                              "selection.json saved from the latent explorer)")
        drawn = read_selection(selection_file, len(z), z.shape[1], latents_sha256(z))
    subsets = define_subsets(z, method, n_clusters=n_clusters, center=center,
                             half_widths=half_widths, axis=axis, percentile_low=percentile_low,
                             percentile_high=percentile_high, points=points, radius=radius,
                             seed=seed, drawn=drawn)
    suffix = f".{detect_particle_format(source)}"  # the format write_source_rows keeps
    if class_numbers and suffix != ".star":
        raise ConfigError(f"select.class_numbers: {source} is a cryoSPARC file; rlnClassNumber is "
                          "for RELION (import each subset's .csg into cryoSPARC instead)")
    out = prepare_outputs("select", out_dir, [f"{s.name}{suffix}" for s in subsets]
                          + ["selection.png", "select.json"]
                          + (["subsets.star"] if class_numbers else []),
                          {"latent file": latents, "original particle file": source,
                           "prepared particles": Path(prep_dir) / "particles.star",
                           **({"selection file": selection_file} if drawn else {})})
    if image_paths == "original":
        warn_relative_image_paths(source, out, info.project_dir)
    files = write_subset_set(out, source, [rows[s.members] for s in subsets],
                             [s.name for s in subsets], image_paths, info.project_dir)
    records = []
    for s, path in zip(subsets, files):
        records.append({"name": s.name, "file": path.name, "n_particles": s.count,
                        "fraction": s.count / len(z), "state": s.state.tolist(),
                        "description": s.description})
        log.info("%s: %d particles (%.1f %%) — %s → %s", s.name, s.count, 100 * s.count / len(z),
                 s.description, path)
    if class_numbers:
        write_class_numbers(source, rows, subsets, out / "subsets.star", image_paths,
                            info.project_dir)
    plot_selection(z, subsets, out / "selection.png",
                   f"{method} selection of {len(z)} particles (latents from {Path(latents).name})",
                   method=method, half_widths=half_widths, radius=radius,
                   regions={d.name: d.regions for d in drawn or []})
    params = dict(latents=str(latents), method=method, n_clusters=n_clusters, center=center,
                  half_widths=half_widths, axis=axis, percentile_low=percentile_low,
                  percentile_high=percentile_high, points=points, radius=radius, seed=seed,
                  image_paths=image_paths,
                  selection_file=str(selection_file) if selection_file else None,
                  class_numbers=class_numbers)
    summary = {"source_particles": str(source), "n_particles": len(z), "latent_dim": z.shape[1],
               "method": method, "subsets": records}
    write_provenance(out / "select.json", "select", params, extra=summary)
    return summary


def previous_subset_files(record: Path) -> list[str]:
    """File names of the subsets an earlier run listed in ``select.json`` (plain names in
    the folder only: a record edited to name other paths removes nothing elsewhere)."""
    try:
        subsets = json.loads(record.read_text()).get("subsets", [])
        names = [str(s["file"]) for s in subsets]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return []
    return [n for n in names if n and Path(n).name == n and n not in (".", "..")]


def write_subset_set(out: Path, source: Path, rows: list[np.ndarray], names: list[str],
                     image_paths: str, project_dir) -> list[Path]:
    """Write the subsets as one set: every file into a temporary folder in ``out`` first,
    then each renamed into place, then the subsets of the earlier run (its ``select.json``)
    that this one does not write removed. A failure before the renames leaves the earlier
    set as it was (and no temporary folder). Returns the files written."""
    for stale in out.glob(".select.*.part"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    previous = previous_subset_files(out / "select.json")
    staging = Path(tempfile.mkdtemp(prefix=".select.", suffix=".part", dir=out))
    try:
        staged = [write_source_rows(source, r, staging / name, image_paths=image_paths,
                                    project_dir=project_dir) for r, name in zip(rows, names)]
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = [out / path.name for path in staged]
    written = sorted(staging.iterdir())  # the subsets and their sidecars (a .cs's .csg)
    for path in written:
        os.replace(path, out / path.name)
    staging.rmdir()
    kept = {p.name for p in written}
    for name in previous:
        for stale in (name, str(Path(name).with_suffix(".csg")) if name.endswith(".cs") else None):
            if stale and stale not in kept and (out / stale).is_file():
                (out / stale).unlink()
                log.info("removed %s: a subset of the earlier selection that this one does "
                         "not write", out / stale)
    return files


def warn_relative_image_paths(source: Path, out: Path, project_dir) -> None:
    """Warn when the subsets keep relative image paths that do not resolve from ``out``:
    RELION and cryoSPARC read them from their project folder, which ``out`` is not in."""
    names = np.unique(read_particles(source, project_dir=project_dir).image_paths)
    relative = [str(n) for n in names if not Path(str(n)).is_absolute()]
    lost = [n for n in relative if not (out / n).is_file()]
    if not lost:
        return
    found = resolve_image_path(lost[0], source.parent, project_dir)
    root = Path(str(found)[: -len(lost[0])]) if found is not None and \
        str(found).endswith(lost[0]) else source.parent
    log.warning("the subsets keep the input's relative image paths (%d stack(s), e.g. %s), "
                "which resolve from %s, not from %s: open them from that folder (the "
                "RELION/cryoSPARC project), or write absolute paths (--image-paths absolute, "
                "select.image_paths: absolute)", len(lost), lost[0], root, out)


def write_class_numbers(source: Path, rows: np.ndarray, subsets, path: Path, image_paths: str,
                        project_dir=None) -> Path:
    """``subsets.star``: the rows of STAR file ``source`` of every selected particle once (in
    the input's order), with ``rlnClassNumber`` the 1-based number of its subset (the first
    that holds it)."""
    label = np.zeros(len(rows), dtype=np.int64)
    for k, s in enumerate(subsets):
        overlap = s.members & (label > 0)
        if overlap.any():
            log.warning("subsets.star: %d particle(s) of %s are in an earlier subset and keep "
                        "its class number", int(overlap.sum()), s.name)
        label[s.members & (label == 0)] = k + 1
    chosen = np.flatnonzero(label)
    order = np.argsort(rows[chosen], kind="stable")  # the input file's order
    chosen = chosen[order]
    return write_source_rows(source, rows[chosen], path, image_paths=image_paths,
                             project_dir=project_dir,
                             extra_columns={"rlnClassNumber": label[chosen]})
