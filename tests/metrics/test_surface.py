"""Surface distances, NSD, HD95 and MSD: analytic cases and DeepMind's surface-distance."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tumorscale.masks import bounding_box
from tumorscale.metrics.surface import (
    mean_surface_distance_mm,
    robust_hausdorff_mm,
    surface_dice,
    surface_distances,
)
from tumorscale.metrics.surfel_areas import surfel_area_table

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import surface_distance as deepmind
    from surface_distance import lookup_tables


def _box(shape, lo, hi) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    return mask


def _random_shape(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """Union of a few random ellipsoids and boxes, sometimes with holes and speckle."""
    grid = np.indices(shape).transpose(1, 2, 3, 0).astype(float)
    mask = np.zeros(shape, bool)
    for _ in range(rng.integers(1, 4)):
        centre = rng.uniform(0, shape)
        radii = rng.uniform(1, np.array(shape) / 2.5)
        if rng.random() < 0.7:
            mask |= (((grid - centre) / radii) ** 2).sum(-1) <= 1
        else:
            mask |= (np.abs(grid - centre) <= radii).all(-1)
    if rng.random() < 0.3:
        mask ^= rng.random(shape) < 0.02
    return mask


def _deepmind(truth, pred, spacing):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return deepmind.compute_surface_distances(truth, pred, spacing)


def test_area_table_matches_reference_for_anisotropic_spacing():
    for spacing in [(1.0, 1.0, 1.0), (0.7, 1.3, 2.9), (3.0, 0.5, 0.5)]:
        reference = lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
        np.testing.assert_allclose(surfel_area_table(spacing), reference, rtol=0, atol=1e-12)


def test_bounding_box_is_exact_and_none_when_empty():
    shape = (40, 33, 24)  # 33*24 is a multiple of 8, 33 alone is not: both code paths
    mask = _box(shape, (3, 5, 7), (9, 30, 8))
    assert bounding_box(mask) == (slice(3, 9), slice(5, 30), slice(7, 8))
    assert bounding_box(np.zeros(shape, bool)) is None
    odd = np.zeros((5, 3, 3), bool)
    odd[4, 2, 0] = True
    assert bounding_box(odd) == (slice(4, 5), slice(2, 3), slice(0, 1))


def test_identical_masks_score_perfectly():
    mask = _box((30, 30, 30), (5, 6, 7), (20, 18, 25))
    distances = surface_distances(mask, mask, (0.8, 0.8, 2.5))
    assert surface_dice(distances, 0.0) == 1.0
    assert robust_hausdorff_mm(distances, 95) == 0.0
    assert mean_surface_distance_mm(distances) == 0.0


@pytest.mark.parametrize("spacing", [(0.7, 1.1, 2.3), (2.0, 0.6, 0.9)])
@pytest.mark.parametrize("shift", [1, 2, 3])
def test_translated_box_distances_are_the_shift_in_mm(spacing, shift):
    truth = _box((40, 40, 40), (10, 10, 10), (22, 22, 22))
    pred = np.roll(truth, shift, axis=0)
    shift_mm = shift * spacing[0]
    distances = surface_distances(truth, pred, spacing)
    # Every surfel lies within the shift of the other surface, and the end faces exactly at it.
    assert robust_hausdorff_mm(distances, 100) == pytest.approx(shift_mm, abs=1e-12)
    assert surface_dice(distances, shift_mm) == 1.0
    assert surface_dice(distances, shift_mm * 0.999) < 1.0
    # The side faces coincide where the boxes overlap, so most of the surface is at distance 0.
    assert 0.3 < surface_dice(distances, 0.0) < 1.0


def test_far_apart_boxes_have_zero_nsd_and_known_gap():
    spacing = (1.5, 1.0, 1.0)
    truth = _box((60, 20, 20), (5, 5, 5), (10, 15, 15))
    pred = _box((60, 20, 20), (40, 5, 5), (45, 15, 15))
    distances = surface_distances(truth, pred, spacing)
    gap_mm = (40 - 10) * spacing[0]  # facing end planes: corner 10 of truth, corner 40 of pred
    assert distances.truth_to_pred_mm.min() == pytest.approx(gap_mm)
    assert surface_dice(distances, gap_mm * 0.99) == 0.0


def test_empty_masks():
    empty = np.zeros((10, 10, 10), bool)
    full = _box((10, 10, 10), (2, 2, 2), (5, 5, 5))
    both = surface_distances(empty, empty, (1, 1, 1))
    assert surface_dice(both, 2.0) is None
    assert robust_hausdorff_mm(both) is None and mean_surface_distance_mm(both) is None
    one = surface_distances(full, empty, (1, 1, 1))
    assert one.pred_empty and not one.truth_empty
    assert surface_dice(one, 2.0) == 0.0
    assert robust_hausdorff_mm(one) == np.inf and mean_surface_distance_mm(one) == np.inf


def test_agrees_with_deepmind_on_random_shapes_and_spacings():
    rng = np.random.default_rng(20251126)
    worst = 0.0
    for _ in range(250):
        shape = tuple(int(n) for n in rng.integers(6, 28, size=3))
        spacing = tuple(float(s) for s in rng.uniform(0.3, 3.0, size=3))
        tolerance = float(rng.uniform(0.0, 4.0))
        truth, pred = _random_shape(rng, shape), _random_shape(rng, shape)
        if not (truth.any() and pred.any()):
            continue
        ours = surface_distances(truth, pred, spacing)
        ref = _deepmind(truth, pred, spacing)
        np.testing.assert_allclose(ours.truth_to_pred_mm, ref["distances_gt_to_pred"], atol=1e-9)
        np.testing.assert_allclose(ours.pred_to_truth_mm, ref["distances_pred_to_gt"], atol=1e-9)
        np.testing.assert_allclose(ours.truth_areas_mm2, ref["surfel_areas_gt"], atol=1e-9)
        np.testing.assert_allclose(ours.pred_areas_mm2, ref["surfel_areas_pred"], atol=1e-9)
        checks = [
            (
                surface_dice(ours, tolerance),
                deepmind.compute_surface_dice_at_tolerance(ref, tolerance),
            ),
            (robust_hausdorff_mm(ours, 95), deepmind.compute_robust_hausdorff(ref, 95)),
        ]
        gt_mean, pred_mean = deepmind.compute_average_surface_distance(ref)
        gt_area, pred_area = ref["surfel_areas_gt"].sum(), ref["surfel_areas_pred"].sum()
        pooled = (gt_mean * gt_area + pred_mean * pred_area) / (gt_area + pred_area)
        checks.append((mean_surface_distance_mm(ours), pooled))
        for value, expected in checks:
            worst = max(worst, abs(value - expected))
    assert worst < 1e-6


def test_large_sparse_volume_agrees_with_deepmind():
    """Benchmark geometry, smaller: the box search must not lose anything at the volume edges."""
    shape, spacing = (96, 90, 64), (0.8, 0.8, 1.0)
    grid = np.ogrid[: shape[0], : shape[1], : shape[2]]

    def ball(centre, radius_mm):
        offsets = zip(grid, centre, spacing, strict=True)
        return sum(((g - c) * s) ** 2 for g, c, s in offsets) <= radius_mm**2

    truth, pred = ball((0, 45, 32), 12), ball((3, 44, 33), 13)
    ours = surface_distances(truth, pred, spacing)
    ref = _deepmind(truth, pred, spacing)
    assert surface_dice(ours, 2.0) == pytest.approx(
        deepmind.compute_surface_dice_at_tolerance(ref, 2.0), abs=1e-12
    )
    assert robust_hausdorff_mm(ours) == pytest.approx(deepmind.compute_robust_hausdorff(ref, 95))
