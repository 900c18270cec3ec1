"""Lesion post-processing: drop tiny components, keep lesions that touch their organ.

Both steps act on whole 26-connected components, so their order does not matter. Each call
returns the steps that ran (and why one was skipped) so outputs can record them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from tumorscale.geometry import grow_box
from tumorscale.masks import bounding_box, label_components, remove_small_components
from tumorscale.sizes import equivalent_diameter_mm

_CUBE = np.ones((3, 3, 3), dtype=bool)  # 26-neighbourhood: "touching" includes corners


@dataclass(frozen=True)
class PostprocessOptions:
    """min_radius_mm: drop components whose equivalent-sphere radius is below this (mm);
    None or 0 turns the step off. restrict_to_organ: keep only lesion components that overlap
    or touch (26-neighbourhood) the organ mask, when one is available."""

    min_radius_mm: float | None = 3.0
    restrict_to_organ: bool = True

    def __post_init__(self) -> None:
        if self.min_radius_mm is not None and not self.min_radius_mm >= 0:
            raise ValueError(f"min_radius_mm must be >= 0 or None, got {self.min_radius_mm}")


@dataclass
class PostprocessResult:
    """The kept lesion mask (bool, same grid) and the steps that ran, in order."""

    mask: np.ndarray
    steps: list[str] = field(default_factory=list)


def keep_touching(mask: np.ndarray, organ: np.ndarray) -> np.ndarray:
    """Boolean copy of `mask` keeping the 26-connected components that overlap or touch
    (share a face, edge or corner with) `organ`; both arrays on the same grid."""
    if mask.shape != organ.shape:
        raise ValueError(f"lesion mask {mask.shape} and organ mask {organ.shape} differ in shape")
    box = bounding_box(mask)
    kept = np.zeros(mask.shape, dtype=bool)
    if box is None:
        return kept
    # One voxel of margin around the lesions is all the organ dilation can reach.
    grown = grow_box(box, 1, mask.shape)
    labels, _ = label_components(mask[grown])
    near_organ = ndimage.binary_dilation(organ[grown].astype(bool, copy=False), _CUBE)
    touching = np.unique(labels[near_organ])
    touching = touching[touching > 0]
    kept[grown] = np.isin(labels, touching)
    return kept


def postprocess_lesions(
    mask: np.ndarray,
    spacing_mm: Sequence[float],
    options: PostprocessOptions,
    organ_mask: np.ndarray | None = None,
    organ_source: str = "input",
) -> PostprocessResult:
    """Apply `options` to a lesion mask (nonzero = lesion; spacing in mm per array axis).

    organ_mask: the organ on the same grid, or None (then the organ step is recorded as skipped).
    organ_source: where the organ mask came from ('input' masks or the 'model'), for the record.
    """
    kept = mask.astype(bool, copy=True)
    steps: list[str] = []
    radius = options.min_radius_mm
    if radius:
        spacing = (float(spacing_mm[0]), float(spacing_mm[1]), float(spacing_mm[2]))
        kept = remove_small_components(kept, spacing, radius)
        steps.append(f"min_radius_mm={radius:g}")
    if options.restrict_to_organ:
        if organ_mask is None:
            steps.append("restrict_to_organ skipped (no organ mask)")
        else:
            kept = keep_touching(kept, organ_mask)
            steps.append(f"restrict_to_organ ({organ_source} organ mask)")
    return PostprocessResult(kept, steps)


@dataclass(frozen=True)
class LesionSizes:
    """Total volume (mm³), number of 26-connected lesions, largest equivalent diameter (mm)."""

    volume_mm3: float
    n_lesions: int
    largest_diameter_mm: float


def lesion_sizes(mask: np.ndarray, spacing_mm: Sequence[float]) -> LesionSizes:
    """Sizes of the lesions in `mask`; the diameter is that of the equal-volume sphere
    (`tumorscale.sizes.equivalent_diameter_mm`), 0 when there is no lesion."""
    voxel_mm3 = float(np.prod(np.asarray(spacing_mm, dtype=float)))
    box = bounding_box(mask)
    if box is None:
        return LesionSizes(0.0, 0, 0.0)
    _, counts = label_components(mask[box])
    largest = float(equivalent_diameter_mm(float(counts.max()) * voxel_mm3))
    return LesionSizes(float(counts.sum()) * voxel_mm3, int(counts.size), largest)
