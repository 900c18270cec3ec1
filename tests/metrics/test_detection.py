"""Patient-level detection: the 3 mm post-processing filter, sensitivity/specificity, ROC, AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tumorscale.atlas.lesions import TumorStatus
from tumorscale.masks import remove_small_components
from tumorscale.metrics.detection import (
    patient_detection,
    predicted_tumor_volume_mm3,
    roc_curve,
)

P, C, U = TumorStatus.POSITIVE, TumorStatus.CONTROL, TumorStatus.UNKNOWN

# A 3 mm equivalent radius is a volume of 4/3·π·27 = 113.10 mm³.
COMPONENTS = {
    "A": (slice(1, 5), slice(1, 5), slice(1, 8)),  # 4·4·7 = 112 voxels
    "B": (slice(8, 14), slice(1, 20), slice(10, 11)),  # 6·19·1 = 114 voxels
    "C": (slice(16, 19), slice(1, 5), slice(1, 6)),  # 3·4·5 = 60 voxels
    "D": (slice(22, 24), slice(8, 12), slice(1, 8)),  # 2·4·7 = 56 voxels
}
VOXELS = {"A": 112, "B": 114, "C": 60, "D": 56}


def four_components() -> np.ndarray:
    mask = np.zeros((26, 22, 14), dtype=np.uint8)
    for region in COMPONENTS.values():
        mask[region] = 1
    return mask


@pytest.mark.parametrize(
    ("spacing_mm", "survivors"),
    [
        # 1 mm³ voxels: only B (114 mm³, r = 3.009 mm) reaches 3 mm; A is 112 mm³, r = 2.991 mm.
        ((1.0, 1.0, 1.0), {"B"}),
        # 2 mm³ voxels: A 224, B 228, C 120 mm³ survive; D is 112 mm³.
        ((1.0, 1.0, 2.0), {"A", "B", "C"}),
        # 1.6 mm³ voxels: cut at 70.7 voxels; A (179.2 mm³) and B (182.4 mm³) survive.
        ((0.8, 0.8, 2.5), {"A", "B"}),
        # 0.125 mm³ voxels: even B is 14.25 mm³.
        ((0.5, 0.5, 0.5), set()),
    ],
)
def test_anisotropic_spacing_decides_which_components_survive(
    spacing_mm: tuple[float, float, float], survivors: set[str]
) -> None:
    mask = four_components()
    kept = remove_small_components(mask, spacing_mm, min_radius_mm=3.0)
    expected = np.zeros(mask.shape, dtype=bool)
    for name in survivors:
        expected[COMPONENTS[name]] = True
    assert kept.dtype == bool and kept.shape == mask.shape
    np.testing.assert_array_equal(kept, expected)
    voxel_volume = math.prod(spacing_mm)
    expected_volume = sum(VOXELS[name] for name in survivors) * voxel_volume
    assert predicted_tumor_volume_mm3(mask, spacing_mm) == pytest.approx(expected_volume)


def test_radius_exactly_at_the_limit_is_kept() -> None:
    mask = four_components()
    radius_of_b = float(np.cbrt(3.0 * 114.0 / (4.0 * math.pi)))  # 3.0087 mm
    kept = remove_small_components(mask, (1.0, 1.0, 1.0), min_radius_mm=radius_of_b)
    assert int(kept.sum()) == 114
    kept = remove_small_components(
        mask, (1.0, 1.0, 1.0), min_radius_mm=np.nextafter(radius_of_b, 4)
    )
    assert int(kept.sum()) == 0


def test_zero_radius_keeps_everything_and_empty_stays_empty() -> None:
    mask = four_components()
    np.testing.assert_array_equal(remove_small_components(mask, (1, 1, 1), 0.0), mask.astype(bool))
    assert predicted_tumor_volume_mm3(mask, (1, 1, 1), 0.0) == 342.0
    empty = np.zeros((5, 5, 5), dtype=np.uint8)
    assert not remove_small_components(empty, (1, 1, 1)).any()
    assert predicted_tumor_volume_mm3(empty, (1, 1, 1)) == 0.0
    with pytest.raises(ValueError, match="min_radius_mm"):
        remove_small_components(mask, (1, 1, 1), -1.0)


def test_components_touching_at_a_corner_count_as_one() -> None:
    mask = np.zeros((12, 12, 12), dtype=np.uint8)
    mask[0:4, 0:4, 0:4] = 1  # 64 voxels: r = 2.48 mm alone
    mask[4:8, 4:8, 4:8] = 1  # 64 more, 26-connected through the corner: 128 voxels, r = 3.13 mm
    assert predicted_tumor_volume_mm3(mask, (1, 1, 1)) == 128.0


VOLUMES = [0.0, 50.0, 200.0, 0.0, 120.0, 30.0, 500.0]
STATUSES = [P, P, P, C, C, C, U]


@pytest.mark.parametrize(
    ("threshold", "true_positives", "true_negatives"),
    [
        (0.0, 2, 1),  # any voxel: positives 50, 200 found; controls 120, 30 are false alarms
        (30.0, 2, 1),  # >= includes the control at exactly 30
        (100.0, 1, 2),
        (120.0, 1, 2),  # the control at exactly 120 is called positive
        (120.5, 1, 3),
        (600.0, 0, 3),
    ],
)
def test_patient_detection_by_hand(
    threshold: float, true_positives: int, true_negatives: int
) -> None:
    result = patient_detection(VOLUMES, STATUSES, threshold)
    assert (result.n_positive, result.n_control, result.n_unknown) == (3, 3, 1)
    assert (result.true_positives, result.true_negatives) == (true_positives, true_negatives)
    assert result.sensitivity == pytest.approx(true_positives / 3)
    assert result.specificity == pytest.approx(true_negatives / 3)
    assert result.to_dict()["threshold_mm3"] == threshold


def test_patient_detection_without_a_class() -> None:
    result = patient_detection([10.0, 0.0], [U, "unknown"], 0.0)
    assert (result.n_unknown, result.sensitivity, result.specificity) == (2, None, None)
    only_controls = patient_detection([0.0, 5.0], ["control", "control"], 0.0)
    assert (only_controls.sensitivity, only_controls.specificity) == (None, 0.5)


def test_patient_detection_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="threshold"):
        patient_detection([1.0], [P], -1.0)
    with pytest.raises(ValueError, match="case 1"):
        patient_detection([1.0, math.nan], [P, C], 0.0)
    with pytest.raises(ValueError, match="statuses"):
        patient_detection([1.0, 2.0], [P], 0.0)
    with pytest.raises(ValueError):
        patient_detection([1.0], ["negative"], 0.0)


def mann_whitney_auc(positives: list[float], controls: list[float]) -> float:
    wins = sum((p > c) + 0.5 * (p == c) for p in positives for c in controls)
    return wins / (len(positives) * len(controls))


def test_roc_by_hand_with_ties() -> None:
    # Positives 5, 3, 0; controls 3, 0; the unknown 7 is left out.
    # Pairs: (5,3) 1, (5,0) 1, (3,3) 1/2, (3,0) 1, (0,3) 0, (0,0) 1/2 -> 4/6.
    curve = roc_curve([5.0, 3.0, 0.0, 3.0, 0.0, 7.0], [P, P, P, C, C, U])
    assert curve.thresholds.tolist() == [math.inf, 5.0, 3.0, -math.inf]
    assert curve.sensitivity == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert curve.specificity == pytest.approx([1, 1, 0.5, 0])
    assert curve.auc == pytest.approx(4 / 6)
    assert curve.auc == pytest.approx(mann_whitney_auc([5, 3, 0], [3, 0]))
    # Trapezoids over false-positive rate 0 -> 0.5 -> 1: (1/3 + 2/3)/2·0.5 + (2/3 + 1)/2·0.5.
    assert curve.auc == pytest.approx(0.25 + 5 / 12)
    assert (curve.n_positive, curve.n_control) == (3, 2)


def test_roc_without_empty_predictions_ends_at_the_smallest_volume() -> None:
    curve = roc_curve([4.0, 9.0, 1.0, 2.0], [P, P, C, C])
    assert curve.thresholds.tolist() == [math.inf, 9.0, 4.0, 2.0, 1.0]
    assert curve.sensitivity.tolist() == [0, 0.5, 1, 1, 1]
    assert curve.specificity.tolist() == [1, 1, 1, 0.5, 0]
    assert curve.auc == 1.0


def test_roc_needs_both_classes() -> None:
    curve = roc_curve([4.0, 9.0, 3.0], [P, P, U])
    assert curve.auc is None and curve.thresholds.size == 0
    assert (curve.n_positive, curve.n_control) == (2, 0)


def test_random_roc_matches_mann_whitney_and_patient_detection() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(4, 30))
        volumes = rng.integers(0, 6, size=n).astype(float) * 40.0  # many ties and zeros
        statuses = [(P, C, U)[i] for i in rng.integers(0, 3, size=n)]
        positives = [v for v, s in zip(volumes, statuses, strict=True) if s is P]
        controls = [v for v, s in zip(volumes, statuses, strict=True) if s is C]
        curve = roc_curve(volumes, statuses)
        if not positives or not controls:
            assert curve.auc is None
            continue
        assert curve.auc == pytest.approx(mann_whitney_auc(positives, controls), abs=1e-12)
        u_statistic = stats.mannwhitneyu(positives, controls).statistic
        assert curve.auc == pytest.approx(u_statistic / (len(positives) * len(controls)), abs=1e-12)
        false_positive_rate = 1 - curve.specificity
        area = np.sum(
            np.diff(false_positive_rate) * (curve.sensitivity[1:] + curve.sensitivity[:-1]) / 2
        )
        assert curve.auc == pytest.approx(area, abs=1e-12)
        for threshold, sens, spec in zip(
            curve.thresholds, curve.sensitivity, curve.specificity, strict=True
        ):
            if math.isfinite(threshold):
                point = patient_detection(volumes, statuses, threshold)
                assert (point.sensitivity, point.specificity) == (sens, spec)
