"""Pixel checks on the data a user gives: images and maps that cannot be right.

A particle image with a NaN or infinite pixel, or one that is constant (all zero included),
carries no information and poisons every sum it enters (contrast scale, noise spectrum,
reconstructions, SVDs). :func:`check_images` looks at one batch as it is read (two
reductions per image, small next to reading it) and raises naming the stack file, the
image number in it and the particle's row in the metadata file.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputFileError


def bad_image_mask(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image of a ``(k, D, D)`` batch: ``(non_finite, constant)`` boolean ``(k,)``.

    ``non_finite``: some pixel is NaN or ±inf; ``constant``: every pixel has one finite value.
    """
    flat = np.asarray(images).reshape(len(images), -1)
    if flat.shape[1] == 0:
        return np.zeros(len(flat), bool), np.ones(len(flat), bool)
    lo = flat.min(axis=1)  # NaN propagates through min/max, ±inf shows in them
    hi = flat.max(axis=1)
    finite = np.isfinite(lo) & np.isfinite(hi)
    return ~finite, finite & (lo == hi)


def check_images(images: np.ndarray, stack, stack_indices, rows=None, metadata=None) -> None:
    """Raise :class:`InputFileError` for the first unusable image of a batch.

    Parameters
    ----------
    images : ``(k, D, D)`` images as read.
    stack : the stack file they come from (named in the message).
    stack_indices : ``(k,)`` 0-based index of each image in ``stack`` (reported 1-based,
        RELION's ``N@stack``).
    rows, metadata : ``(k,)`` 0-based rows of the particle metadata file ``metadata``
        (reported 1-based), when known.
    """
    non_finite, constant = bad_image_mask(images)
    bad = non_finite | constant
    if not bad.any():
        return
    first = int(np.flatnonzero(bad)[0])
    image = np.asarray(images[first])
    if non_finite[first]:
        n_bad = int((~np.isfinite(image)).sum())
        what = f"has {n_bad} NaN or infinite pixel(s)"
    else:
        value = float(image.flat[0])
        what = "is all zero" if value == 0 else f"is constant (every pixel {value:.6g})"
    where = f"image {int(stack_indices[first]) + 1}"
    if rows is not None and metadata:
        where += f" (particle row {int(rows[first]) + 1} of {metadata})"
    others = int(bad.sum()) - 1
    more = f"; {others} more such image(s) in the same batch" if others else ""
    raise InputFileError(stack, f"{where} {what}: it carries no signal and would poison every "
                                f"sum it enters; remove the particle or re-extract the stack{more}")


def check_volume(volume: np.ndarray, path, what: str = "map") -> None:
    """Raise :class:`InputFileError` when a map has non-finite voxels or is constant."""
    volume = np.asarray(volume)
    if not np.isfinite(volume).all():
        raise InputFileError(path, f"{what} contains NaN or infinite values")
    lo, hi = float(volume.min()), float(volume.max())
    if lo == hi:
        raise InputFileError(path, f"{what} is constant ({lo:.6g} everywhere): it holds no "
                                   "structure")
