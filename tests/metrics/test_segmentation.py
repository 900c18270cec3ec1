"""DSC and the empty-case policy; DSC against MONAI's compute_dice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice

from tests.metrics.test_surface import _box, _random_shape
from tumorscale.metrics.segmentation import (
    EmptyCase,
    EmptyPolicy,
    segmentation_scores,
)


def test_dice_of_shifted_boxes_is_analytic():
    truth = _box((40, 40, 40), (10, 10, 10), (20, 20, 20))
    pred = np.roll(truth, 3, axis=2)
    scores = segmentation_scores(truth, pred, (0.8, 0.8, 1.5))
    assert scores.dsc == pytest.approx(2 * 700 / 2000)
    assert scores.truth_volume_mm3 == pytest.approx(1000 * 0.8 * 0.8 * 1.5)
    assert scores.hd95_mm == pytest.approx(4.5)  # the shifted end faces: 3 voxels of 1.5 mm
    assert scores.empty_case is EmptyCase.NONE


def test_nested_spheres_dice_is_volume_ratio():
    grid = np.ogrid[:50, :50, :50]
    radius2 = sum((g - 25) ** 2 for g in grid)
    truth, pred = radius2 <= 15**2, radius2 <= 10**2  # prediction inside the truth
    scores = segmentation_scores(truth, pred, (1.0, 1.0, 1.0), tolerance_mm=2.0)
    expected = 2 * pred.sum() / (truth.sum() + pred.sum())
    assert scores.dsc == pytest.approx(expected)
    assert scores.nsd == 0.0  # the surfaces are 5 mm apart everywhere, beyond 2 mm
    assert scores.msd_mm == pytest.approx(5.0, abs=0.6)


@pytest.mark.parametrize(
    ("policy", "expected"), [(EmptyPolicy.SCORE_ONE, 1.0), (EmptyPolicy.EXCLUDE, None)]
)
def test_both_empty_follows_policy(policy, expected):
    empty = np.zeros((8, 8, 8), bool)
    scores = segmentation_scores(empty, empty, (1, 1, 1), empty_policy=policy)
    assert scores.empty_case is EmptyCase.BOTH
    assert scores.dsc == expected and scores.nsd == expected
    assert scores.to_dict()["empty_policy"] == policy.value


@pytest.mark.parametrize("policy", list(EmptyPolicy))
def test_one_empty_scores_zero_never_nan(policy):
    empty = np.zeros((8, 8, 8), bool)
    full = _box((8, 8, 8), (1, 1, 1), (4, 4, 4))
    for truth, pred, case in [(full, empty, EmptyCase.PRED), (empty, full, EmptyCase.TRUTH)]:
        scores = segmentation_scores(truth, pred, (1, 1, 1), empty_policy=policy)
        assert scores.empty_case is case
        assert scores.dsc == 0.0 and scores.nsd == 0.0
        assert scores.hd95_mm is None and scores.msd_mm is None


def test_dice_agrees_with_monai_on_random_shapes():
    rng = np.random.default_rng(7)
    worst = 0.0
    for _ in range(200):
        shape = tuple(int(n) for n in rng.integers(6, 24, size=3))
        spacing = tuple(float(s) for s in rng.uniform(0.3, 3.0, size=3))
        truth, pred = _random_shape(rng, shape), _random_shape(rng, shape)
        if not (truth.any() or pred.any()):
            continue
        ours = segmentation_scores(truth, pred, spacing).dsc
        reference = compute_dice(
            torch.from_numpy(pred)[None, None].float(),
            torch.from_numpy(truth)[None, None].float(),
            include_background=True,
            ignore_empty=False,
        ).item()
        worst = max(worst, abs(ours - reference))
    assert worst < 1e-6


def test_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        segmentation_scores(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 5), bool), (1, 1, 1))
