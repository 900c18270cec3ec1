"""Lesion matching against hand-counted boxes and a brute-force scipy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from tumorscale.metrics.lesions import (
    LesionCounts,
    LesionMatch,
    MatchRule,
    match_lesions,
    pool_lesion_matches,
)

ISO = (1.0, 1.0, 1.0)


def boxes(shape: tuple[int, int, int], *regions: tuple[slice, slice, slice]) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    for region in regions:
        mask[region] = 1
    return mask


def sphere_diameter_mm(volume_mm3: float) -> float:
    return (6.0 * volume_mm3 / math.pi) ** (1.0 / 3.0)


CUBE = (slice(2, 12), slice(2, 12), slice(2, 12))  # 10³ = 1000 voxels


@pytest.mark.parametrize(
    ("pred_region", "expected"),
    [
        # 100 voxels inside the 1000-voxel cube: IoU = 0.1 exactly, PI-CAI's >= counts it.
        (
            (slice(2, 12), slice(2, 12), slice(2, 3)),
            {"any": True, "iou>=0.1": True, "iou>0.5": False},
        ),
        # 90 voxels inside: IoU = 0.09.
        (
            (slice(2, 11), slice(2, 12), slice(2, 3)),
            {"any": True, "iou>=0.1": False, "iou>0.5": False},
        ),
        # 500 voxels inside: IoU = 0.5 exactly, LiTS's strict > rejects it.
        (
            (slice(2, 12), slice(2, 12), slice(2, 7)),
            {"any": True, "iou>=0.1": True, "iou>0.5": False},
        ),
        # 600 voxels inside: IoU = 0.6.
        (
            (slice(2, 12), slice(2, 12), slice(2, 8)),
            {"any": True, "iou>=0.1": True, "iou>0.5": True},
        ),
        # The cube shifted by 5 along x: 500 shared of 1500, IoU = 1/3.
        (
            (slice(7, 17), slice(2, 12), slice(2, 12)),
            {"any": True, "iou>=0.1": True, "iou>0.5": False},
        ),
        # Shifted by 9: 100 shared of 1900, IoU = 0.0526.
        (
            (slice(11, 21), slice(2, 12), slice(2, 12)),
            {"any": True, "iou>=0.1": False, "iou>0.5": False},
        ),
        # Disjoint (adjacent, but in the other mask): no overlap at all.
        (
            (slice(12, 22), slice(2, 12), slice(2, 12)),
            {"any": False, "iou>=0.1": False, "iou>0.5": False},
        ),
    ],
)
def test_single_pair_iou_against_each_rule(
    pred_region: tuple[slice, ...], expected: dict[str, bool]
) -> None:
    truth = boxes((24, 16, 16), CUBE)
    pred = boxes((24, 16, 16), pred_region)
    for rule_name, hit in expected.items():
        match = match_lesions(truth, pred, ISO, rule=MatchRule(rule_name))
        assert match.truth_detected.tolist() == [hit], rule_name
        assert match.pred_matched.tolist() == [hit], rule_name
        assert match.recall == float(hit)
        assert match.precision == float(hit)


def test_truth_lesion_split_into_two_predicted_pieces() -> None:
    truth = boxes((14, 14, 14), CUBE)
    # Two slabs of 400 voxels each (gap at z = 6, 7): each has IoU 0.4 with the truth cube.
    pred = boxes((14, 14, 14), (CUBE[0], CUBE[1], slice(2, 6)), (CUBE[0], CUBE[1], slice(8, 12)))
    loose = match_lesions(truth, pred, ISO, MatchRule.ANY)
    assert (loose.n_truth, loose.n_pred) == (1, 2)
    assert (loose.recall, loose.precision, loose.f1) == (1.0, 1.0, 1.0)
    assert match_lesions(truth, pred, ISO, MatchRule.IOU_0_1).recall == 1.0
    strict = match_lesions(truth, pred, ISO, MatchRule.IOU_0_5)
    assert strict.truth_detected.tolist() == [False]
    assert strict.pred_matched.tolist() == [False, False]
    assert (strict.recall, strict.precision, strict.f1) == (0.0, 0.0, 0.0)


def test_extra_predictions_lower_precision() -> None:
    shape = (40, 16, 16)
    hit = (slice(2, 8), slice(2, 8), slice(2, 8))
    missed = (slice(20, 26), slice(2, 8), slice(2, 8))
    truth = boxes(shape, hit, missed)
    extras = [
        (slice(30, 33), slice(2, 5), slice(2, 5)),
        (slice(2, 5), slice(12, 15), slice(12, 15)),
    ]
    pred = boxes(shape, hit, *extras)
    match = match_lesions(truth, pred, ISO, MatchRule.IOU_0_5)
    assert match.truth_detected.tolist() == [True, False]
    assert match.n_pred == 3 and int(match.pred_matched.sum()) == 1
    assert match.recall == 0.5
    assert match.precision == pytest.approx(1 / 3)
    assert match.f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))  # = 0.4
    assert match.f1 == pytest.approx(0.4)


def test_diameters_from_anisotropic_volume_and_size_classes() -> None:
    shape = (50, 40, 40)
    small = (slice(1, 11), slice(1, 11), slice(1, 11))  # 1000 voxels
    large = (slice(15, 45), slice(5, 35), slice(5, 35))  # 27000 voxels
    truth = boxes(shape, small, large)
    pred = boxes(shape, large)
    match = match_lesions(truth, pred, (2.0, 1.0, 1.0))  # 2 mm³ per voxel
    expected = [sphere_diameter_mm(2000.0), sphere_diameter_mm(54000.0)]  # 15.6 mm, 46.9 mm
    assert match.truth_diameters_mm == pytest.approx(expected)
    assert match.pred_diameters_mm == pytest.approx([expected[1]])
    assert match.detected_by_size() == {"<20": (0, 1), "20-50": (1, 1), ">50": (0, 0)}
    # 0.8 x 0.8 x 2.5 mm (1.6 mm³): the large lesion becomes 43200 mm³ -> 43.5 mm, still medium.
    match = match_lesions(truth, pred, (0.8, 0.8, 2.5))
    assert match.truth_diameters_mm[1] == pytest.approx(sphere_diameter_mm(43200.0))


def test_empty_cases_give_none_not_nan() -> None:
    empty = np.zeros((8, 8, 8), dtype=np.uint8)
    lesion = boxes((8, 8, 8), (slice(2, 4), slice(2, 4), slice(2, 4)))
    both = match_lesions(empty, empty, ISO)
    assert (both.n_truth, both.n_pred, both.recall, both.precision, both.f1) == (
        0,
        0,
        None,
        None,
        None,
    )
    assert both.detected_by_size() == {"<20": (0, 0), "20-50": (0, 0), ">50": (0, 0)}
    missed = match_lesions(lesion, empty, ISO)
    assert (missed.recall, missed.precision, missed.f1) == (0.0, None, 0.0)
    false_alarm = match_lesions(empty, lesion, ISO)
    assert (false_alarm.recall, false_alarm.precision, false_alarm.f1) == (None, 0.0, 0.0)


def test_components_are_26_connected_and_label_values_ignored() -> None:
    truth = np.zeros((10, 10, 10), dtype=np.uint8)
    truth[1:4, 1:4, 1:4] = 1
    truth[4:6, 4:6, 4:6] = 2  # touches the first cube only at a corner, other label value
    pred = np.zeros_like(truth)
    pred[5, 5, 5] = 1
    match = match_lesions(truth, pred, ISO)
    assert match.n_truth == 1  # one 26-connected lesion of 27 + 8 voxels
    assert match.truth_diameters_mm == pytest.approx([sphere_diameter_mm(35.0)])
    assert match.truth_detected.tolist() == [True]


def test_lesions_at_the_volume_border() -> None:
    truth = boxes((6, 6, 6), (slice(0, 2), slice(0, 2), slice(0, 2)), (slice(4, 6),) * 3)
    pred = boxes((6, 6, 6), (slice(5, 6),) * 3)
    match = match_lesions(truth, pred, ISO, MatchRule.ANY)
    assert match.truth_detected.tolist() == [False, True]
    assert match.truth_diameters_mm == pytest.approx([sphere_diameter_mm(8.0)] * 2)


def brute_force(truth: np.ndarray, pred: np.ndarray, rule: MatchRule) -> tuple[list, list]:
    """Full-volume scipy labels and a loop over every pair: slow, obviously right."""
    structure = np.ones((3, 3, 3), dtype=bool)
    truth_labels, n_truth = ndimage.label(truth, structure)
    pred_labels, n_pred = ndimage.label(pred, structure)
    detected, matched = [False] * n_truth, [False] * n_pred
    for t in range(1, n_truth + 1):
        for p in range(1, n_pred + 1):
            a, b = truth_labels == t, pred_labels == p
            iou = np.count_nonzero(a & b) / np.count_nonzero(a | b)
            ok = {"any": iou > 0, "iou>=0.1": iou >= 0.1, "iou>0.5": iou > 0.5}[rule.value]
            if ok:
                detected[t - 1] = matched[p - 1] = True
    return detected, matched


def random_boxes(
    rng: np.random.Generator, shape: tuple[int, ...], centres: np.ndarray
) -> np.ndarray:
    """Union of boxes of half-size 1-3 voxels around the centres (clipped to the volume)."""
    mask = np.zeros(shape, dtype=bool)
    for centre in centres:
        low = np.maximum(centre - rng.integers(1, 4, size=3), 0)
        high = centre + rng.integers(1, 4, size=3)
        mask[tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))] = True
    return mask


def test_random_masks_agree_with_brute_force_reference() -> None:
    rng = np.random.default_rng(7)
    outcomes = {rule: set() for rule in MatchRule}
    for _ in range(20):
        shape = (24, 20, 16)
        centres = rng.integers(0, shape, size=(6, 3))
        truth = random_boxes(rng, shape, centres)
        # Four predictions near truth lesions (IoU anywhere in [0, 1]) and two anywhere.
        near = centres[:4] + rng.integers(-1, 2, size=(4, 3))
        pred = random_boxes(rng, shape, np.concatenate([near, rng.integers(0, shape, size=(2, 3))]))
        for rule in MatchRule:
            match = match_lesions(truth, pred, ISO, rule)
            detected, matched = brute_force(truth, pred, rule)
            # scipy and cc3d both number components in raster order of their first voxel
            assert match.truth_detected.tolist() == detected
            assert match.pred_matched.tolist() == matched
            outcomes[rule].update(detected + matched)
    assert all(seen == {True, False} for seen in outcomes.values())  # every rule both ways


def test_bad_input_is_rejected() -> None:
    mask = np.zeros((4, 4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="shape"):
        match_lesions(mask, np.zeros((4, 4, 5), dtype=np.uint8), ISO)
    with pytest.raises(ValueError, match="spacing"):
        match_lesions(mask, mask, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError):
        match_lesions(mask, mask, ISO, rule="iou>0.3")  # type: ignore[arg-type]


def test_pooling_counts_every_lesion_once() -> None:
    first = LesionMatch([10.0, 30.0], [True, False], [10.0, 5.0, 5.0], [True, False, False])
    second = LesionMatch([60.0], [True], [], [])
    third = LesionMatch([], [], [], [])  # a control case with nothing predicted
    pooled = pool_lesion_matches([first, second, third])
    assert (pooled.n_truth, pooled.n_detected, pooled.n_pred, pooled.n_pred_matched) == (3, 2, 3, 1)
    assert pooled.recall == pytest.approx(2 / 3)  # T-Sen
    assert pooled.precision == pytest.approx(1 / 3)
    assert pooled.f1 == pytest.approx(2 * (2 / 3) * (1 / 3) / (2 / 3 + 1 / 3))
    assert pooled.detected_by_size() == {"<20": (1, 1), "20-50": (0, 1), ">50": (1, 1)}
    assert pooled.recall_by_size() == {"<20": 1.0, "20-50": 0.0, ">50": 1.0}
    summary = pooled.to_dict()
    assert summary["recall"] == pytest.approx(2 / 3)
    assert summary["detected_by_size"] == {"<20": [1, 1], "20-50": [0, 1], ">50": [1, 1]}


def test_pooling_nothing() -> None:
    pooled = pool_lesion_matches([])
    assert pooled == LesionCounts(0, 0, 0, 0, {"<20": (0, 0), "20-50": (0, 0), ">50": (0, 0)})
    assert (pooled.recall, pooled.precision, pooled.f1) == (None, None, None)
    assert pooled.recall_by_size() == {"<20": None, "20-50": None, ">50": None}


def test_match_arrays_are_read_only() -> None:
    match = LesionMatch([12.0], [True], [12.0], [True])
    with pytest.raises(ValueError):
        match.truth_detected[0] = False


def test_line_shaped_arrays_with_several_lesions():
    """cc3d 4.1 raises on arrays with two axes of length 1; the labelling must not."""
    line = np.zeros((1, 1, 9), bool)
    line[0, 0, [1, 2, 5, 8]] = True
    match = match_lesions(line, line, (1.0, 1.0, 1.0))
    assert match.n_truth == 3 and match.recall == 1.0


def test_size_classes_map_onto_the_papers_bins() -> None:
    from tumorscale.sizes import in_size_class

    assert in_size_class(19.9, "small") and not in_size_class(20.0, "small")
    assert in_size_class(50.0, "medium") and in_size_class(50.1, "large")
    assert not in_size_class(0.0, "small")  # a tumor that built nothing has no size class
