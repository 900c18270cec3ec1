"""The cache's content: settings, HU and structure round trip, patch reads, location index."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.data.helpers import SETTINGS, write_dataset
from tumorscale.data import (
    BITS_DTYPE,
    STRUCTURES,
    CacheError,
    CacheSettingsError,
    PreprocessedCache,
    PreprocessSettings,
    preprocess_dataset,
    resample_image,
    resample_labels,
    scale_intensity,
    structure_mask,
)
from tumorscale.data.cache import init_cache
from tumorscale.io import read_nifti
from tumorscale.preprocessing import Preprocessing


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PreprocessedCache]:
    data = write_dataset(tmp_path_factory.mktemp("atlas"))
    cache_root = tmp_path_factory.mktemp("cache")
    settings = PreprocessSettings(**{**SETTINGS.to_dict(), "locations_per_structure": 50})
    report = preprocess_dataset(data, cache_root, settings)
    assert report.ok and len(report.done) == 3
    return data, PreprocessedCache.open(cache_root)


def test_settings_round_trip_and_validation() -> None:
    settings = PreprocessSettings(Preprocessing(spacing_mm=2.0, hu_window=(-100, 200)))
    assert settings.preprocessing.spacing_mm == (2.0, 2.0, 2.0)
    assert PreprocessSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    # The window and range are applied when patches are read: only the spacing and the
    # storage settings decide whether two settings can share a cache.
    assert settings.differing_keys(PreprocessSettings()) == ["spacing_mm"]
    assert PreprocessSettings(chunks=(32, 32, 32)).differing_keys(settings) == [
        "spacing_mm", "chunks"]
    for record in (Preprocessing(intensity_range=(-5.5, 3.0)), Preprocessing(intensity_range=None),
                   Preprocessing(hu_window=(-100, 200))):
        assert PreprocessSettings(record).differing_keys(PreprocessSettings()) == []
    # The flat names of settings.json build the same record.
    assert PreprocessSettings(spacing_mm=2.0, hu_clip=(-100, 200)) == settings
    with pytest.raises(ValueError, match="hu_window"):
        PreprocessSettings(hu_clip=(250, -175))
    with pytest.raises(ValueError, match="unknown preprocessing settings: colour"):
        PreprocessSettings.from_dict({"colour": "blue"})


def test_settings_file_keeps_its_flat_keys() -> None:
    """settings.json of caches made before the preprocessing record opens unchanged."""
    written_before = {"spacing_mm": [3.0, 3.0, 3.0], "hu_clip": [-175.0, 250.0],
                      "scale_to_unit": True, "chunks": [8, 8, 8], "blocks": [4, 4, 4],
                      "codec": "LZ4HC", "clevel": 5, "locations_per_structure": 10000,
                      "locations_min_fraction": 0.01, "seed": 1234, "format_version": 1}
    settings = PreprocessSettings.from_dict(written_before)
    # scale_to_unit without an intensity_range is the [0, 1] those versions wrote, not today's
    # default (HU / 100); it is written out from now on
    assert settings.preprocessing == Preprocessing(spacing_mm=3.0, intensity_range=(0, 1))
    assert settings.to_dict() == {**written_before, "intensity_range": [0.0, 1.0]}
    assert PreprocessSettings.from_dict(settings.to_dict()) == settings
    today = PreprocessSettings(spacing_mm=3.0, chunks=(8, 8, 8), blocks=(4, 4, 4))
    assert today.to_dict()["intensity_range"] == [-1.75, 2.5]
    assert PreprocessSettings.from_dict(today.to_dict()) == today
    assert settings.stored_values() == today.stored_values()  # one cache serves both
    unscaled = PreprocessSettings.from_dict({**written_before, "scale_to_unit": False})
    assert unscaled.preprocessing.intensity_range is None and unscaled.pad_value == -175.0
    assert unscaled.to_dict()["scale_to_unit"] is False
    other = PreprocessSettings(Preprocessing(intensity_range=(-1, 1)))
    assert other.to_dict()["intensity_range"] == [-1.0, 1.0]
    assert PreprocessSettings.from_dict(other.to_dict()) == other and other.pad_value == -1.0


def test_cache_records_settings_and_bit_table(built: tuple[Path, PreprocessedCache]) -> None:
    _, cache = built
    record = json.loads((cache.root / "settings.json").read_text(encoding="utf-8"))
    assert record["structures"] == list(STRUCTURES)
    assert record["bits_dtype"] == "uint64"
    assert cache.settings.preprocessing.spacing_mm == (3.0, 3.0, 3.0)
    assert len(STRUCTURES) == len(set(STRUCTURES)) <= 64


def test_hu_and_structures_round_trip(built: tuple[Path, PreprocessedCache]) -> None:
    data, cache = built
    case_id = "BDMAP_00000002"
    hu, bits = cache.read_case_hu(case_id)
    folder = data / case_id
    expected = resample_image(read_nifti(folder / "ct.nii.gz"), SETTINGS.preprocessing.spacing_mm)
    assert hu.dtype == np.int16 and bits.dtype == BITS_DTYPE
    assert hu.shape == bits.shape == expected.shape == cache.image_shape(case_id) == (20, 17, 23)
    np.testing.assert_array_equal(hu, np.rint(expected.array).astype(np.int16))
    assert hu.min() < -900 and hu.max() > 900  # stored unclipped
    np.testing.assert_allclose(cache.affine(case_id), expected.affine)
    masks = {}
    for name in ("liver", "liver_lesion", "kidney_left", "kidney_right", "aorta", "pancreas"):
        mask = read_nifti(folder / "segmentations" / f"{name}.nii.gz", kind="mask").array
        masks[name] = resample_labels(mask, hu.shape).astype(bool)
        np.testing.assert_array_equal(structure_mask(bits, name), masks[name], err_msg=name)
    np.testing.assert_array_equal(
        structure_mask(bits, "kidney"), masks["kidney_left"] | masks["kidney_right"]
    )
    for absent in ("pancreas_lesion", "uterus", "spleen"):
        assert not structure_mask(bits, absent).any()


def test_metadata_status_and_counts(built: tuple[Path, PreprocessedCache]) -> None:
    _, cache = built
    meta = cache.case_meta("BDMAP_00000001")
    assert meta["tumor_status"] == {
        "pancreas": "control", "liver": "positive", "kidney": "unknown",
        "colon": "unknown", "esophagus": "unknown", "uterus": "unknown",
    }
    _, bits = cache.read_case_hu("BDMAP_00000001")
    assert meta["lesion_voxels"]["liver"] == int(structure_mask(bits, "liver_lesion").sum()) > 0
    assert meta["lesion_voxels"]["pancreas"] == 0
    assert meta["lesion_voxels_original"]["liver"] == 81  # a radius-2.5 voxel ball
    assert meta["original"]["shape"] == [30, 26, 14]
    assert meta["original"]["on_disk_orientation"] == "LPS"
    np.testing.assert_allclose(meta["preprocessed"]["spacing_mm"], 3.0, rtol=0.03)
    assert meta["synthesis_masks"] == ["aorta", "kidney_left", "kidney_right", "liver", "pancreas"]


def _padded_patch(full: np.ndarray, start: tuple[int, ...], size: tuple[int, ...],
                  value: float) -> np.ndarray:
    pad = 64  # more than any start or size used here
    padded = np.pad(full, pad, constant_values=value)
    return padded[tuple(slice(s + pad, s + pad + n) for s, n in zip(start, size, strict=True))]


@pytest.mark.parametrize(
    "start",
    [(2, 3, 4), (0, 0, 0), (-5, 4, -2), (12, 10, 15), (-3, -4, -5), (25, 1, 1), (40, 40, 40)],
)
def test_patch_equals_padded_slice_of_the_full_case(
    built: tuple[Path, PreprocessedCache], start: tuple[int, int, int]
) -> None:
    _, cache = built
    size = (9, 11, 10)
    hu, bits = cache.read_case_hu("BDMAP_00000003")
    image, patch_bits = cache.read_patch("BDMAP_00000003", start, size)
    assert image.dtype == np.float32 and patch_bits.dtype == BITS_DTYPE
    assert image.shape == patch_bits.shape == size
    scaled = scale_intensity(hu, cache.settings)
    air = cache.settings.pad_value  # the window's low end (-1.75 for HU / 100)
    np.testing.assert_array_equal(image, _padded_patch(scaled, start, size, air))
    np.testing.assert_array_equal(patch_bits, _padded_patch(bits, start, size, 0))


def test_scale_intensity_window() -> None:
    settings = PreprocessSettings()
    hu = np.array([-1000, -175, 37.5, 250, 3000], dtype=np.float32)
    np.testing.assert_allclose(scale_intensity(hu, settings), [-1.75, -1.75, 0.375, 2.5, 2.5],
                               atol=1e-6)  # HU / 100 inside the window
    unit = PreprocessSettings(intensity_range=(0, 1))
    np.testing.assert_allclose(scale_intensity(hu, unit), [0, 0, 0.5, 1, 1], atol=1e-6)
    clipped = PreprocessSettings(scale_to_unit=False)
    np.testing.assert_array_equal(scale_intensity(hu, clipped), [-175, -175, 37.5, 250, 250])
    assert clipped.pad_value == -175.0


def test_foreground_locations_lie_inside_and_follow_the_count_rule(
    built: tuple[Path, PreprocessedCache],
) -> None:
    _, cache = built
    case_id = "BDMAP_00000001"
    _, bits = cache.read_case_hu(case_id)
    for name in ("liver", "liver_lesion", "kidney", "pancreas"):
        mask = structure_mask(bits, name)
        locations = cache.foreground_locations(case_id, name)
        assert locations.dtype == np.int32 and locations.shape[1] == 3
        n = int(mask.sum())
        assert len(locations) == max(min(n, 50), math.ceil(0.01 * n))
        assert mask[tuple(locations.T)].all(), name
        assert len(np.unique(locations, axis=0)) == len(locations)
    assert cache.foreground_locations(case_id, "uterus_lesion").shape == (0, 3)
    with pytest.raises(ValueError, match="no location index"):
        cache.foreground_locations(case_id, "aorta")


def test_synthesis_view_of_a_cached_case(built: tuple[Path, PreprocessedCache]) -> None:
    _, cache = built
    volume, masks = cache.read_case_for_synthesis("BDMAP_00000001")
    assert volume.array.dtype == np.float32 and volume.shape == cache.image_shape("BDMAP_00000001")
    np.testing.assert_allclose(volume.affine, cache.affine("BDMAP_00000001"))
    assert sorted(masks) == cache.case_meta("BDMAP_00000001")["synthesis_masks"]
    assert all(mask.dtype == np.uint8 and mask.max() == 1 for mask in masks.values())


def test_opening_with_other_settings_or_no_cache_fails(
    built: tuple[Path, PreprocessedCache], tmp_path: Path
) -> None:
    _, cache = built
    with pytest.raises(CacheSettingsError, match=r"spacing_mm: cache has \[3.0, 3.0, 3.0\]"):
        PreprocessedCache.open(cache.root, expected=PreprocessSettings())
    with pytest.raises(CacheError, match="not a preprocessed cache"):
        PreprocessedCache.open(tmp_path)
    with pytest.raises(CacheError, match="BDMAP_00000009"):
        cache.read_patch("BDMAP_00000009", (0, 0, 0), (4, 4, 4))


def test_one_cache_is_read_through_any_window_and_range(
    built: tuple[Path, PreprocessedCache],
) -> None:
    """The cache stores unclipped HU: a request that differs only in the HU window or the
    intensity range opens it and reads patches through its own record."""
    _, cache = built
    stored = (cache.root / "settings.json").read_text()
    record = Preprocessing(spacing_mm=cache.settings.preprocessing.spacing_mm,
                           hu_window=(-100, 200), intensity_range=(-2.0, 4.0))
    wanted = dataclasses.replace(cache.settings, preprocessing=record)
    view = PreprocessedCache.open(cache.root, expected=wanted)
    assert view.settings.preprocessing == record and view.settings.pad_value == -2.0
    hu, _ = cache.read_case_hu("BDMAP_00000002")
    image, _ = view.read_patch("BDMAP_00000002", (-2, 0, 0), (6, 5, 4))
    expected = _padded_patch(np.clip(hu, -100, 200) / 50.0, (-2, 0, 0), (6, 5, 4), -100 / 50.0)
    np.testing.assert_allclose(image, expected, rtol=1e-6, atol=1e-5)
    init_cache(cache.root, wanted)  # extending it is allowed too
    assert (cache.root / "settings.json").read_text() == stored


def test_cache_pickles_into_workers_without_open_handles(
    built: tuple[Path, PreprocessedCache],
) -> None:
    import pickle

    _, cache = built
    expected = cache.read_patch("BDMAP_00000001", (1, 2, 3), (5, 5, 5))
    copy = pickle.loads(pickle.dumps(cache))
    assert not copy._arrays
    result = copy.read_patch("BDMAP_00000001", (1, 2, 3), (5, 5, 5))
    np.testing.assert_array_equal(result[0], expected[0])
    np.testing.assert_array_equal(result[1], expected[1])
