"""Half sets for gold-standard FSC: complete, two-sided, and no image in both.

The two half maps must come from disjoint sets of **images**. A particle file can list the
same image more than once (symmetry expansion, merged particle files, a careless join):
if the copies land in different half sets, the two half maps share signal and their FSC —
the reported resolution — is inflated. And a split with one side empty gives no FSC at all.

:func:`image_groups` finds the copies (the same image index in the same stack file, after
the stack names are resolved to files and symlinks followed); :func:`assign_half_sets`
takes the input split when it is complete and two-sided, draws a seeded random split
otherwise (or when asked), and then puts every image's copies in one half set, with a
warning giving the count. prep, reconstruct-rigid and the flexible reconstruction's
re-split use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputFileError
from .utils.logging import get_logger

log = get_logger("flexcore.halves")
HALF_NAMES = ("A", "B")


def image_groups(table, source, rows=None) -> np.ndarray:
    """``(N,)`` int64 image id per particle row (of ``rows``, default every row): rows that
    reference the same image (same index in the same stack file, the stack names resolved by
    ``source``, an :class:`~flexcore.core.io.ImageSource`, and symlinks followed) share an
    id. Ids count images in order of first appearance, so rows without copies get
    ``0 … N-1``."""
    rows = np.arange(len(table)) if rows is None else np.asarray(rows, dtype=np.int64)
    paths, within = table.image_paths[rows], np.asarray(table.image_indices)[rows]
    files = {name: str(Path(source.reader(str(name)).path).resolve())
             for name in np.unique(paths)}
    stack_id = {f: i for i, f in enumerate(sorted(set(files.values())))}
    keys = np.array([stack_id[files[name]] for name in paths], dtype=np.int64)
    key = keys * (int(np.max(within, initial=0)) + 1) + within
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def random_split(groups: np.ndarray, seed: int) -> np.ndarray:
    """A seeded random split of the images into halves of equal size (±1); every row
    gets its image's half. Without copies this is ``permutation(arange(N) % 2)``."""
    n_images = int(groups.max()) + 1 if len(groups) else 0
    per_image = np.random.default_rng(seed).permutation(np.arange(n_images) % 2)
    return per_image[groups].astype(np.int8)


def join_copies(half: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, int]:
    """Put the copies of each image that the split ``half`` has in both half sets into one,
    alternating A, B, A… over those images (in order of first appearance) so the halves stay
    balanced; return the new split and the number of such images."""
    n_images = int(groups.max()) + 1 if len(groups) else 0
    in_a = np.bincount(groups, weights=half == 0, minlength=n_images) > 0
    in_b = np.bincount(groups, weights=half == 1, minlength=n_images) > 0
    split = np.flatnonzero(in_a & in_b)
    if not len(split):
        return half, 0
    target = np.full(n_images, -1, dtype=np.int8)
    target[split] = np.arange(len(split)) % 2
    out = half.copy()
    moved = target[groups] >= 0
    out[moved] = target[groups][moved]
    return out, len(split)


def assign_half_sets(half_set: np.ndarray, groups: np.ndarray, *, resplit: bool, seed: int,
                     where) -> tuple[np.ndarray, str]:
    """The half set (0 = A, 1 = B) of every particle row, and where it came from.

    Parameters
    ----------
    half_set : ``(N,)`` the input's split (0/1; -1 where a row has none).
    groups : ``(N,)`` image id per row (:func:`image_groups`).
    resplit : draw a new split even when the input's is usable.
    seed : seed of a drawn split.
    where : the particle file, named in warnings and errors.

    The input split is used when every row has one and both halves have rows; otherwise
    (with a warning) and with ``resplit`` a random split of the images is drawn. Copies of
    one image split across the halves are then joined (a warning gives the count). Raises
    :class:`~flexcore.core.errors.InputFileError` when the file holds a single image.
    """
    half = np.asarray(half_set).astype(np.int8)
    n = len(half)
    counts = [int((half == h).sum()) for h in (0, 1)]
    origin = "input"
    if resplit or (half < 0).any() or min(counts) == 0:
        if not resplit and sum(counts) == 0:
            log.info("%s: the input has no half sets; drawing a random split (seed %d)",
                     where, seed)
        elif not resplit:
            log.warning("%s: the input half sets are incomplete (A %d, B %d, none %d of %d "
                        "particles); drawing a random split (seed %d)", where, counts[0],
                        counts[1], n - sum(counts), n, seed)
        half = random_split(groups, seed)
        origin = f"random (seed {seed})"
    n_images = int(groups.max()) + 1 if n else 0
    if n_images < n:
        half, n_split = join_copies(half, groups)
        if n_split:
            log.warning("%s: %d images are listed more than once and had copies in both half "
                        "sets (%d rows for %d images in all); each image's copies are now in "
                        "one half set, so the half maps stay independent and the FSC is not "
                        "inflated", where, n_split, n, n_images)
            origin += f", {n_split} duplicated images joined"
        else:
            log.info("%s: %d rows reference %d images (copies, e.g. symmetry expansion); "
                     "each image's copies are in one half set", where, n, n_images)
    for h, name in enumerate(HALF_NAMES):
        if not (half == h).any():
            raise InputFileError(where, f"half set {name} has no particles ({n} rows, "
                                        f"{n_images} distinct images): a gold-standard FSC "
                                        "needs at least two distinct images")
    return half, origin
