"""On-the-fly synthesis in a region: tumor in the organ, labelled, with the intended contrast."""

from __future__ import annotations

import numpy as np
import pytest

from tests.data.conftest import PATCH, PhantomCache
from tests.data.helpers import hu_of
from tumorscale.data import structure_mask
from tumorscale.data.synth_patch import clip_region, region_box, synthesize_patch
from tumorscale.synth import max_reach_mm

ORGANS = ("pancreas", "liver", "kidney")


def test_region_read_matches_cache_and_pads_with_air(phantom_cache: PhantomCache) -> None:
    cache = phantom_cache.cache
    case = phantom_cache.healthy[0]
    hu, bits = cache.read_case_hu(case)
    region_hu, region_bits = cache.read_region_hu(case, (-4, 10, 20), (30, 30, 30))
    np.testing.assert_array_equal(region_hu[4:], hu[:26, 10:40, 20:50])
    np.testing.assert_array_equal(region_bits[4:], bits[:26, 10:40, 20:50])
    assert np.all(region_hu[:4] == -1024) and not region_bits[:4].any()


def test_region_margin_grows_with_size_class() -> None:
    reaches = [max_reach_mm("liver", size) for size in ("small", "medium", "large")]
    assert reaches == sorted(reaches) and reaches[0] > 10.0  # at least a small tumor's radius
    # Per side: the larger of the reach (10 voxels) and half the patch (24), plus the window.
    start, size = region_box((50, 50, 50), PATCH, 30.0, (3.0, 3.0, 3.0), window_mm=15.0)
    assert size == (58, 58, 58) and start == (21, 21, 21)
    start, size = region_box((50, 50, 50), PATCH, 90.0, (3.0, 3.0, 1.5), window_mm=0.0)
    assert size == (60, 60, 120) and start == (20, 20, -10)


def test_region_is_cut_to_the_scan_but_never_below_the_patch() -> None:
    patch = (32, 32, 32)
    # Inside: unchanged. Over the edge: cut at it. Cut below the patch: grown back inside.
    assert clip_region((10, 10, 10), (60, 60, 60), (100, 100, 100), patch) == (
        (10, 10, 10), (60, 60, 60))
    start, size = clip_region((-20, 70, 5), (60, 60, 60), (100, 100, 100), patch)
    assert start == (0, 68, 5) and size == (40, 32, 60)  # 30 left in y: grown to 32 inside
    # A scan thinner than the patch: the whole scan, centred in a padded patch-long axis.
    start, size = clip_region((-20, 0, 0), (60, 40, 40), (20, 100, 100), patch)
    assert start[0] == -6 and size[0] == 32


def test_synthesized_patches_hold_a_tumor_in_the_organ(phantom_cache: PhantomCache) -> None:
    cache = phantom_cache.cache
    clip = cache.settings.preprocessing.hu_window
    case = phantom_cache.healthy[0]
    placed = 0
    for seed in range(12):
        made = synthesize_patch(cache, case, PATCH, ORGANS, np.random.default_rng(seed),
                                size_mix=(1.0, 0.0, 0.0))
        assert made.image.shape == PATCH and made.bits.shape == PATCH
        if made.skipped:
            continue
        placed += 1
        lesion = structure_mask(made.bits, f"{made.organ}_lesion")
        organ = structure_mask(made.bits, made.organ)
        assert lesion.sum() > 10
        # The tumor is the organ's (its voxels lie in the organ or where it grew).
        assert np.mean(organ[lesion]) > 0.5
        # Only this organ's lesion bit is set: a control case had no tumor.
        others = [o for o in ORGANS if o != made.organ]
        assert not any(structure_mask(made.bits, f"{o}_lesion").any() for o in others)
        record = made.record
        tumor_hu = float(np.median(hu_of(made.image, cache.settings.preprocessing)[lesion]))
        if clip[0] + 20 < tumor_hu < clip[1] - 20:  # not flattened by the window
            achieved = tumor_hu - record.organ_median_hu
            assert abs(achieved - record.params.contrast_hu) < 25.0
            assert np.sign(achieved) == np.sign(record.params.contrast_hu)
    assert placed >= 9  # skips are rare


def test_synthesis_is_deterministic(phantom_cache: PhantomCache) -> None:
    case = phantom_cache.healthy[1]
    first = synthesize_patch(phantom_cache.cache, case, PATCH, ORGANS, np.random.default_rng(3))
    again = synthesize_patch(phantom_cache.cache, case, PATCH, ORGANS, np.random.default_rng(3))
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.bits, again.bits)
    assert first.record == again.record


def test_the_case_phase_from_preprocessing_reaches_the_synthesizer(
    phantom_cache: PhantomCache,
) -> None:
    """Preprocessing estimates each case's contrast phase once (phantoms are portal-venous);
    on-the-fly synthesis uses that estimate instead of measuring it on the patch region."""
    from tumorscale.data.cache import BitMask

    cache = phantom_cache.cache
    case = phantom_cache.healthy[0]
    record = cache.case_meta(case)["contrast_phase"]
    assert record["phase"] == "portal_venous" and record["confident"]
    made = synthesize_patch(cache, case, PATCH, ORGANS, np.random.default_rng(3),
                            size_mix=(1.0, 0.0, 0.0))
    assert made.record is not None and made.record.params is not None
    assert made.record.params.phase == "portal_venous"
    # Region masks decode on demand, and a slice equals the same slice of the full decode.
    _, bits = cache.read_case_hu(case)
    mask = BitMask(bits, np.uint64(1) << np.uint64(3))
    box = (slice(5, 25), slice(3, 40, 2), slice(None))
    np.testing.assert_array_equal(mask[box], np.asarray(mask)[box])
    np.testing.assert_array_equal(np.asarray(mask), ((bits >> np.uint64(3)) & np.uint64(1)))


def test_a_writeable_bitmask_writes_only_its_bit_and_only_the_slice() -> None:
    """The synthesizer writes pushed masks through `BitMask` into the region's bits, in its
    crop: other structures' bits and voxels outside the slice stay as they were."""
    from tumorscale.data.cache import BitMask

    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**20, size=(12, 10, 8)).astype(np.uint64)
    before = bits.copy()
    bit = np.uint64(1) << np.uint64(5)
    read_only = BitMask(bits, bit)
    with pytest.raises(ValueError, match="read-only"):
        read_only[0:2] = 1
    mask = BitMask(bits, bit, writeable=True)
    decoded = np.asarray(mask).copy()  # decoded first: the cached decode must follow the write
    box = (slice(2, 7), slice(1, 9), slice(3, 6))
    written = rng.integers(0, 2, size=(5, 8, 3)).astype(np.uint8)
    mask[box] = written
    decoded[box] = written
    np.testing.assert_array_equal(np.asarray(mask), decoded)
    np.testing.assert_array_equal((bits & bit) != 0, decoded.astype(bool))
    np.testing.assert_array_equal(bits & ~bit, before & ~bit)
    grown = BitMask(bits, bit, writeable=True)
    grown[box] |= np.ones((5, 8, 3), dtype=np.uint8)  # augmented assignment: read, or, write
    assert np.all((bits[box] & bit) != 0)
