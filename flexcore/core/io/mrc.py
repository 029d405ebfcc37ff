"""MRC maps and MRCS stacks: read with voxel size, memory-map stacks, write atomically.

Arrays follow mrcfile's order: maps ``[z, y, x]``, stacks ``[n, y, x]``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np

from ..errors import InputFileError
from ..utils.atomic import atomic_path
from ..utils.disk import check_free_space, preallocate


def _open(path, mode="r", mmap=False):
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "file does not exist")
    if path.stat().st_size < 1024:
        raise InputFileError(path, f"too small to be an MRC file ({path.stat().st_size} bytes)")
    opener = mrcfile.mmap if mmap else mrcfile.open
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return opener(path, mode=mode, permissive=True)
    except Exception as exc:  # mrcfile raises ValueError/OSError with terse messages
        raise InputFileError(path, f"cannot be read as MRC: {exc}") from exc


def _voxel_size(m) -> float:
    vs = m.voxel_size
    return float(vs.x)


def read_map_header(path) -> tuple[int, int, int]:
    """``(nx, ny, nz)`` of an MRC file from its header alone (no data read)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with mrcfile.open(path, header_only=True, permissive=True) as m:
                h = m.header
                return int(h.nx), int(h.ny), int(h.nz)
    except Exception as exc:  # mrcfile raises ValueError/OSError with terse messages
        raise InputFileError(path, f"cannot be read as MRC: {exc}") from exc


def read_map(path) -> tuple[np.ndarray, float]:
    """Read a cubic 3-D map; returns ``(volume[z, y, x] float32, voxel_size_A)``.

    A voxel size of 0 in the header is returned as 0.0; callers that need it say so.
    """
    with _open(path) as m:
        if m.data is None:
            raise InputFileError(path, "header present but no data (truncated file?)")
        data = np.asarray(m.data, dtype=np.float32)
        voxel = _voxel_size(m)
        expected = int(m.header.nx) * int(m.header.ny) * int(m.header.nz)
    if data.size != expected:
        raise InputFileError(path, f"data holds {data.size} values, header says {expected}")
    if data.ndim != 3 or len(set(data.shape)) != 1:
        raise InputFileError(path, f"expected a cubic 3-D map, got shape {data.shape} (z, y, x)")
    if not np.isfinite(data).all():
        raise InputFileError(path, "map contains NaN or infinite values")
    return data.copy(), voxel


def read_half_maps(path_a, path_b) -> tuple[np.ndarray, np.ndarray, float]:
    """Two half maps of one reconstruction: ``(half_a, half_b, voxel_size_A)``. Refuses,
    naming the second file, halves of different boxes or voxel sizes (one of them from
    another reconstruction)."""
    a, voxel_a = read_map(path_a)
    b, voxel_b = read_map(path_b)
    if a.shape != b.shape or abs(voxel_a - voxel_b) > 1e-3 * max(voxel_a, voxel_b):
        raise InputFileError(path_b, f"half map is {b.shape[0]} px at {voxel_b:.4g} Å/px but "
                                     f"its other half {path_a} is {a.shape[0]} px at "
                                     f"{voxel_a:.4g} Å/px: both halves must come from one "
                                     "reconstruction")
    return a, b, voxel_a


def read_mask(path, box: int, pixel_size_A: float | None = None, resample: bool = False) -> np.ndarray:
    """Read a mask and check it matches the map's ``box`` (and pixel size when known).

    With ``resample``, a mask of another box that spans the same physical extent (e.g. made
    at the full-resolution box for a map at the training box) is resampled onto ``box``
    (trilinear, centre voxel kept) instead of being refused.
    """
    mask, voxel = read_map(path)
    n = mask.shape[0]
    same_extent = bool(pixel_size_A and voxel
                       and abs(n * voxel - box * pixel_size_A) <= 0.01 * box * pixel_size_A)
    if n != box and not (resample and same_extent):
        raise InputFileError(path, f"mask box {n} does not match the map box {box}"
                             + (f" ({n * voxel:.1f} Å vs {box * pixel_size_A:.1f} Å across)"
                                if pixel_size_A and voxel else ""))
    if n != box:
        from ..masks import resize_mask
        from ..utils.logging import get_logger

        get_logger("flexcore.io").info("%s: resampling the mask from %d to %d voxels (same %.1f Å "
                                       "extent)", path, n, box, box * pixel_size_A)
        mask, voxel = resize_mask(mask, box, order=1), pixel_size_A
    if pixel_size_A and voxel and abs(voxel - pixel_size_A) > 1e-3 * pixel_size_A:
        raise InputFileError(
            path, f"mask voxel size {voxel:.4f} Å does not match the map's {pixel_size_A:.4f} Å"
        )
    if mask.min() < -1e-3 or mask.max() > 1 + 1e-3:
        raise InputFileError(path, f"mask values must lie in [0, 1], got {mask.min():.3g} … {mask.max():.3g}")
    if mask.min() == mask.max():
        what = "empty (0 everywhere)" if mask.min() == 0 else f"constant ({float(mask.min()):.6g} " \
                                                               "everywhere)"
        raise InputFileError(path, f"mask is {what}: it does not separate the particle from the "
                                   "solvent")
    return np.clip(mask, 0.0, 1.0)


