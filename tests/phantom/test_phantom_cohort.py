"""Writing a cohort: AbdomenAtlas layout, read-back, determinism, resume, manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tumorscale.io import check_same_grid, read_geometry, read_nifti
from tumorscale.phantom import (
    COMPLETE_MARKER,
    MANIFEST_NAME,
    PhantomOptions,
    generate_phantom,
    write_cohort,
)

OPTIONS = PhantomOptions(inplane_spacing_mm=(3.0, 3.5), slice_spacing_mm=(4.0, 5.0))


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, list[str], list[tuple[int, int]]]:
    root = tmp_path_factory.mktemp("phantoms")
    calls: list[tuple[int, int]] = []
    report = write_cohort(root, 3, 7, OPTIONS, progress=lambda done, n: calls.append((done, n)))
    ids = report.complete
    return root, ids, calls


def test_layout_is_abdomenatlas(cohort) -> None:
    root, ids, calls = cohort
    assert ids == ["BDMAP_00000001", "BDMAP_00000002", "BDMAP_00000003"]
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert sorted(p.name for p in root.iterdir()) == [*ids, MANIFEST_NAME]
    manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    for case_id, record in zip(ids, manifest["cases"], strict=True):
        folder = root / case_id
        assert sorted(p.name for p in folder.iterdir()) == [COMPLETE_MARKER, "ct.nii.gz",
                                                             "segmentations"]
        names = sorted(p.name.removesuffix(".nii.gz") for p in (folder / "segmentations").iterdir())
        assert names == record["files"]
        assert ("uterus" in names) == ("uterus_lesion" in names) == (record["sex"] == "F")
        assert len(names) == (20 if record["sex"] == "F" else 18)


def test_files_read_back_on_one_grid(cohort) -> None:
    root, ids, _ = cohort
    stored = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest = {c["case_id"]: c for c in stored["cases"]}
    for case_id in ids:
        folder = root / case_id
        ct_path = folder / "ct.nii.gz"
        ct_geometry = read_geometry(ct_path)
        assert ct_geometry.orientation == manifest[case_id]["orientation"]
        assert list(ct_geometry.shape) == manifest[case_id]["shape"]
        ct = read_nifti(ct_path, kind="image")
        assert ct.source.header.get_data_dtype() == np.int16
        liver = read_nifti(folder / "segmentations" / "liver.nii.gz", kind="mask")
        assert liver.array.dtype == np.uint8 and liver.array.any()
        for mask_path in (folder / "segmentations").iterdir():
            check_same_grid(mask_path, read_geometry(mask_path), ct_path, ct_geometry)
        assert 95 <= np.median(ct.array[liver.array > 0]) <= 125


def test_written_case_equals_the_in_memory_case(cohort) -> None:
    root, _, _ = cohort
    case = generate_phantom(7, 2, OPTIONS)
    ct = read_nifti(root / case.case_id / "ct.nii.gz", kind="image", canonical=False)
    assert np.array_equal(ct.array, case.ct.array.astype(np.float32))
    assert np.allclose(ct.affine, case.ct.affine, atol=1e-4)
    for name in ("pancreas", "esophagus", "pancreas_lesion"):
        mask = read_nifti(root / case.case_id / "segmentations" / f"{name}.nii.gz", kind="mask",
                          canonical=False)
        assert np.array_equal(mask.array, case.masks[name])


def test_manifest_describes_each_case(cohort) -> None:
    root, _, _ = cohort
    manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["seed"] == 7 and manifest["options"]["style"] == "standard"
    for record in manifest["cases"]:
        assert record["sex"] in ("F", "M") and record["style"] == "standard"
        assert min(record["spacing_mm"]) >= 3.0 and max(record["spacing_mm"]) <= 5.0
        for tumor in record["tumors"]:
            assert set(tumor) >= {"organ", "center_mm", "diameter_mm", "kind", "contrast_hu"}
            assert record["tumor_status"][tumor["organ"]] == "positive"


def test_same_seed_gives_identical_bytes_and_case_k_ignores_n(cohort, tmp_path) -> None:
    root, _, _ = cohort
    again = tmp_path / "again"
    write_cohort(again, 2, 7, OPTIONS)
    first, second = _files(root), _files(again)
    for name, data in second.items():
        if name != MANIFEST_NAME:
            assert first[name] == data, name


def test_different_seed_gives_different_files(cohort, tmp_path) -> None:
    root, _, _ = cohort
    other = tmp_path / "other"
    write_cohort(other, 1, 8, OPTIONS)
    name = "BDMAP_00000001/ct.nii.gz"
    assert (root / name).read_bytes() != (other / name).read_bytes()


def test_resume_skips_complete_cases_and_redoes_incomplete_ones(tmp_path) -> None:
    root = tmp_path / "resume"
    write_cohort(root, 2, 3, OPTIONS)
    ct_one, ct_two = root / "BDMAP_00000001" / "ct.nii.gz", root / "BDMAP_00000002" / "ct.nii.gz"
    before_one = ct_one.stat().st_mtime_ns
    expected_two = ct_two.read_bytes()
    # Case 2 "crashed": its marker was never written and a file is half there.
    (root / "BDMAP_00000002" / COMPLETE_MARKER).unlink()
    ct_two.write_bytes(b"partial")
    ids = write_cohort(root, 3, 3, OPTIONS).complete
    assert ids[-1] == "BDMAP_00000003"
    assert ct_one.stat().st_mtime_ns == before_one
    assert ct_two.read_bytes() == expected_two
    assert len(json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))["cases"]) == 3


def test_changed_options_regenerate_a_case(tmp_path) -> None:
    root = tmp_path / "changed"
    write_cohort(root, 1, 3, OPTIONS)
    before = (root / "BDMAP_00000001" / "ct.nii.gz").read_bytes()
    write_cohort(root, 1, 3, PhantomOptions(**{**OPTIONS.__dict__, "style": "ood"}))
    assert (root / "BDMAP_00000001" / "ct.nii.gz").read_bytes() != before
    marker = json.loads((root / "BDMAP_00000001" / COMPLETE_MARKER).read_text(encoding="utf-8"))
    assert marker["record"]["style"] == "ood"


@pytest.mark.parametrize("cases", [0, -1, 1.5, True])
def test_case_count_is_validated(tmp_path, cases) -> None:
    with pytest.raises(ValueError, match="cases"):
        write_cohort(tmp_path, cases, 0, OPTIONS)


def test_a_file_replaced_after_writing_is_generated_again(tmp_path) -> None:
    """The marker records the written files (size, mtime): a hand-edited case is not kept."""
    root = tmp_path / "edited"
    write_cohort(root, 1, 3, OPTIONS)
    liver = root / "BDMAP_00000001" / "segmentations" / "liver.nii.gz"
    expected = liver.read_bytes()
    liver.write_bytes(expected[: len(expected) // 2])
    write_cohort(root, 1, 3, OPTIONS)
    assert liver.read_bytes() == expected
