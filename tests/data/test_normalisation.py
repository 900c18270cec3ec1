"""nnU-Net's CT normalisation: the window and z-score against numpy, the foreground sample
against the cache's masks, and a cache read through another window."""

from __future__ import annotations

import numpy as np
import pytest

from tumorscale.data.cache import structure_mask
from tumorscale.data.normalisation import ct_normalisation, foreground_sample
from tumorscale.preprocessing import Preprocessing, scale_intensity


def test_window_is_the_percentile_range_and_the_range_its_z_scored_ends():
    values = np.random.default_rng(0).normal(60.0, 25.0, 200_000)
    base = Preprocessing(spacing_mm=(2.0, 2.0, 2.0))
    record = ct_normalisation(base, values)
    low, high = np.percentile(values, [0.5, 99.5])
    mean, sd = values.mean(), values.std()
    assert record.spacing_mm == base.spacing_mm
    assert record.hu_window == pytest.approx((low, high), abs=1e-9)
    # a normal sample's 0.5 / 99.5 percentiles lie 2.576 SD from its mean
    assert record.intensity_range == pytest.approx((-2.576, 2.576), abs=0.03)
    hu = np.array([-500.0, low, mean, mean + sd, high, 900.0])
    expected = (np.clip(hu, low, high) - mean) / sd
    assert scale_intensity(hu, record) == pytest.approx(expected, abs=1e-5)


def test_no_foreground_or_no_spread_is_a_clear_error():
    with pytest.raises(ValueError, match="needs foreground voxels"):
        ct_normalisation(Preprocessing(), np.zeros(0))
    with pytest.raises(ValueError, match=r"with spread; its HU are all 40\.0"):
        ct_normalisation(Preprocessing(), np.full(100, 40.0))


def test_each_case_with_foreground_gives_the_same_share_of_its_own_voxels(phantom_cache):
    cache, structures = phantom_cache.cache, ("liver",)
    ids = cache.case_ids
    sample = foreground_sample(cache, ids, structures, seed=3, total=4_000)
    assert sample.size == 4_000 and sample.dtype == np.float64
    shares = []
    for case_id in ids:
        hu, bits = cache.read_case_hu(case_id)
        shares.append(np.unique(hu[structure_mask(bits, "liver")]))
    allowed = np.unique(np.concatenate(shares))
    assert np.isin(sample, allowed).all()
    again = foreground_sample(cache, ids, structures, seed=3, total=4_000)
    assert np.array_equal(sample, again)  # seeded


def test_cases_without_the_structure_add_nothing(phantom_cache):
    cache = phantom_cache.cache
    lesion = "pancreas_lesion"
    with_lesion = [c for c in cache.case_ids
                   if structure_mask(cache.read_case_hu(c)[1], lesion).any()]
    assert 0 < len(with_lesion) < len(cache.case_ids)
    sample = foreground_sample(cache, cache.case_ids, (lesion,), total=400)
    assert sample.size == len(with_lesion) * (400 // len(cache.case_ids))
    none = foreground_sample(cache, phantom_cache.healthy, (lesion,), total=400)
    assert none.size == 0


def test_cases_whose_metadata_lacks_the_structure_are_not_read(phantom_cache, monkeypatch):
    cache = phantom_cache.cache
    lesion = "pancreas_lesion"
    with_lesion = {c for c in cache.case_ids
                   if structure_mask(cache.read_case_hu(c)[1], lesion).any()}
    assert {c for c in cache.case_ids if cache.holds(c, lesion)} == with_lesion
    assert all(cache.holds(c, "pancreas") for c in cache.case_ids)
    read, reader = [], cache.read_case_hu
    monkeypatch.setattr(cache, "read_case_hu", lambda c: read.append(c) or reader(c))
    foreground_sample(cache, cache.case_ids, (lesion,), total=400)
    assert set(read) == with_lesion


def test_a_cache_read_through_another_window(phantom_cache):
    cache = phantom_cache.cache
    spacing = cache.settings.preprocessing.spacing_mm
    record = Preprocessing(spacing_mm=spacing, hu_window=(0.0, 150.0), intensity_range=(-2.0, 3.0))
    view = cache.with_preprocessing(record)
    case_id = cache.case_ids[0]
    start, size = (-5, 10, 7), (40, 40, 40)  # crosses the border: padding too
    image, bits = view.read_patch(case_id, start, size)
    hu, hu_bits = cache.read_region_hu(case_id, start, size)
    assert np.array_equal(bits, hu_bits)
    inside = (slice(5, None), slice(None), slice(None))
    assert image[inside] == pytest.approx(scale_intensity(hu[inside], record), abs=1e-6)
    assert image[0, 0, 0] == -2.0  # air beyond the border: the range's low end
    assert cache.settings.preprocessing != record  # the original reads as before
    assert view.settings.preprocessing == record
    with pytest.raises(ValueError, match="cannot be read at"):
        cache.with_preprocessing(Preprocessing(spacing_mm=(1.0, 1.0, 1.0)))