def _stamp(m) -> None:
    """Replace mrcfile's time-stamped label with a fixed one, so the same data give the same
    bytes (reproducible pipelines compare files byte for byte)."""
    from ... import __version__

    m.header.label[0] = f"flexcore {__version__}".encode()
    m.header.nlabl = 1


def write_map(path, volume: np.ndarray, voxel_size_A: float, origin_A=None) -> None:
    """Write a 3-D map (float32) with its voxel size, atomically.

    ``origin_A`` (x, y, z) goes into the header's origin; by default it is 0, which places
    the map where RELION and cryoSPARC put their reconstructions.
    """
    volume = np.ascontiguousarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"write_map expects a 3-D array, got shape {volume.shape}")
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as m:
            m.set_data(volume)
            m.voxel_size = voxel_size_A
            if origin_A is not None:
                m.header.origin.x, m.header.origin.y, m.header.origin.z = origin_A
            m.update_header_stats()
            _stamp(m)


def write_stack(path, images: np.ndarray, pixel_size_A: float) -> None:
    """Write an image stack ``[n, y, x]`` as MRCS (float32), atomically."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise ValueError(f"write_stack expects [n, y, x], got shape {images.shape}")
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as m:
            m.set_data(images)
            m.set_image_stack()
            m.voxel_size = pixel_size_A
            m.update_header_stats()
            _stamp(m)


class StackWriter:
    """Write a large stack slice by slice into a memory-mapped file, then rename it.

    Use as a context manager; the final file appears only if the block ends without error.
    Before anything is written the folder must have room for the whole stack
    (:func:`~flexcore.core.utils.disk.check_free_space`), and the file's blocks are reserved
    (:func:`~flexcore.core.utils.disk.preallocate`): a disk that fills up meanwhile is a
    one-line :class:`~flexcore.core.errors.OutputPathError` naming the folder, never a
    ``SIGBUS`` from a page of the map with no block behind it.
    """

    def __init__(self, path, n: int, size: int, pixel_size_A: float):
        self.path = Path(path)
        self.n, self.size, self.pixel_size_A = n, size, pixel_size_A
        self._ctx = None
        self._mrc = None

    def __enter__(self):
        folder = self.path.parent
        check_free_space(folder, 1024 + 4 * self.n * self.size**2, what=f"{self.path.name}")
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        try:
            self._mrc = mrcfile.new_mmap(tmp, shape=(self.n, self.size, self.size), mrc_mode=2,
                                         overwrite=True)
            with open(tmp, "r+b") as fh:
                preallocate(fh, os.path.getsize(tmp), folder)
        except BaseException as err:
            if self._mrc is not None:
                self._mrc.close()
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise
        self._mrc.set_image_stack()
        self._mrc.voxel_size = self.pixel_size_A
        return self

    def write(self, start: int, images: np.ndarray) -> None:
        self._mrc.data[start:start + len(images)] = images

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._mrc.update_header_stats()
                _stamp(self._mrc)
            self._mrc.close()
        except BaseException as err:  # closing failed: drop the temporary file, re-raise
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise
        return self._ctx.__exit__(exc_type, exc, tb)


class StackReader:
    """Memory-mapped access to one MRC/MRCS stack; reads slices without loading the file.

    A 2-D file counts as a stack of one image; a 3-D ``.mrc`` is read as a stack (RELION
    3.0 extracts such files).
    """

    def __init__(self, path):
        self.path = Path(path)
        self._mrc = _open(self.path, mmap=True)
        data = self._mrc.data
        if data is None:
            raise InputFileError(self.path, "header present but no image data")
        hdr = self._mrc.header
        expected = int(hdr.nx) * int(hdr.ny) * int(hdr.nz)
        file_bytes = (os.path.getsize(self.path) - self._mrc.header.nbytes
                      - self._mrc.extended_header.nbytes)
        if file_bytes < expected * data.dtype.itemsize:
            raise InputFileError(self.path, "stack is shorter than its header says (truncated)")
        self.data = data if data.ndim == 3 else data[None]
        if self.data.shape[1] != self.data.shape[2]:
            raise InputFileError(self.path, f"images must be square, got {self.data.shape[1:]}")
        self.pixel_size_A = _voxel_size(self._mrc)

    @property
    def n(self) -> int:
        return self.data.shape[0]

    @property
    def box(self) -> int:
        return self.data.shape[-1]

    def read(self, indices) -> np.ndarray:
        """Images at 0-based ``indices`` (sorted reads are fastest), float32 copy."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise InputFileError(
                self.path, f"image index {int(idx.max()) + 1} requested but the stack holds {self.n}"
            )
        return np.asarray(self.data[idx], dtype=np.float32)

    def close(self) -> None:
        self._mrc.close()
