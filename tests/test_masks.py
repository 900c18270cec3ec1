"""Mask helpers: bounding boxes, 26-connected components, removal by size in mm³, overlap, union."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tumorscale.masks import (
    bounding_box,
    check_spacing,
    components_to_keep,
    dice,
    equivalent_radius_mm,
    label_components,
    mask_bounds,
    mask_overlap,
    mask_union,
    remove_small_components,
    union_box,
)


def _box(shape: tuple[int, ...], low: tuple[int, ...], high: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, b) for a, b in zip(low, high, strict=True))] = True
    return mask


@pytest.mark.parametrize("shape", [(40, 33, 24), (40, 33, 7), (20, 8, 8)])
def test_bounding_box_of_every_layout_and_dtype(shape: tuple[int, int, int]) -> None:
    mask = _box(shape, (3, 5, 2), (9, 7, 5))
    expected = (slice(3, 9), slice(5, 7), slice(2, 5))
    for variant in (mask, mask.astype(np.uint8) * 255, mask.astype(np.float32),
                    np.asfortranarray(mask), mask.astype(np.int16)):
        assert bounding_box(variant) == expected
    flipped = mask[::-1]  # a non-contiguous view
    assert bounding_box(flipped) == (slice(shape[0] - 9, shape[0] - 3), slice(5, 7), slice(2, 5))
    assert bounding_box(np.zeros(shape, bool)) is None
    low, high = mask_bounds(mask)
    np.testing.assert_array_equal(low, [3, 5, 2])
    np.testing.assert_array_equal(high, [9, 7, 5])
    assert mask_bounds(np.zeros(shape, np.uint8)) is None


def test_bounding_box_of_single_voxels_and_other_dimensions() -> None:
    odd = np.zeros((5, 3, 3), bool)
    odd[4, 2, 0] = True
    assert bounding_box(odd) == (slice(4, 5), slice(2, 3), slice(0, 1))
    plane = np.zeros((6, 9), bool)
    plane[1, 3:8] = True
    assert bounding_box(plane) == (slice(1, 2), slice(3, 8))
    assert bounding_box(np.zeros((0, 4, 4), bool)) is None


def test_union_box() -> None:
    a = (slice(2, 5), slice(0, 3), slice(8, 10))
    b = (slice(4, 9), slice(1, 2), slice(0, 9))
    assert union_box(a, None, b) == (slice(2, 9), slice(0, 3), slice(0, 10))
    assert union_box(None, None) is None
    assert union_box() is None


def test_label_components_are_26_connected_with_voxel_counts() -> None:
    mask = _box((12, 12, 12), (0, 0, 0), (2, 2, 2))  # 8 voxels
    mask[2, 2, 2] = True  # touches the cube at a corner only: same component
    mask |= _box((12, 12, 12), (6, 6, 6), (9, 10, 11))  # 3 * 4 * 5 = 60 voxels
    labels, counts = label_components(mask)
    assert labels.shape == mask.shape
    np.testing.assert_array_equal(counts, [9, 60])
    assert labels[0, 0, 0] == labels[2, 2, 2] == 1 and labels[8, 9, 10] == 2
    line = np.zeros((1, 1, 7), bool)  # line-shaped arrays (cc3d 4.1 fails on them unpadded)
    line[0, 0, [1, 2, 5]] = True
    labels, counts = label_components(line)
    assert labels.shape == line.shape
    np.testing.assert_array_equal(counts, [2, 1])


def test_components_are_removed_by_their_volume_in_mm3() -> None:
    spacing = (1.0, 1.0, 2.0)  # 2 mm³ voxels
    small = _box((30, 30, 30), (1, 1, 1), (3, 3, 3))  # 8 voxels = 16 mm³: r = 1.563 mm
    large = _box((30, 30, 30), (10, 10, 10), (15, 15, 15))  # 125 voxels = 250 mm³: r = 3.908 mm
    assert equivalent_radius_mm(np.array([16.0, 250.0])) == pytest.approx(
        [(3 * 16 / (4 * math.pi)) ** (1 / 3), (3 * 250 / (4 * math.pi)) ** (1 / 3)])
    mask = small | large
    np.testing.assert_array_equal(remove_small_components(mask, spacing, 3.0), large)
    np.testing.assert_array_equal(remove_small_components(mask, spacing, 1.5), mask)
    assert not remove_small_components(mask, spacing, 4.0).any()
    kept = components_to_keep(mask.astype(np.uint8), spacing, 3.0)
    assert kept.volume_mm3() == 250.0
    assert kept.voxel_volume_mm3 == 2.0
    # the same voxels on a finer grid are a smaller volume: now both go
    assert not remove_small_components(mask, (0.5, 0.5, 0.5), 3.0).any()
    empty = components_to_keep(np.zeros((4, 4, 4), bool), spacing, 3.0)
    assert empty.box is None and empty.volume_mm3() == 0.0
    with pytest.raises(ValueError, match="min_radius_mm"):
        remove_small_components(mask, spacing, -1.0)
    with pytest.raises(ValueError, match="3D"):
        remove_small_components(mask[0], spacing)


def test_check_spacing() -> None:
    assert check_spacing([1, 2.5, 0.8]) == (1.0, 2.5, 0.8)
    for bad in ((1.0, 1.0), (1.0, 0.0, 1.0), (1.0, math.nan, 1.0), (1.0, -1.0, 1.0)):
        with pytest.raises(ValueError, match="spacing_mm"):
            check_spacing(bad)


def test_overlap_and_dice_of_shifted_boxes() -> None:
    truth = _box((40, 40, 40), (10, 10, 10), (20, 20, 20))  # 1000 voxels
    pred = np.roll(truth, 3, axis=2)  # 700 shared
    overlap = mask_overlap(truth, pred)
    assert (overlap.truth_voxels, overlap.pred_voxels, overlap.intersection) == (1000, 1000, 700)
    assert overlap.box == (slice(10, 20), slice(10, 20), slice(10, 23))
    assert overlap.dice == pytest.approx(0.7)
    assert mask_overlap(truth.astype(np.uint8) * 2, pred.astype(np.uint8)).dice == 0.7
    assert dice(0, 5, 0) == 0.0 and dice(0, 0, 0) is None and dice(3, 4, 2) == 1.0
    empty = mask_overlap(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool))
    assert empty.box is None and empty.dice is None
    with pytest.raises(ValueError):
        mask_overlap(truth, truth[1:])


def test_mask_union() -> None:
    a = _box((6, 6, 6), (0, 0, 0), (2, 2, 2))
    b = _box((6, 6, 6), (4, 4, 4), (6, 6, 6)).astype(np.uint8) * 255
    union = mask_union([a, b])
    assert union.dtype == bool and union.sum() == 16
    assert a.sum() == 8  # the first mask is not modified in place
    assert mask_union([]) is None
    with pytest.raises(ValueError, match="differs"):
        mask_union([a, np.ones((2, 2, 2), bool)])
    np.testing.assert_array_equal(
        mask_union([a, np.ones((2, 2, 2), bool), b], skip_mismatched=True), union
    )
