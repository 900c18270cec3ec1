"""Binary-mask helpers shared by every layer: where a mask is, its components, overlap and union.

Bottom of the package (imports numpy and cc3d only; `tumorscale.geometry` is its sibling, so
neither imports the other). Every function treats a mask's nonzero voxels as foreground.

- Where: `bounding_box` (one pass over the volume, 8 voxels per 64-bit word for byte masks),
  `mask_bounds` (the same box as [low, high) index arrays), `union_box`.
- Components: `label_components` (26-connected, cc3d), `components_to_keep` and
  `remove_small_components` (drop components whose equivalent-sphere radius, from their volume
  in mm³, is below a limit).
- Overlap: `mask_overlap` (voxel counts on the box of both masks) and `dice`, the one DSC core.
- Union: `mask_union` of several masks of one grid.

Tumors are tiny next to a 512×512×300 scan, so the component and overlap work happens on the box
around the masks and the only full-volume pass is finding that box.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cc3d
import numpy as np

Box = tuple[slice, slice, slice]


# --- where a mask is -----------------------------------------------------------------------


def _words(flat: np.ndarray) -> np.ndarray | None:
    """A C-contiguous 2-D byte mask as rows of 64-bit words (None when it cannot be viewed so)."""
    if flat.dtype.itemsize != 1 or not flat.flags.c_contiguous or flat.shape[1] % 8:
        return None
    return flat.view(np.uint64)


def _any_per_row(mask: np.ndarray) -> np.ndarray:
    """True for every index along axis 0 whose slab holds a nonzero voxel."""
    if not mask.flags.c_contiguous:
        return mask.any(axis=tuple(range(1, mask.ndim)))
    flat = mask.reshape(mask.shape[0], -1)
    words = _words(flat)
    if words is None:
        return flat.any(axis=1)
    # Eight voxels per 64-bit word: the reduction reads the volume once at full width.
    return np.bitwise_or.reduce(words, axis=1) != 0


def _any_over_leading(slab: np.ndarray) -> np.ndarray:
    """OR of a slab over axis 0: a mask over the remaining axes."""
    if not slab.flags.c_contiguous:
        return slab.any(axis=0)
    words = _words(slab.reshape(slab.shape[0], -1))
    if words is None:
        return slab.any(axis=0)
    return (np.bitwise_or.reduce(words, axis=0).view(np.uint8) != 0).reshape(slab.shape[1:])


def _span(flags: np.ndarray) -> slice | None:
    hits = np.flatnonzero(flags)
    return None if hits.size == 0 else slice(int(hits[0]), int(hits[-1]) + 1)


def bounding_box(mask: np.ndarray) -> Box | None:
    """Smallest box (half-open slices, one per axis) holding every nonzero voxel; None if there
    is none. 3-D masks take one pass over the volume along its contiguous axis, then projections
    of the slab that holds the mask; other dimensions use per-axis projections."""
    mask = np.asarray(mask)
    if mask.size == 0:
        return None
    if mask.ndim != 3:
        spans = []
        for axis in range(mask.ndim):
            span = _span(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
            if span is None:
                return None
            spans.append(span)
        return tuple(spans)  # type: ignore[return-value]
    if mask.flags.f_contiguous and not mask.flags.c_contiguous:  # e.g. straight from nibabel
        box = bounding_box(mask.T)
        return None if box is None else box[::-1]  # type: ignore[return-value]
    rows = _span(_any_per_row(mask))
    if rows is None:
        return None
    plane = _any_over_leading(mask[rows])  # (y, z), small
    columns = _span(plane.any(axis=1))
    depth = _span(plane[columns].any(axis=0))  # type: ignore[index]
    return rows, columns, depth  # type: ignore[return-value]


def mask_bounds(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """`bounding_box` as [low, high) voxel index arrays (int64), or None if the mask is empty."""
    box = bounding_box(mask)
    if box is None:
        return None
    return np.array([s.start for s in box]), np.array([s.stop for s in box])


def union_box(*boxes: tuple[slice, ...] | None) -> Box | None:
    """Smallest box holding all the given boxes (None entries are empty masks; None if all are)."""
    present = [box for box in boxes if box is not None]
    if not present:
        return None
    return tuple(
        slice(min(box[axis].start for box in present), max(box[axis].stop for box in present))
        for axis in range(len(present[0]))
    )  # type: ignore[return-value]


# --- connected components -----------------------------------------------------------------


def check_masks(*masks: np.ndarray) -> None:
    """ValueError unless every mask is 3D and all have the same shape."""
    if any(mask.ndim != 3 for mask in masks):
        raise ValueError(f"masks must be 3D, got shapes {[mask.shape for mask in masks]}")
    if len({mask.shape for mask in masks}) > 1:
        raise ValueError(f"masks differ in shape: {[mask.shape for mask in masks]}")


def check_spacing(spacing_mm: Sequence[float]) -> tuple[float, float, float]:
    """Voxel spacing as three floats (mm); ValueError unless all are positive and finite."""
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing_mm must be three positive finite values, got {spacing_mm}")
    return spacing  # type: ignore[return-value]


def label_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """26-connected labels (0 = background, cc3d raster order) and the voxel count of each label
    1..N of a 3-D mask."""
    # cc3d 4.1 fails on line-shaped arrays (two axes of length 1): pad those axes, then crop.
    pad = [(1, 1) if size == 1 else (0, 0) for size in mask.shape]
    padded = np.pad(mask.astype(bool, copy=False), pad) if any(p != (0, 0) for p in pad) else mask
    labels, count = cc3d.connected_components(
        padded.astype(bool, copy=False), connectivity=26, return_N=True
    )
    labels = labels[
        tuple(slice(low, low + size) for (low, _), size in zip(pad, mask.shape, strict=True))
    ]
    voxel_counts = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return labels, voxel_counts


def equivalent_radius_mm(volume_mm3: np.ndarray) -> np.ndarray:
    """Radius (mm) of the sphere of volume `volume_mm3`: cbrt(3V / 4π)."""
    return np.cbrt(3.0 * volume_mm3 / (4.0 * math.pi))


@dataclass(frozen=True)
class KeptComponents:
    """The components of a mask on its bounding box and which of them survive a size limit.

    box: the mask's bounding box (None when empty); labels: `label_components` of `mask[box]`;
    keep: per label (index 0 = background, always False) whether it is kept;
    voxel_volume_mm3: the volume of one voxel."""

    box: Box | None
    labels: np.ndarray
    keep: np.ndarray
    voxel_volume_mm3: float

    def mask(self, shape: tuple[int, ...]) -> np.ndarray:
        """The kept components as a boolean mask of the full grid `shape`."""
        kept = np.zeros(shape, dtype=bool)
        if self.box is not None:
            kept[self.box] = self.keep[self.labels]
        return kept

    def volume_mm3(self) -> float:
        """Total volume (mm³) of the kept components."""
        if self.box is None:
            return 0.0
        voxel_counts = np.bincount(self.labels.ravel(), minlength=self.keep.size)
        return float(voxel_counts[self.keep].sum() * self.voxel_volume_mm3)


def components_to_keep(
    mask: np.ndarray, spacing_mm: Sequence[float], min_radius_mm: float
) -> KeptComponents:
    """26-connected components of a 3-D mask, each kept unless its equivalent-sphere radius
    cbrt(3V/4π), V its volume in mm³ (voxels × product of `spacing_mm`), is strictly below
    `min_radius_mm`. ValueError on a non-3-D mask, a bad spacing or a negative radius."""
    check_masks(mask)
    voxel_volume_mm3 = math.prod(check_spacing(spacing_mm))
    if not (math.isfinite(min_radius_mm) and min_radius_mm >= 0):
        raise ValueError(f"min_radius_mm must be finite and >= 0, got {min_radius_mm}")
    box = bounding_box(mask)
    if box is None:
        return KeptComponents(None, np.zeros((0, 0, 0), np.uint32), np.zeros(1, bool),
                              voxel_volume_mm3)
    labels, voxel_counts = label_components(mask[box])
    radii = equivalent_radius_mm(voxel_counts * voxel_volume_mm3)
    keep = np.concatenate(([False], radii >= min_radius_mm))  # strictly below the radius: dropped
    return KeptComponents(box, labels, keep, voxel_volume_mm3)


def remove_small_components(
    mask: np.ndarray, spacing_mm: Sequence[float], min_radius_mm: float = 3.0
) -> np.ndarray:
    """Boolean copy of a 3D mask (nonzero = foreground) without the 26-connected components whose
    equivalent-sphere radius cbrt(3V/4π), V in mm³, is strictly below `min_radius_mm`."""
    return components_to_keep(mask, spacing_mm, min_radius_mm).mask(mask.shape)


# --- overlap and union --------------------------------------------------------------------


def dice(intersection: int, truth_count: int, pred_count: int) -> float | None:
    """2|T∩P| / (|T|+|P|); None when both are empty."""
    total = truth_count + pred_count
    return None if total == 0 else 2.0 * intersection / total


@dataclass(frozen=True)
class Overlap:
    """Voxel counts of two masks of one grid, found on `box` (the union of their boxes; None
    when both are empty)."""

    box: Box | None
    truth_voxels: int
    pred_voxels: int
    intersection: int

    @property
    def dice(self) -> float | None:
        """2|T∩P| / (|T|+|P|); None when both masks are empty."""
        return dice(self.intersection, self.truth_voxels, self.pred_voxels)


def mask_overlap(truth: np.ndarray, pred: np.ndarray) -> Overlap:
    """Voxel counts (truth, prediction, shared) of two masks (nonzero = foreground) of one
    shape, counted on the box around both (the only full-volume work is finding that box)."""
    if truth.shape != pred.shape:
        raise ValueError(f"masks differ in shape: {truth.shape}, {pred.shape}")
    box = union_box(bounding_box(truth), bounding_box(pred))
    if box is None:
        return Overlap(None, 0, 0, 0)
    truth_box = truth[box].astype(bool, copy=False)
    pred_box = pred[box].astype(bool, copy=False)
    return Overlap(
        box,
        truth_voxels=int(np.count_nonzero(truth_box)),
        pred_voxels=int(np.count_nonzero(pred_box)),
        intersection=int(np.count_nonzero(truth_box & pred_box)),
    )


def mask_union(masks: Iterable[np.ndarray], skip_mismatched: bool = False) -> np.ndarray | None:
    """Boolean union (nonzero = foreground) of masks of one grid; None when there are none.

    A mask whose shape differs from the first one's raises ValueError, or is left out when
    `skip_mismatched` (a tolerant reader of folders with stray files)."""
    union: np.ndarray | None = None
    for mask in masks:
        array = np.asarray(mask)
        if union is None:
            union = array.astype(bool, copy=True)
        elif array.shape != union.shape:
            if not skip_mismatched:
                raise ValueError(f"mask shape {array.shape} differs from {union.shape}")
        else:
            union |= array.astype(bool, copy=False)
    return union
