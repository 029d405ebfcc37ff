"""Segmentation inputs: UCSF Chimera/ChimeraX Segger ``.seg`` files and label ``.mrc`` maps.

Segger ``.seg`` (reference/ecosystem.md §4.6) is HDF5 with root attributes
``format='segger'``, ``format_version=2``, ``map_size`` (x, y, z) and datasets ``mask``
(leaf region id per voxel, ``[z, y, x]``, 0 = no region), ``region_ids`` and ``parent_ids``
(0 = no parent). Grouping in Segger only sets ``parent_ids``, so each voxel's leaf id is
mapped up the parent chain to its top-level ancestor: those are the segments a user sees.

Label maps are MRC volumes with one integer segment id per voxel and ``-1`` (any negative
value) for solvent.

Both readers return ``(N, N, N)`` int32 ``[z, y, x]`` labels with ``-1`` for no segment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputFileError
from ..io.mrc import read_map


def _attr_text(value) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_text(value.item())
    return str(value)


def top_level_ancestors(region_ids: np.ndarray, parent_ids: np.ndarray, path="") -> dict[int, int]:
    """``{region id: top-level ancestor id}`` following ``parent_ids`` (0 = no parent).

    Raises ``InputFileError`` naming ``path`` for a parent chain that loops or a parent id
    that is not a region.
    """
    parent = {int(r): int(p) for r, p in zip(region_ids, parent_ids)}
    root: dict[int, int] = {}
    for start in parent:
        node, seen = start, [start]
        while parent[node] != 0:
            nxt = parent[node]
            if nxt not in parent:
                raise InputFileError(path, f"region {node} has parent {nxt}, which is not in "
                                           f"region_ids")
            if nxt in seen:
                raise InputFileError(path, f"the parent chain of region {start} loops "
                                           f"({' -> '.join(map(str, seen + [nxt]))})")
            node = nxt
            seen.append(node)
        root[start] = node
    return root


def read_segger(path, box: int | None = None) -> tuple[np.ndarray, dict]:
    """Read a Segger ``.seg`` file; returns ``(labels, info)``.

    ``labels`` holds the top-level ancestor region id of each voxel (``-1`` where ``mask``
    is 0). ``info`` has ``regions`` (leaf count), ``segments`` (top-level ids) and
    ``map_name``. Raises ``InputFileError`` naming ``path`` for a non-HDF5 file, another
    format or version, missing datasets, a size that disagrees with ``map_size`` or ``box``,
    and mask ids that are not listed in ``region_ids``.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "segmentation file does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(path, f"cannot be read as a Segger .seg (HDF5) file: {exc}") from exc
    with f:
        fmt = _attr_text(f.attrs.get("format", ""))
        if fmt != "segger":
            raise InputFileError(path, f"attribute format is {fmt!r}, expected 'segger'")
        version = int(f.attrs.get("format_version", -1))
        if version != 2:
            raise InputFileError(path, f"Segger format_version {version} is not supported "
                                       f"(expected 2)")
        for name in ("mask", "region_ids", "parent_ids"):
            if name not in f:
                raise InputFileError(path, f"dataset {name!r} is missing")
        mask = np.asarray(f["mask"][...])
        region_ids = np.asarray(f["region_ids"][...]).astype(np.int64).reshape(-1)
        parent_ids = np.asarray(f["parent_ids"][...]).astype(np.int64).reshape(-1)
        map_size = f.attrs.get("map_size")
        map_name = _attr_text(f.attrs.get("map_name", f.attrs.get("name", "")))
    if mask.ndim != 3:
        raise InputFileError(path, f"mask must be 3-D, got shape {mask.shape}")
    if map_size is not None and tuple(int(s) for s in map_size) != mask.shape[::-1]:
        raise InputFileError(path, f"map_size {tuple(int(s) for s in map_size)} (x, y, z) does "
                                   f"not match the mask shape {mask.shape} (z, y, x)")
    if len(set(mask.shape)) != 1:
        raise InputFileError(path, f"mask must be cubic, got shape {mask.shape}")
    if box is not None and mask.shape[0] != box:
        raise InputFileError(path, f"segmentation box {mask.shape[0]} does not match the map "
                                   f"box {box}")
    if len(region_ids) != len(parent_ids):
        raise InputFileError(path, f"region_ids ({len(region_ids)}) and parent_ids "
                                   f"({len(parent_ids)}) differ in length")
    root = top_level_ancestors(region_ids, parent_ids, path)
    leaf, inverse = np.unique(mask, return_inverse=True)
    unknown = [int(v) for v in leaf if v != 0 and int(v) not in root]
    if unknown:
        raise InputFileError(path, f"mask holds region id(s) {unknown[:5]} not listed in "
                                   f"region_ids")
    table = np.array([root[int(v)] if v != 0 else -1 for v in leaf], dtype=np.int32)
    labels = table[inverse.reshape(mask.shape)]
    info = {"regions": int((leaf != 0).sum()),
            "segments": sorted({int(v) for v in table if v >= 0}), "map_name": map_name}
    return labels, info


def read_label_map(path, box: int, pixel_size_A: float | None = None) -> np.ndarray:
    """Read a label ``.mrc``: integer segment ids, negative = solvent (stored as ``-1``).

    Raises ``InputFileError`` naming ``path`` for a wrong box or voxel size, non-integer
    values, or a map without any segment.
    """
    data, voxel = read_map(path)
    if data.shape[0] != box:
        raise InputFileError(path, f"label map box {data.shape[0]} does not match the map "
                                   f"box {box}")
    if pixel_size_A and voxel and abs(voxel - pixel_size_A) > 1e-3 * pixel_size_A:
        raise InputFileError(path, f"label map voxel size {voxel:.4f} Å does not match the map's "
                                   f"{pixel_size_A:.4f} Å")
    rounded = np.rint(data)
    if np.abs(data - rounded).max() > 1e-3:
        raise InputFileError(path, "label map values must be integers (segment ids, -1 solvent)")
    labels = np.where(rounded < 0, -1, rounded).astype(np.int32)
    if (labels < 0).all():
        raise InputFileError(path, "label map holds no segment (every voxel is negative)")
    return labels


def read_segmentation(path, box: int, pixel_size_A: float | None = None) -> tuple[np.ndarray, dict]:
    """Segment labels from a ``.seg`` (Segger) or ``.mrc``/``.map`` label file, by suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".seg":
        return read_segger(path, box)
    if suffix in (".mrc", ".map", ".mrcs"):
        labels = read_label_map(path, box, pixel_size_A)
        return labels, {"segments": sorted(int(v) for v in np.unique(labels) if v >= 0)}
    raise InputFileError(path, f"unknown segmentation format {suffix!r}: give a Segger .seg or a "
                               f"label .mrc")
