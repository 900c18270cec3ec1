"""Lesion-wise detection: 26-connected components of truth and prediction, matched by overlap.

A truth lesion is detected when at least one predicted component matches it under the rule; a
predicted component is a true positive when it matches at least one truth lesion. Lesion recall
pooled over cases is the paper's tumor-wise sensitivity (T-Sen).

    match = match_lesions(truth, pred, spacing_mm=(0.8, 0.8, 1.0), rule=MatchRule.IOU_0_1)
    pooled = pool_lesion_matches([match, ...])
    pooled.recall, pooled.detected_by_size()
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from tumorscale.masks import (
    bounding_box,
    check_masks,
    check_spacing,
    label_components,
    union_box,
)
from tumorscale.sizes import SIZE_CLASS_LABELS, equivalent_diameter_mm, size_class_of


class MatchRule(str, Enum):
    """When a predicted component matches a truth lesion."""

    ANY = "any"  # any voxel overlap
    IOU_0_1 = "iou>=0.1"  # PI-CAI (picai_eval default): IoU >= 0.1
    IOU_0_5 = "iou>0.5"  # LiTS detect_lesions: IoU > 0.5, strict


def _pair_matches(rule: MatchRule, intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    # Integer comparisons keep the IoU thresholds exact (no rounding at IoU = 0.1 or 0.5).
    if rule is MatchRule.ANY:
        return intersection > 0
    if rule is MatchRule.IOU_0_1:
        return 10 * intersection >= union
    if rule is MatchRule.IOU_0_5:
        return 2 * intersection > union
    raise ValueError(f"unknown match rule {rule!r}")


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _f1(n_truth: int, n_pred: int, recall: float | None, precision: float | None) -> float | None:
    """Harmonic mean of precision and recall; 0 when only one side has lesions, None when none."""
    if n_truth == 0 and n_pred == 0:
        return None
    if recall is None or precision is None or recall + precision == 0:
        return 0.0  # the defined side is then 0: all predictions false, or all lesions missed
    return 2 * recall * precision / (recall + precision)


def _count_by_size(diameters_mm: np.ndarray, detected: np.ndarray) -> dict[str, tuple[int, int]]:
    counts = {label: [0, 0] for label in SIZE_CLASS_LABELS}
    for diameter, hit in zip(diameters_mm, detected, strict=True):
        entry = counts[size_class_of(float(diameter)).label]
        entry[0] += int(hit)
        entry[1] += 1
    return {name: (hits, total) for name, (hits, total) in counts.items()}


def _frozen_array(values: object, dtype: type) -> np.ndarray:
    array = np.array(values, dtype=dtype).reshape(-1)
    array.setflags(write=False)
    return array


class _DetectionRates:
    """Recall, precision and F1 from the four lesion counts (None where undefined, never NaN)."""

    n_truth: int
    n_detected: int
    n_pred: int
    n_pred_matched: int

    @property
    def recall(self) -> float | None:
        """Detected truth lesions / truth lesions; None without truth lesions."""
        return _ratio(self.n_detected, self.n_truth)

    @property
    def precision(self) -> float | None:
        """Matched predicted components / predicted components; None without predictions."""
        return _ratio(self.n_pred_matched, self.n_pred)

    @property
    def f1(self) -> float | None:
        """Harmonic mean of recall and precision; 0.0 when only one side has lesions, None when
        neither has any."""
        return _f1(self.n_truth, self.n_pred, self.recall, self.precision)


@dataclass(frozen=True, eq=False)
class LesionMatch(_DetectionRates):
    """Lesion matching of one case (one organ).

    Truth lesions and predicted components appear in cc3d label order (raster order of each
    component's first voxel). Diameters are equivalent-sphere diameters (mm) of the volumes (mm³).
    Arrays are read-only; `eq=False` because element-wise array equality has no single answer.
    """

    truth_diameters_mm: np.ndarray
    truth_detected: np.ndarray
    pred_diameters_mm: np.ndarray
    pred_matched: np.ndarray

    def __post_init__(self) -> None:
        for name, dtype in (
            ("truth_diameters_mm", float),
            ("truth_detected", bool),
            ("pred_diameters_mm", float),
            ("pred_matched", bool),
        ):
            object.__setattr__(self, name, _frozen_array(getattr(self, name), dtype))
        if self.truth_diameters_mm.shape != self.truth_detected.shape:
            raise ValueError("truth_diameters_mm and truth_detected differ in length")
        if self.pred_diameters_mm.shape != self.pred_matched.shape:
            raise ValueError("pred_diameters_mm and pred_matched differ in length")

    @property
    def n_truth(self) -> int:
        return int(self.truth_detected.size)

    @property
    def n_pred(self) -> int:
        return int(self.pred_matched.size)

    @property
    def n_detected(self) -> int:
        return int(np.count_nonzero(self.truth_detected))

    @property
    def n_pred_matched(self) -> int:
        return int(np.count_nonzero(self.pred_matched))

    def detected_by_size(self) -> dict[str, tuple[int, int]]:
        """(detected, total) truth lesions per size class label, every class."""
        return _count_by_size(self.truth_diameters_mm, self.truth_detected)


def match_lesions(
    truth: np.ndarray,
    pred: np.ndarray,
    spacing_mm: tuple[float, float, float],
    rule: MatchRule = MatchRule.ANY,
) -> LesionMatch:
    """Match the 26-connected components of two 3D masks (nonzero = lesion) of the same grid.

    IoU of a (truth, predicted) pair = shared voxels / voxels of their union, from voxel counts.
    Only the bounding box of the union of both masks is labelled.
    """
    check_masks(truth, pred)
    voxel_volume_mm3 = math.prod(check_spacing(spacing_mm))
    rule = MatchRule(rule)
    box = union_box(bounding_box(truth), bounding_box(pred))
    if box is None:
        return LesionMatch((), (), (), ())
    truth_labels, truth_counts = label_components(truth[box])
    pred_labels, pred_counts = label_components(pred[box])
    truth_detected = np.zeros(truth_counts.size, dtype=bool)
    pred_matched = np.zeros(pred_counts.size, dtype=bool)

    overlap = (truth_labels != 0) & (pred_labels != 0)
    truth_ids = truth_labels[overlap].astype(np.int64)
    pred_ids = pred_labels[overlap].astype(np.int64)
    # One code per (truth, pred) pair; counting codes gives every pair's intersection at once.
    codes, intersection = np.unique(
        truth_ids * (pred_counts.size + 1) + pred_ids, return_counts=True
    )
    pair_truth, pair_pred = np.divmod(codes, pred_counts.size + 1)
    union = truth_counts[pair_truth - 1] + pred_counts[pair_pred - 1] - intersection
    hits = _pair_matches(rule, intersection, union)
    truth_detected[pair_truth[hits] - 1] = True
    pred_matched[pair_pred[hits] - 1] = True

    return LesionMatch(
        truth_diameters_mm=equivalent_diameter_mm(truth_counts * voxel_volume_mm3),
        truth_detected=truth_detected,
        pred_diameters_mm=equivalent_diameter_mm(pred_counts * voxel_volume_mm3),
        pred_matched=pred_matched,
    )


@dataclass(frozen=True)
class LesionCounts(_DetectionRates):
    """Lesion counts pooled over cases; `recall` is the tumor-wise sensitivity (T-Sen)."""

    n_truth: int
    n_detected: int
    n_pred: int
    n_pred_matched: int
    by_size: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # bin: (detected, total)

    def detected_by_size(self) -> dict[str, tuple[int, int]]:
        """(detected, total) truth lesions per size class label, every class."""
        return {label: tuple(self.by_size.get(label, (0, 0))) for label in SIZE_CLASS_LABELS}

    def recall_by_size(self) -> dict[str, float | None]:
        """T-Sen per size class; None for a class without truth lesions."""
        return {name: _ratio(*counts) for name, counts in self.detected_by_size().items()}

    def to_dict(self) -> dict[str, object]:
        return {
            "n_truth": self.n_truth,
            "n_detected": self.n_detected,
            "n_pred": self.n_pred,
            "n_pred_matched": self.n_pred_matched,
            "recall": self.recall,
            "precision": self.precision,
            "f1": self.f1,
            "detected_by_size": {k: list(v) for k, v in self.detected_by_size().items()},
            "recall_by_size": self.recall_by_size(),
        }


def pool_lesion_matches(matches: Sequence[LesionMatch]) -> LesionCounts:
    """Sum lesion counts over cases (each lesion weighs the same, whatever its case)."""
    by_size = {label: [0, 0] for label in SIZE_CLASS_LABELS}
    for match in matches:
        for name, (detected, total) in match.detected_by_size().items():
            by_size[name][0] += detected
            by_size[name][1] += total
    return LesionCounts(
        n_truth=sum(match.n_truth for match in matches),
        n_detected=sum(match.n_detected for match in matches),
        n_pred=sum(match.n_pred for match in matches),
        n_pred_matched=sum(match.n_pred_matched for match in matches),
        by_size={name: (detected, total) for name, (detected, total) in by_size.items()},
    )
