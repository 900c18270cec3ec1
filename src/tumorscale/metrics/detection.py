"""Patient-level tumor detection per organ: post-processing, sensitivity/specificity, ROC sweep.

A case is called tumor-positive from its predicted tumor volume after dropping 26-connected
components whose equivalent-sphere radius is under `min_radius_mm` (3 mm, as the synthesis papers'
post-processing does). Sensitivity (P-Sen) counts tumor-positive cases, specificity (Spe) counts
control cases; cases of unknown status are excluded and counted, never taken as negative.

Decision rule at threshold T (mm³): positive iff volume > 0 and volume >= T. So T = 0 means "any
voxel left after post-processing", and an empty prediction is never positive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from tumorscale.atlas.lesions import TumorStatus
from tumorscale.masks import components_to_keep


def predicted_tumor_volume_mm3(
    pred: np.ndarray, spacing_mm: tuple[float, float, float], min_radius_mm: float = 3.0
) -> float:
    """Tumor volume (mm³) of a 3D prediction after `masks.remove_small_components`."""
    return components_to_keep(pred, spacing_mm, min_radius_mm).volume_mm3()


@dataclass(frozen=True)
class PatientDetection:
    """Patient-level detection at one volume threshold (mm³).

    Sensitivity = true positives / positive cases; specificity = true negatives / control cases;
    each None when its denominator is 0. Unknown-status cases are only counted.
    """

    threshold_mm3: float
    n_positive: int
    n_control: int
    n_unknown: int
    true_positives: int
    true_negatives: int
    sensitivity: float | None
    specificity: float | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class RocCurve:
    """Sensitivity and specificity at every distinct threshold (mm³), thresholds descending.

    The first threshold is +inf (no case positive). Each finite threshold T is an operating point
    of `patient_detection(..., T)`. When some case has volume 0, a last point with threshold -inf
    calls every case positive: no volume threshold does that (an empty prediction is never
    positive), but it closes the curve at (1, 0), so `auc` equals the Mann–Whitney statistic on the
    volumes with ties counted 1/2. Arrays are empty and `auc` is None unless both positive and
    control cases exist.
    """

    thresholds: np.ndarray
    sensitivity: np.ndarray
    specificity: np.ndarray
    auc: float | None
    n_positive: int
    n_control: int


def _split_by_status(
    volumes_mm3: Sequence[float], statuses: Sequence[TumorStatus | str]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Volumes of positive cases, volumes of control cases, and the number of unknown cases."""
    volumes = np.asarray(volumes_mm3, dtype=float).reshape(-1)
    if volumes.size != len(statuses):
        raise ValueError(f"{volumes.size} volumes but {len(statuses)} statuses")
    bad = np.flatnonzero(~np.isfinite(volumes) | (volumes < 0))
    if bad.size:
        raise ValueError(
            f"volumes must be finite and >= 0 mm³: case {bad[0]} has {volumes[bad[0]]}"
        )
    status = np.array([TumorStatus(value).value for value in statuses], dtype=object)
    positive = volumes[status == TumorStatus.POSITIVE.value]
    control = volumes[status == TumorStatus.CONTROL.value]
    return positive, control, int(np.count_nonzero(status == TumorStatus.UNKNOWN.value))


def _is_called_positive(volumes: np.ndarray, threshold_mm3: float) -> np.ndarray:
    return (volumes > 0) & (volumes >= threshold_mm3)


def patient_detection(
    volumes_mm3: Sequence[float],
    statuses: Sequence[TumorStatus | str],
    threshold_mm3: float,
) -> PatientDetection:
    """Patient-level sensitivity and specificity when positive means volume > 0 and >= threshold.

    `volumes_mm3` are predicted tumor volumes (mm³, after post-processing), one per case, in the
    order of `statuses` (the cases' truth status for this organ).
    """
    if not (threshold_mm3 >= 0):  # also rejects NaN
        raise ValueError(f"threshold_mm3 must be >= 0, got {threshold_mm3}")
    positive, control, n_unknown = _split_by_status(volumes_mm3, statuses)
    true_positives = int(np.count_nonzero(_is_called_positive(positive, threshold_mm3)))
    true_negatives = int(np.count_nonzero(~_is_called_positive(control, threshold_mm3)))
    return PatientDetection(
        threshold_mm3=float(threshold_mm3),
        n_positive=positive.size,
        n_control=control.size,
        n_unknown=n_unknown,
        true_positives=true_positives,
        true_negatives=true_negatives,
        sensitivity=true_positives / positive.size if positive.size else None,
        specificity=true_negatives / control.size if control.size else None,
    )


def _count_at_least(sorted_volumes: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return sorted_volumes.size - np.searchsorted(sorted_volumes, thresholds, side="left")


def roc_curve(volumes_mm3: Sequence[float], statuses: Sequence[TumorStatus | str]) -> RocCurve:
    """ROC of predicted tumor volume as the score, positive vs control cases (unknown excluded)."""
    positive, control, _ = _split_by_status(volumes_mm3, statuses)
    if positive.size == 0 or control.size == 0:
        empty = np.zeros(0)
        return RocCurve(empty, empty, empty, None, positive.size, control.size)
    scores = np.unique(np.concatenate([positive, control]))
    thresholds = np.concatenate(([np.inf], scores[scores > 0][::-1]))
    if scores[0] == 0:
        thresholds = np.append(thresholds, -np.inf)
    positive, control = np.sort(positive), np.sort(control)
    sensitivity = _count_at_least(positive, thresholds) / positive.size
    # true negatives / controls, the same arithmetic as patient_detection (bit-identical points)
    specificity = (control.size - _count_at_least(control, thresholds)) / control.size
    auc = float(np.trapezoid(sensitivity, 1.0 - specificity))
    return RocCurve(thresholds, sensitivity, specificity, auc, positive.size, control.size)
