"""Voxel- and surface-overlap scores of one predicted mask against its truth: DSC, NSD, HD95, MSD.

Empty masks follow an explicit policy that travels with every result:
- both empty: scored 1 (KiTS/FLARE: nothing to find, nothing found), or excluded (nnU-Net);
- exactly one empty: DSC and NSD are 0; HD95 and MSD are undefined (None, counted, never NaN).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum

import numpy as np

from tumorscale.masks import mask_overlap
from tumorscale.metrics.surface import (
    Spacing,
    mean_surface_distance_mm,
    robust_hausdorff_mm,
    surface_dice,
    surface_distances_in_box,
)

DEFAULT_TOLERANCE_MM = 2.0


class EmptyPolicy(str, Enum):
    """What a case scores when truth and prediction are both empty."""

    SCORE_ONE = "one"
    EXCLUDE = "exclude"


class EmptyCase(str, Enum):
    NONE = "none"
    BOTH = "both-empty"
    TRUTH = "truth-empty"
    PRED = "pred-empty"


@dataclass(frozen=True)
class SegmentationScores:
    """Scores of one mask pair; None means excluded (by policy) or undefined (see `empty_case`)."""

    dsc: float | None
    nsd: float | None
    hd95_mm: float | None
    msd_mm: float | None
    truth_volume_mm3: float
    pred_volume_mm3: float
    empty_case: EmptyCase
    empty_policy: EmptyPolicy
    tolerance_mm: float

    def to_dict(self) -> dict[str, object]:
        row = asdict(self)
        row["empty_case"] = self.empty_case.value
        row["empty_policy"] = self.empty_policy.value
        return row


def _empty_case(truth_count: int, pred_count: int) -> EmptyCase:
    if truth_count == 0 and pred_count == 0:
        return EmptyCase.BOTH
    if truth_count == 0:
        return EmptyCase.TRUTH
    return EmptyCase.PRED if pred_count == 0 else EmptyCase.NONE


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def segmentation_scores(
    truth: np.ndarray,
    pred: np.ndarray,
    spacing_mm: Spacing,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    empty_policy: EmptyPolicy = EmptyPolicy.SCORE_ONE,
) -> SegmentationScores:
    """DSC, NSD at `tolerance_mm`, HD95 and symmetric mean surface distance of boolean 3-D masks."""
    if truth.shape != pred.shape or truth.ndim != 3:
        raise ValueError(f"masks must be 3-D and the same shape, got {truth.shape}, {pred.shape}")
    empty_policy = EmptyPolicy(empty_policy)
    truth, pred = truth.astype(bool, copy=False), pred.astype(bool, copy=False)
    overlap = mask_overlap(truth, pred)  # counted on the box around both masks
    voxel_mm3 = float(np.prod(spacing_mm))
    truth_count, pred_count = overlap.truth_voxels, overlap.pred_voxels
    empty_case = _empty_case(truth_count, pred_count)
    volumes = {
        "truth_volume_mm3": truth_count * voxel_mm3,
        "pred_volume_mm3": pred_count * voxel_mm3,
    }
    common = {"empty_case": empty_case, "empty_policy": empty_policy, "tolerance_mm": tolerance_mm}
    if empty_case is EmptyCase.BOTH:
        perfect = empty_policy is EmptyPolicy.SCORE_ONE
        return SegmentationScores(
            dsc=1.0 if perfect else None,
            nsd=1.0 if perfect else None,
            hd95_mm=0.0 if perfect else None,
            msd_mm=0.0 if perfect else None,
            **volumes,
            **common,
        )
    distances = surface_distances_in_box(truth, pred, overlap.box, spacing_mm)
    return SegmentationScores(
        dsc=overlap.dice,
        nsd=surface_dice(distances, tolerance_mm),
        hd95_mm=_finite_or_none(robust_hausdorff_mm(distances, 95.0)),
        msd_mm=_finite_or_none(mean_surface_distance_mm(distances)),
        **volumes,
        **common,
    )
