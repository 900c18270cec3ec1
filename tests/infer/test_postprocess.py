"""Post-processing and lesion sizes, checked against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tumorscale.infer.postprocess import (
    PostprocessOptions,
    keep_touching,
    lesion_sizes,
    postprocess_lesions,
)


def cubes(shape, boxes) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    for box in boxes:
        mask[box] = 1
    return mask


def test_small_components_are_dropped() -> None:
    # 3³ = 27 mm³: radius cbrt(3*27/4π) = 1.86 mm < 3 (dropped); 5³ = 125 mm³: 3.10 mm (kept).
    mask = cubes((20, 20, 20), [np.s_[1:4, 1:4, 1:4], np.s_[10:15, 10:15, 10:15]])
    result = postprocess_lesions(mask, (1.0, 1.0, 1.0), PostprocessOptions(restrict_to_organ=False))
    assert result.mask.dtype == bool
    assert int(result.mask.sum()) == 125 and not result.mask[1:4, 1:4, 1:4].any()
    assert result.steps == ["min_radius_mm=3"]


def test_radius_uses_mm_not_voxels() -> None:
    # The same 3³ cube at 2 mm voxels: 216 mm³, radius 3.72 mm: kept.
    mask = cubes((8, 8, 8), [np.s_[1:4, 1:4, 1:4]])
    result = postprocess_lesions(mask, (2.0, 2.0, 2.0), PostprocessOptions(restrict_to_organ=False))
    assert int(result.mask.sum()) == 27


def test_lesions_must_touch_the_organ() -> None:
    organ = cubes((20, 20, 20), [np.s_[5:10, 5:10, 5:10]])
    lesions = cubes(
        (20, 20, 20),
        [
            np.s_[8:12, 8:12, 8:12],  # overlaps the organ: kept (64 voxels)
            np.s_[10:11, 4:5, 4:5],  # shares only a corner with organ voxel (9, 5, 5): kept
            np.s_[11:12, 6:7, 6:7],  # one empty voxel (x = 10) from the organ: dropped
            np.s_[12:14, 12:14, 15:17],  # far from the organ: dropped
        ],
    )
    kept = keep_touching(lesions, organ)
    assert kept[8:12, 8:12, 8:12].all() and kept[10, 4, 4]
    assert not kept[12:14, 12:14, 15:17].any() and not kept[11, 6, 6]
    assert int(kept.sum()) == 64 + 1


def test_organ_step_is_recorded_or_skipped() -> None:
    mask = cubes((12, 12, 12), [np.s_[1:8, 1:8, 1:8]])
    options = PostprocessOptions(min_radius_mm=None)
    skipped = postprocess_lesions(mask, (1, 1, 1), options)
    assert skipped.steps == ["restrict_to_organ skipped (no organ mask)"]
    assert int(skipped.mask.sum()) == 343
    far_organ = cubes((12, 12, 12), [np.s_[10:12, 10:12, 10:12]])
    ran = postprocess_lesions(mask, (1, 1, 1), options, far_organ, "model")
    assert ran.steps == ["restrict_to_organ (model organ mask)"] and not ran.mask.any()
    off = postprocess_lesions(mask, (1, 1, 1), PostprocessOptions(None, False), far_organ)
    assert off.steps == [] and int(off.mask.sum()) == 343


def test_lesion_sizes_by_hand() -> None:
    mask = cubes((20, 20, 20), [np.s_[0:5, 0:5, 0:5], np.s_[10:14, 10:14, 10:14]])
    sizes = lesion_sizes(mask, (1.0, 1.0, 2.0))
    assert sizes.volume_mm3 == pytest.approx((125 + 64) * 2.0)
    assert sizes.n_lesions == 2
    assert sizes.largest_diameter_mm == pytest.approx(2 * (3 * 250 / (4 * math.pi)) ** (1 / 3))
    empty = lesion_sizes(np.zeros((4, 4, 4), np.uint8), (1, 1, 1))
    assert (empty.volume_mm3, empty.n_lesions, empty.largest_diameter_mm) == (0.0, 0, 0.0)


def test_options_validate() -> None:
    with pytest.raises(ValueError, match="min_radius_mm"):
        PostprocessOptions(min_radius_mm=-1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        keep_touching(np.ones((2, 2, 2)), np.ones((3, 3, 3)))
