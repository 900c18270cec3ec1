"""Indexing AbdomenAtlas trees: both layouts, organ files, tumor status, instances, cache."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CaseMaker, save_nifti, sphere
from tumorscale.atlas import (
    Severity,
    TumorStatus,
    dataset_lesion_stats,
    equivalent_diameter_mm,
    index_dataset,
    lesion_stats,
    size_class_of,
    summarize,
)
from tumorscale.atlas import lesions as lesions_module
from tumorscale.errors import DatasetError

SHAPE = (40, 40, 20)
ISO = np.eye(4)  # 1 mm voxels keep the analytic sizes simple


def two_tumor_lesion() -> np.ndarray:
    lesion = np.zeros(SHAPE, np.uint8)
    lesion[2:12, 2:12, 2:12] = 1  # 1000 mm³ box
    lesion[20:23, 20:23, 14:17] = 1  # 27 mm³ box, separate component
    return lesion


def test_merged_layout_status_and_instances(tmp_path: Path, make_case: CaseMaker) -> None:
    organ = np.zeros(SHAPE, np.uint8)
    organ[1:30, 1:30, 1:18] = 1
    make_case(
        tmp_path,
        "BDMAP_00000001",
        SHAPE,
        {
            "liver": organ,
            "liver_lesion": two_tumor_lesion(),
            "pancreas": organ,
            "pancreatic_lesion": 0 * organ,
            "kidney_left": organ,
            "kidney_right": organ,
        },
        ISO,
    )
    make_case(tmp_path, "BDMAP_00000002", SHAPE, {"liver": organ}, ISO)
    index = index_dataset(tmp_path)
    assert index.layout == "merged" and len(index) == 2
    first = index.case("BDMAP_00000001")
    assert first.geometry is not None and first.geometry.shape == SHAPE
    assert [p.name for p in first.organ("kidney").masks] == [
        "kidney_left.nii.gz",
        "kidney_right.nii.gz",
    ]

    liver = lesion_stats(first, "liver")
    assert liver.status == TumorStatus.POSITIVE
    assert liver.instances == 2
    assert liver.diameters_mm == pytest.approx(
        (2 * (3 * 1000 / (4 * math.pi)) ** (1 / 3), 2 * (3 * 27 / (4 * math.pi)) ** (1 / 3))
    )
    assert liver.volume_mm3 == pytest.approx(1027)
    assert lesion_stats(first, "pancreas").status == TumorStatus.CONTROL
    # No lesion file is unknown, never negative.
    assert lesion_stats(first, "kidney").status == TumorStatus.UNKNOWN
    assert lesion_stats(index.case("BDMAP_00000002"), "liver").status == TumorStatus.UNKNOWN


def test_split_layout(tmp_path: Path, make_case: CaseMaker) -> None:
    lesion = sphere(SHAPE, (20, 20, 10), 5)
    make_case(tmp_path / "ct", "BDMAP_00000007", SHAPE, {}, ISO)
    save_nifti(
        tmp_path / "label" / "BDMAP_00000007" / "segmentations" / "pancreas_tumor.nii.gz",
        lesion,
        ISO,
    )
    save_nifti(
        tmp_path / "label" / "BDMAP_00000007" / "segmentations" / "pancreas.nii.gz", lesion, ISO
    )
    index = index_dataset(tmp_path)
    assert index.layout == "split"
    case = index.case("BDMAP_00000007")
    assert case.ct == tmp_path / "ct" / "BDMAP_00000007" / "ct.nii.gz"
    stats = lesion_stats(case, "pancreas")
    assert stats.status == TumorStatus.POSITIVE
    assert stats.diameters_mm[0] == pytest.approx(float(equivalent_diameter_mm(lesion.sum())))


def test_subtype_files_are_merged_into_the_organ_lesion(
    tmp_path: Path, make_case: CaseMaker
) -> None:
    a = np.zeros(SHAPE, np.uint8)
    a[2:6, 2:6, 2:6] = 1
    b = np.zeros(SHAPE, np.uint8)
    b[5:9, 5:9, 5:9] = 1  # overlaps a by one voxel -> one 26-connected instance
    c = np.zeros(SHAPE, np.uint8)
    c[30:34, 30:34, 10:14] = 1
    make_case(
        tmp_path,
        masks={
            "pancreatic_pdac": a,
            "pancreatic_cyst": b,
            "pancreas_lesion": c,
            "_pancreas_tumor_draft": np.ones(SHAPE),
        },
        shape=SHAPE,
        affine=ISO,
    )
    stats = lesion_stats(index_dataset(tmp_path).cases[0], "pancreas")
    assert stats.instances == 2
    assert stats.volume_mm3 == pytest.approx(64 + 64 - 1 + 64)


def test_anisotropic_spacing_enters_diameters(tmp_path: Path, make_case: CaseMaker) -> None:
    lesion = np.zeros(SHAPE, np.uint8)
    lesion[0:10, 0:10, 0:4] = 1  # 400 voxels of 0.8 x 0.8 x 2.5 mm = 640 mm³
    make_case(tmp_path, masks={"colon_lesion": lesion}, shape=SHAPE)
    stats = lesion_stats(index_dataset(tmp_path).cases[0], "colon")
    assert stats.volume_mm3 == pytest.approx(640)
    assert stats.diameters_mm[0] == pytest.approx(float(equivalent_diameter_mm(640)))


def test_unknown_names_and_missing_ct_are_reported(tmp_path: Path, make_case: CaseMaker) -> None:
    make_case(
        tmp_path, "BDMAP_00000001", SHAPE, {"liver": np.zeros(SHAPE), "mystery": np.zeros(SHAPE)}
    )
    (tmp_path / "BDMAP_00000001" / "segmentations" / "readme.txt").write_text("hi")
    save_nifti(tmp_path / "BDMAP_00000002" / "segmentations" / "liver.nii.gz", np.zeros(SHAPE))
    index = index_dataset(tmp_path)
    assert len(index) == 2
    messages = {(p.path.name, p.reason, p.severity) for p in index.problems}
    assert (
        "mystery.nii.gz",
        "unknown segmentation file name (ignored)",
        Severity.WARNING,
    ) in messages
    assert ("readme.txt", "unknown segmentation file name (ignored)", Severity.WARNING) in messages
    assert ("BDMAP_00000002", "case folder has no ct.nii.gz", Severity.ERROR) in messages
    assert index.case("BDMAP_00000001").organ("liver").has_mask


def test_empty_and_missing_dataset_folders(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no cases found"):
        index_dataset(tmp_path)
    with pytest.raises(DatasetError, match="dataset folder not found"):
        index_dataset(tmp_path / "missing")


def test_lesion_stats_are_cached_outside_the_dataset(
    tmp_path: Path, make_case: CaseMaker, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_case(tmp_path, masks={"liver_lesion": two_tumor_lesion()}, shape=SHAPE, affine=ISO)
    case = index_dataset(tmp_path).cases[0]
    first = lesion_stats(case, "liver")
    assert list((isolated_cache / "lesion-stats").rglob("*.json"))

    def no_reading(*args: object) -> None:
        raise AssertionError("cached statistics were measured again")

    monkeypatch.setattr(lesions_module, "measure_lesions", no_reading)
    assert lesion_stats(case, "liver") == first


def test_changed_lesion_file_is_measured_again(tmp_path: Path, make_case: CaseMaker) -> None:
    folder = make_case(
        tmp_path, masks={"liver_lesion": two_tumor_lesion()}, shape=SHAPE, affine=ISO
    )
    assert lesion_stats(index_dataset(tmp_path).cases[0], "liver").instances == 2
    save_nifti(folder / "segmentations" / "liver_lesion.nii.gz", np.zeros(SHAPE, np.uint8), ISO)
    assert lesion_stats(index_dataset(tmp_path).cases[0], "liver").status == TumorStatus.CONTROL


def test_read_only_dataset_is_never_written(tmp_path: Path, make_case: CaseMaker) -> None:
    data = tmp_path / "data"
    make_case(
        data,
        masks={"liver": two_tumor_lesion(), "liver_lesion": two_tumor_lesion()},
        shape=SHAPE,
        affine=ISO,
    )
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
    for path in [data, *data.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        index = index_dataset(data)
        stats = dataset_lesion_stats(index.cases, ["liver", "kidney"], workers=1)
        assert [s.status for s in stats] == [TumorStatus.POSITIVE, TumorStatus.UNKNOWN]
    finally:
        for path in [data, *data.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*")} == before


def test_summary_counts_by_organ_and_size(tmp_path: Path, make_case: CaseMaker) -> None:
    big = np.zeros((80, 80, 80), np.uint8)
    big[:60, :60, :60] = 1  # 216,000 mm³ -> 74 mm
    medium = sphere((80, 80, 80), (40, 40, 40), 15)  # ~30 mm
    organ = np.ones((80, 80, 80), np.uint8)
    make_case(tmp_path, "BDMAP_00000001", (80, 80, 80), {"liver": organ, "liver_lesion": big}, ISO)
    make_case(
        tmp_path,
        "BDMAP_00000002",
        (80, 80, 80),
        {"liver": organ, "liver_lesion": medium, "kidney": organ, "kidney_lesion": 0 * organ},
        ISO,
    )
    make_case(tmp_path, "BDMAP_00000003", (80, 80, 80), {"liver": organ}, ISO)
    shutil.rmtree(tmp_path / "BDMAP_00000003" / "segmentations")
    index = index_dataset(tmp_path)
    organs = ["liver", "kidney"]
    stats = dataset_lesion_stats(index.cases, organs, workers=2, with_organ=True)
    summary = summarize(index, stats, organs)
    liver, kidney = summary.organs
    assert (liver.cases_with_organ, liver.positive, liver.control, liver.unknown) == (2, 2, 0, 1)
    assert liver.instances_by_size == {"<20": 0, "20-50": 1, ">50": 1}
    assert (kidney.cases_with_organ, kidney.positive, kidney.control, kidney.unknown) == (
        1,
        0,
        1,
        2,
    )
    assert summary.total.instances == 2 and summary.cases == 3 and summary.cases_with_any_tumor == 2


@pytest.mark.parametrize(
    ("diameter", "name"),
    [(0.5, "<20"), (19.99, "<20"), (20.0, "20-50"), (50.0, "20-50"), (50.01, ">50")],
)
def test_size_classes(diameter: float, name: str) -> None:
    assert size_class_of(diameter).label == name


def test_an_all_zero_organ_mask_is_no_organ(tmp_path: Path, make_case: CaseMaker) -> None:
    organ = np.ones((20, 20, 10), np.uint8)
    make_case(tmp_path, "BDMAP_00000001", (20, 20, 10), {"liver": organ}, ISO)
    make_case(tmp_path, "BDMAP_00000002", (20, 20, 10), {"liver": 0 * organ}, ISO)
    index = index_dataset(tmp_path)
    stats = dataset_lesion_stats(index.cases, ["liver"], workers=1, with_organ=True)
    assert summarize(index, stats, ["liver"]).organs[0].cases_with_organ == 1
