"""Preprocessing runs: resume, settings mismatch, bad cases, workers, phantoms into synthesis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.data.helpers import SETTINGS, SHAPE, write_case, write_dataset
from tumorscale.data import (
    CacheSettingsError,
    PreprocessedCache,
    PreprocessSettings,
    preprocess_dataset,
    structure_mask,
)
from tumorscale.data.cache import COMPLETE_MARKER, case_dir
from tumorscale.phantom import PhantomOptions, write_cohort

CASES = ["BDMAP_00000001", "BDMAP_00000002", "BDMAP_00000003"]


def _contents(root: Path) -> dict[str, tuple]:
    """Everything a cached case holds, comparable across runs."""
    cache = PreprocessedCache.open(root)
    result = {}
    for case_id in cache.case_ids:
        hu, bits = cache.read_case_hu(case_id)
        locations = {name: cache.foreground_locations(case_id, name).tobytes()
                     for name in ("liver", "liver_lesion", "kidney")}
        result[case_id] = (hu.tobytes(), bits.tobytes(), locations, cache.case_meta(case_id))
    return result


def test_rerun_skips_and_a_removed_marker_redoes_only_that_case(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "atlas")
    cache_root = tmp_path / "cache"
    seen: list[tuple[int, int]] = []
    first = preprocess_dataset(data, cache_root, SETTINGS,
                               progress=lambda done, total: seen.append((done, total)))
    assert (first.done, first.skipped, first.failed) == (CASES, [], [])
    assert seen == [(n, len(CASES)) for n in range(len(CASES) + 1)]  # once per case
    reference = _contents(cache_root)

    second = preprocess_dataset(data, cache_root, SETTINGS)
    assert (second.done, second.skipped) == ([], CASES)

    # An interrupted case: no marker, a stale temporary and a truncated array left behind.
    folder = case_dir(cache_root, "BDMAP_00000002")
    (folder / COMPLETE_MARKER).unlink()
    (folder / ".image.tmp123.b2nd").write_bytes(b"partial")
    (folder / "structures.b2nd").write_bytes(b"truncated")
    assert PreprocessedCache.open(cache_root).case_ids == [CASES[0], CASES[2]]
    third = preprocess_dataset(data, cache_root, SETTINGS)
    assert (third.done, third.skipped) == (["BDMAP_00000002"], [CASES[0], CASES[2]])
    assert not (folder / ".image.tmp123.b2nd").exists()
    assert _contents(cache_root) == reference


def test_a_changed_source_file_is_redone(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "atlas", cases=2)
    cache_root = tmp_path / "cache"
    preprocess_dataset(data, cache_root, SETTINGS)
    lesion = np.zeros(SHAPE, dtype=np.uint8)
    from tests.conftest import save_nifti
    from tests.data.helpers import AFFINE

    save_nifti(data / "BDMAP_00000001" / "segmentations" / "liver_lesion.nii.gz", lesion, AFFINE)
    report = preprocess_dataset(data, cache_root, SETTINGS)
    assert (report.done, report.skipped) == (["BDMAP_00000001"], ["BDMAP_00000002"])
    assert report.changed == ["BDMAP_00000001"]
    meta = PreprocessedCache.open(cache_root).case_meta("BDMAP_00000001")
    assert meta["tumor_status"]["liver"] == "control"


def test_extending_a_cache_with_other_settings_names_the_keys(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "atlas", cases=1)
    cache_root = tmp_path / "cache"
    preprocess_dataset(data, cache_root, SETTINGS)
    other = PreprocessSettings(**{**SETTINGS.to_dict(), "spacing_mm": (2.0, 2.0, 2.0),
                                  "hu_clip": (-100.0, 200.0)})
    with pytest.raises(CacheSettingsError) as caught:
        preprocess_dataset(data, cache_root, other)
    message = str(caught.value)
    assert str(cache_root) in message
    # the HU window is applied when patches are read: it may differ
    assert "spacing_mm" in message and "hu_clip" not in message and "codec" not in message
    assert caught.value.differences["spacing_mm"] == ([3.0, 3.0, 3.0], [2.0, 2.0, 2.0])


def test_bad_cases_are_reported_and_the_others_finish(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "atlas")
    corrupt = data / "BDMAP_00000001" / "segmentations" / "liver.nii.gz"
    corrupt.write_bytes(corrupt.read_bytes()[:60])  # truncated gzip
    from tests.conftest import save_nifti
    from tests.data.helpers import AFFINE

    off_grid = data / "BDMAP_00000003" / "segmentations" / "aorta.nii.gz"
    save_nifti(off_grid, np.zeros((30, 26, 13), dtype=np.uint8), AFFINE)
    report = preprocess_dataset(data, tmp_path / "cache", SETTINGS,
                                case_ids=[*CASES, "BDMAP_00000042"])
    assert report.done == ["BDMAP_00000002"]
    failed = dict(report.failed)
    assert sorted(failed) == ["BDMAP_00000001", "BDMAP_00000003", "BDMAP_00000042"]
    assert str(corrupt) in failed["BDMAP_00000001"]
    assert str(off_grid) in failed["BDMAP_00000003"] and "shape" in failed["BDMAP_00000003"]
    assert failed["BDMAP_00000042"] == "not in the dataset"
    assert not report.ok
    assert PreprocessedCache.open(tmp_path / "cache").case_ids == ["BDMAP_00000002"]


def test_worker_processes_give_the_same_cache(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "atlas")
    serial = preprocess_dataset(data, tmp_path / "serial", SETTINGS)
    seen: list[tuple[int, int]] = []
    parallel = preprocess_dataset(data, tmp_path / "parallel", SETTINGS, workers=2,
                                  progress=lambda done, total: seen.append((done, total)))
    assert serial.done == parallel.done == CASES
    assert seen == [(n, len(CASES)) for n in range(len(CASES) + 1)]
    assert _contents(tmp_path / "serial") == _contents(tmp_path / "parallel")


def test_phantom_cohort_preprocesses_and_hosts_synthetic_tumors(tmp_path: Path) -> None:
    from tumorscale.synth import insert_tumors

    options = PhantomOptions(shape=(64, 52, 40), tumor_fraction=0.0, female_fraction=1.0)
    write_cohort(tmp_path / "phantoms", cases=1, seed=0, options=options)
    write_case(tmp_path / "phantoms", 2)  # a second, unrelated case in the same tree
    settings = PreprocessSettings(spacing_mm=3.0)
    report = preprocess_dataset(tmp_path / "phantoms", tmp_path / "cache", settings)
    assert report.ok
    cache = PreprocessedCache.open(tmp_path / "cache")
    meta = cache.case_meta("BDMAP_00000001")
    assert meta["tumor_status"]["liver"] == "control"
    assert meta["original"]["on_disk_orientation"] == "LPS"
    volume, masks = cache.read_case_for_synthesis("BDMAP_00000001")
    assert {"liver", "kidney_left", "kidney_right", "uterus", "spleen"} <= set(masks)
    result = insert_tumors(volume, masks, "liver", np.random.default_rng(0))
    assert result.records[0].skipped is None
    assert result.tumor_mask.any()
    # The liver's location index centres patches inside the liver.
    _, bits = cache.read_case_hu("BDMAP_00000001")
    locations = cache.foreground_locations("BDMAP_00000001", "liver")
    assert structure_mask(bits, "liver")[tuple(locations.T)].all()
