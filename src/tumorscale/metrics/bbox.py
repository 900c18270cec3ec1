"""Bounding boxes of binary masks, found with one pass over the full volume.

Tumors are tiny next to a 512×512×300 scan, so every metric works on the box around the masks
and the only full-volume work is finding that box.
"""

from __future__ import annotations

import numpy as np

Box = tuple[slice, slice, slice]


def _nonzero_range(flags: np.ndarray) -> tuple[int, int] | None:
    hits = np.flatnonzero(flags)
    if hits.size == 0:
        return None
    return int(hits[0]), int(hits[-1]) + 1


def _word_view(mask: np.ndarray) -> np.ndarray | None:
    """The mask as rows of 64-bit words, one row per index of axis 0 (None if it cannot be)."""
    rows = mask.reshape(mask.shape[0], -1)
    if mask.dtype != np.bool_ or not rows.flags.c_contiguous or rows.shape[1] % 8:
        return None
    return rows.view(np.uint64)


def _slab_flags(mask: np.ndarray) -> np.ndarray:
    """True for every index along axis 0 whose slab holds a foreground voxel."""
    words = _word_view(mask)
    if words is None:
        return mask.reshape(mask.shape[0], -1).any(axis=1)
    # Eight voxels per 64-bit word: the reduction reads the volume once at full width.
    return np.bitwise_or.reduce(words, axis=1) != 0


def _projection(slab: np.ndarray) -> np.ndarray:
    """The slab's maximum along axis 0: a 2-D mask over axes 1 and 2."""
    words = _word_view(slab)
    if words is None:
        return slab.any(axis=0)
    # OR of 0/1 bytes stays 0/1, so the words read back as a boolean image.
    return np.bitwise_or.reduce(words, axis=0).view(np.bool_).reshape(slab.shape[1:])


def bounding_box(mask: np.ndarray) -> Box | None:
    """Smallest box (half-open slices) holding every non-zero voxel of a 3-D mask; None if empty."""
    if mask.ndim != 3:
        raise ValueError(f"expected a 3-D mask, got shape {mask.shape}")
    x_range = _nonzero_range(_slab_flags(mask))
    if x_range is None:
        return None
    projection = _projection(mask[x_range[0] : x_range[1]])
    y_range = _nonzero_range(projection.any(axis=1))
    z_range = _nonzero_range(projection[y_range[0] : y_range[1]].any(axis=0))
    return (slice(*x_range), slice(*y_range), slice(*z_range))


def union_box(*boxes: Box | None) -> Box | None:
    """Smallest box holding all the given boxes (None entries are empty masks)."""
    present = [box for box in boxes if box is not None]
    if not present:
        return None
    return tuple(
        slice(min(box[axis].start for box in present), max(box[axis].stop for box in present))
        for axis in range(3)
    )  # type: ignore[return-value]
