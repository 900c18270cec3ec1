"""Batch prediction (`infer.batch.predict_folder`) with a stub network whose output is known
exactly: input discovery, geometry, records and CSV, reruns, bad cases, organ masks."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Sequence
from pathlib import Path

import cc3d
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from tests.conftest import save_nifti
from tests.infer.stubs import IntensityClasses
from tumorscale.errors import DatasetError, InputFileError
from tumorscale.infer import PostprocessOptions, Predictor, batch
from tumorscale.infer.batch import (
    CSV_NAME,
    RECORD_NAME,
    SETTINGS_NAME,
    discover_inputs,
    predict_folder,
)
from tumorscale.models import ModelSpec
from tumorscale.sizes import equivalent_diameter_mm

LESION_HU, BACKGROUND_HU = 200.0, -100.0
SPACING = (1.0, 1.5, 2.0)
# On disk: the same voxel size in L-P-S order (a non-RAS input) and in RAS order.
LPS_AFFINE = np.array([[-1.0, 0, 0, 30.0], [0, -1.5, 0, 20.0], [0, 0, 2.0, -10.0], [0, 0, 0, 1]])
RAS_AFFINE = np.array([[1.0, 0, 0, -5.0], [0, 1.5, 0, 2.0], [0, 0, 2.0, 7.0], [0, 0, 0, 1]])
SHAPE = (24, 16, 10)


def stub_predictor(**options) -> Predictor:
    spec = ModelSpec(
        network="tiny",
        class_names=("background", "liver_lesion"),
        target_spacing_mm=SPACING,  # the inputs' spacing: no resampling, exact masks
        patch_size_vox=(8, 8, 8),
    )
    network = IntensityClasses((BACKGROUND_HU, LESION_HU))
    return Predictor((network, spec), device="cpu", tta=False, **options)


def lesion_boxes(shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """Two separate lesions in on-disk voxel order: 8x6x4 and 3x3x2 voxels, off-centre."""
    known = np.zeros(shape, dtype=np.uint8)
    known[2:10, 3:9, 1:5] = 1
    known[16:19, 10:13, 6:8] = 1
    return known


def write_case(
    root: Path,
    case_id: str,
    affine: np.ndarray = LPS_AFFINE,
    liver: np.ndarray | None = None,
) -> Path:
    """An AbdomenAtlas case whose CT is bright exactly where `lesion_boxes` says; returns it."""
    known = lesion_boxes()
    ct = np.where(known > 0, LESION_HU, BACKGROUND_HU).astype(np.int16)
    folder = root / case_id
    save_nifti(folder / "ct.nii.gz", ct, affine)
    save_nifti(folder / "segmentations" / "liver.nii.gz", _liver(liver), affine)
    return folder


def _liver(liver: np.ndarray | None) -> np.ndarray:
    if liver is not None:
        return liver.astype(np.uint8)
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[:12, :10, :6] = 1  # holds the big lesion only
    return mask


def read_rows(out: Path) -> list[dict[str, str]]:
    with (out / CSV_NAME).open(encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def lesion_file(out: Path, case_id: str) -> Path:
    return out / case_id / "segmentations" / "liver_lesion.nii.gz"


# ----------------------------------------------------------------------------- discovery


def write_dicom_series(
    folder: Path,
    array_xyz: np.ndarray,
    spacing: Sequence[float],
    origin_lps: Sequence[float] = (12.0, -30.0, 100.0),
) -> None:
    """A CT series (one file per slice) with SimpleITK; identity direction, i.e. L-P-S axes."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_xyz.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(v) for v in origin_lps))
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.42"
    for k in range(image.GetDepth()):
        slice_image = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "CT",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1.41",
            "0020|000e": series_uid,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": f"{spacing[2]:.6f}",
            "0008|0018": f"{series_uid}.{k + 1}",
        }
        for tag, value in tags.items():
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{k:03d}.dcm"))
        writer.Execute(slice_image)


def test_discovers_a_file_a_dicom_folder_and_both_atlas_layouts(tmp_path: Path) -> None:
    write_case(tmp_path / "merged", "BDMAP_00000002")
    write_case(tmp_path / "merged", "BDMAP_00000001")
    (tmp_path / "merged" / "BDMAP_00000003" / "segmentations").mkdir(parents=True)  # no CT
    cases = discover_inputs(tmp_path / "merged")
    # The CT-less case is listed (with where its CT should be), so that predict reports it.
    assert [c.case_id for c in cases] == ["BDMAP_00000001", "BDMAP_00000002", "BDMAP_00000003"]
    assert cases[2].path == tmp_path / "merged" / "BDMAP_00000003" / "ct.nii.gz"
    assert cases[0].organ_masks["liver"] == (
        tmp_path / "merged" / "BDMAP_00000001" / "segmentations" / "liver.nii.gz",
    )

    split = tmp_path / "split"
    save_nifti(split / "ct" / "BDMAP_00000007" / "ct.nii.gz", np.zeros(SHAPE, np.int16))
    save_nifti(split / "label" / "BDMAP_00000007" / "segmentations" / "kidney_left.nii.gz",
               np.zeros(SHAPE, np.uint8))  # fmt: skip
    (only,) = discover_inputs(split)
    assert (only.case_id, only.kind) == ("BDMAP_00000007", "nifti")
    assert [p.name for p in only.organ_masks["kidney"]] == ["kidney_left.nii.gz"]

    (ct_file,) = discover_inputs(tmp_path / "merged" / "BDMAP_00000002" / "ct.nii.gz")
    assert ct_file.case_id == "BDMAP_00000002" and "liver" in ct_file.organ_masks
    scan = save_nifti(tmp_path / "scan_17.nii.gz", np.zeros(SHAPE, np.int16))
    assert [(c.case_id, c.kind) for c in discover_inputs(scan)] == [("scan_17", "nifti")]

    write_dicom_series(tmp_path / "patient_9", np.zeros((8, 6, 4), np.int16), (1.0, 1.0, 2.5))
    assert [(c.case_id, c.kind) for c in discover_inputs(tmp_path / "patient_9")] == [
        ("patient_9", "dicom")
    ]

    (tmp_path / "notes.txt").write_text("not a scan")
    with pytest.raises(InputFileError, match=r"notes\.txt: not a NIfTI file"):
        discover_inputs(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: no CT found"):
        discover_inputs(tmp_path / "empty")


# ----------------------------------------------------------------------------- outputs


def test_masks_are_written_in_each_inputs_own_geometry(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_case(data, "BDMAP_00000001", LPS_AFFINE)
    write_case(data, "BDMAP_00000002", RAS_AFFINE)
    report = predict_folder(data, out, stub_predictor(postprocess=PostprocessOptions(0.0)))
    assert report.done == ["BDMAP_00000001", "BDMAP_00000002"] and report.ok
    for case_id, affine in (("BDMAP_00000001", LPS_AFFINE), ("BDMAP_00000002", RAS_AFFINE)):
        source = nib.load(str(data / case_id / "ct.nii.gz"))
        written = nib.load(str(lesion_file(out, case_id)))
        assert written.shape == source.shape == SHAPE
        np.testing.assert_allclose(written.affine, affine)
        assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(affine)
        assert written.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asarray(written.dataobj), lesion_boxes())
        assert int(written.header["sform_code"]) > 0 and int(written.header["qform_code"]) > 0
    assert nib.aff2axcodes(LPS_AFFINE) == ("L", "P", "S")


def test_csv_and_records_hold_the_written_masks_numbers(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_case(data, "BDMAP_00000001")
    predict_folder(data, out, stub_predictor(postprocess=PostprocessOptions(0.0)))
    (row,) = read_rows(out)
    mask = np.asarray(nib.load(str(lesion_file(out, "BDMAP_00000001"))).dataobj)
    voxel_mm3 = float(np.prod(SPACING))
    components = cc3d.connected_components(mask, connectivity=26)
    assert row["case_id"] == "BDMAP_00000001" and row["organ"] == "liver"
    assert float(row["volume_mm3"]) == pytest.approx(mask.sum() * voxel_mm3)
    assert float(row["volume_mm3"]) == pytest.approx((8 * 6 * 4 + 3 * 3 * 2) * voxel_mm3)
    assert int(row["n_lesions"]) == int(components.max()) == 2
    expected_diameter = equivalent_diameter_mm(8 * 6 * 4 * voxel_mm3)
    assert float(row["largest_diameter_mm"]) == pytest.approx(expected_diameter)
    assert 0.99 < float(row["max_probability"]) <= 1.0
    record = json.loads((out / "BDMAP_00000001" / RECORD_NAME).read_text(encoding="utf-8"))
    assert record["files"] == ["BDMAP_00000001/segmentations/liver_lesion.nii.gz"]
    settings = json.loads((out / SETTINGS_NAME).read_text(encoding="utf-8"))
    assert settings["tta"] is False and settings["overlap"] == 0.5
    assert settings["postprocess"] == {"min_radius_mm": 0.0, "restrict_to_organ": True}
    assert settings["spec"]["class_names"] == ["background", "liver_lesion"]
    assert settings["settings_id"] == record["settings_id"]


def test_min_radius_drops_the_small_lesion_and_is_recorded(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_case(data, "BDMAP_00000001")
    predict_folder(data, out, stub_predictor(postprocess=PostprocessOptions(min_radius_mm=3.0)))
    (row,) = read_rows(out)
    assert int(row["n_lesions"]) == 1  # the 3x3x2-voxel lesion: radius 2.4 mm < 3 mm
    record = json.loads((out / "BDMAP_00000001" / RECORD_NAME).read_text(encoding="utf-8"))
    assert "min_radius_mm=3" in record["settings"]["postprocess"]["liver"]


def test_probabilities_are_float32_outside_segmentations(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_case(data, "BDMAP_00000001")
    predict_folder(data, out, stub_predictor(save_probabilities=True))
    path = out / "BDMAP_00000001" / "probabilities" / "liver_lesion_probability.nii.gz"
    image = nib.load(str(path))
    assert image.get_data_dtype() == np.float32
    np.testing.assert_allclose(image.affine, LPS_AFFINE)
    values = np.asarray(image.dataobj)
    assert values.min() >= 0.0 and values.max() <= 1.0
    assert (values[lesion_boxes() > 0] > 0.5).all() and (values[lesion_boxes() == 0] < 0.5).all()
    assert sorted(p.name for p in (out / "BDMAP_00000001" / "segmentations").iterdir()) == [
        "liver_lesion.nii.gz"
    ]


def test_organ_masks_keep_only_lesions_touching_the_organ(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_case(data, "BDMAP_00000001")
    options = {"postprocess": PostprocessOptions(0.0)}
    predict_folder(data, tmp_path / "without", stub_predictor(**options))
    predict_folder(data, tmp_path / "with", stub_predictor(**options), organ_masks=True)
    without = np.asarray(nib.load(str(lesion_file(tmp_path / "without", "BDMAP_00000001"))).dataobj)
    kept = np.asarray(nib.load(str(lesion_file(tmp_path / "with", "BDMAP_00000001"))).dataobj)
    np.testing.assert_array_equal(without, lesion_boxes())
    big_only = lesion_boxes()
    big_only[14:] = 0
    np.testing.assert_array_equal(kept, big_only)


class RecordingPredictor(Predictor):
    """The stub, remembering what each `predict` call was given."""

    calls: list[tuple[object, dict | None]]

    def predict(self, ct, organ_masks=None):
        self.calls.append((ct, organ_masks))
        return super().predict(ct, organ_masks)


def test_organ_masks_are_the_union_of_the_organs_files_on_the_ct_grid(tmp_path: Path) -> None:
    folder = write_case(tmp_path / "data", "BDMAP_00000001")
    left, right = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    left[:5], right[-5:] = 1, 1
    save_nifti(folder / "segmentations" / "kidney_left.nii.gz", left, LPS_AFFINE)
    save_nifti(folder / "segmentations" / "kidney_right.nii.gz", right, LPS_AFFINE)
    spec = ModelSpec(
        network="tiny",
        class_names=("background", "liver_lesion", "kidney_lesion"),
        target_spacing_mm=SPACING,
        patch_size_vox=(8, 8, 8),
    )
    network = IntensityClasses((BACKGROUND_HU, LESION_HU, 900.0))  # kidney: never nearest
    predictor = RecordingPredictor((network, spec), device="cpu", tta=False)
    predictor.calls = []
    out = tmp_path / "out"
    report = predict_folder(tmp_path / "data", out, predictor, organ_masks=True)
    assert report.done == ["BDMAP_00000001"]
    ((ct, masks),) = predictor.calls
    # Masks arrive on the CT's canonical RAS grid: L-P-S on disk means x and y reversed.
    np.testing.assert_array_equal(masks["kidney"], (left | right)[::-1, ::-1, :])
    np.testing.assert_array_equal(masks["liver"], _liver(None)[::-1, ::-1, :])
    assert ct.orientation == "RAS" and ct.array.shape == SHAPE
    kidney = out / "BDMAP_00000001" / "segmentations" / "kidney_lesion.nii.gz"
    assert np.asarray(nib.load(str(kidney)).dataobj).sum() == 0
    assert [row["organ"] for row in read_rows(out)] == ["liver", "kidney"]


# ----------------------------------------------------------------------------- reruns


def snapshot(out: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and modification time of each case file; the bytes alone of the rebuilt CSV."""
    return {
        str(p.relative_to(out)): (p.read_bytes(), 0 if p.name == CSV_NAME else p.stat().st_mtime_ns)
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != SETTINGS_NAME
    }


def test_rerun_skips_finished_cases_and_keeps_the_files(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    for index in (1, 2, 3):
        write_case(data, f"BDMAP_0000000{index}")
    first = predict_folder(data, out, stub_predictor())
    before = snapshot(out)
    calls: list[tuple[int, int]] = []
    second = predict_folder(data, out, stub_predictor(), progress=lambda d, t: calls.append((d, t)))
    assert (second.done, second.skipped) == ([], first.done)
    assert snapshot(out) == before  # not rewritten: same bytes, same modification times
    assert calls == [(3, 3)]
    assert [row["case_id"] for row in read_rows(out)] == first.done


def test_an_interrupted_case_is_predicted_again(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    for index in (1, 2):
        write_case(data, f"BDMAP_0000000{index}")
    predict_folder(data, out, stub_predictor())
    kept = lesion_file(out, "BDMAP_00000001").read_bytes()
    (out / "BDMAP_00000002" / RECORD_NAME).unlink()  # as if killed before the record
    lesion_file(out, "BDMAP_00000002").write_bytes(b"partial")
    report = predict_folder(data, out, stub_predictor())
    assert (report.done, report.skipped) == (["BDMAP_00000002"], ["BDMAP_00000001"])
    assert lesion_file(out, "BDMAP_00000001").read_bytes() == kept
    assert nib.load(str(lesion_file(out, "BDMAP_00000002"))).shape == SHAPE
    assert len(read_rows(out)) == 2


def test_a_replaced_ct_is_predicted_again_and_reported(tmp_path: Path) -> None:
    """Resume compares what a result was made from, not only the settings."""
    data, out = tmp_path / "data", tmp_path / "out"
    for index in (1, 2):
        write_case(data, f"BDMAP_0000000{index}")
    predict_folder(data, out, stub_predictor())
    bigger = np.full((SHAPE[0] + 4, SHAPE[1], SHAPE[2]), BACKGROUND_HU, np.int16)
    save_nifti(data / "BDMAP_00000002" / "ct.nii.gz", bigger, LPS_AFFINE)  # another scan
    report = predict_folder(data, out, stub_predictor())
    assert report.skipped == ["BDMAP_00000001"]
    assert report.done == report.changed == ["BDMAP_00000002"]
    assert nib.load(str(lesion_file(out, "BDMAP_00000002"))).shape == bigger.shape


def test_a_missing_ct_is_reported_not_skipped(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    for index in (1, 2):
        write_case(data, f"BDMAP_0000000{index}")
    predict_folder(data, out, stub_predictor())
    (data / "BDMAP_00000002" / "ct.nii.gz").unlink()
    (data / "BDMAP_00000002" / "ct.nii.gz").mkdir()  # a folder where the CT was
    report = predict_folder(data, out, stub_predictor())
    assert report.skipped == ["BDMAP_00000001"]
    assert [case for case, _ in report.failed] == ["BDMAP_00000002"]
    assert "BDMAP_00000002/ct.nii.gz" in report.failed[0][1]


def test_other_settings_predict_again(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_case(data, "BDMAP_00000001")
    predict_folder(data, out, stub_predictor(postprocess=PostprocessOptions(0.0)))
    report = predict_folder(data, out, stub_predictor(postprocess=PostprocessOptions(3.0)))
    assert report.done == ["BDMAP_00000001"]
    assert [row["n_lesions"] for row in read_rows(out)] == ["1"]


def test_single_files_into_one_out_all_stay_listed(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    for index in (1, 2):
        write_case(data, f"BDMAP_0000000{index}")
    predict_folder(data / "BDMAP_00000002" / "ct.nii.gz", out, stub_predictor())
    predict_folder(data / "BDMAP_00000001" / "ct.nii.gz", out, stub_predictor())
    assert [row["case_id"] for row in read_rows(out)] == ["BDMAP_00000001", "BDMAP_00000002"]


def test_two_io_workers_write_the_same_masks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for index in range(1, 6):
        write_case(data, f"BDMAP_0000000{index}", LPS_AFFINE if index % 2 else RAS_AFFINE)
    one = predict_folder(data, tmp_path / "one", stub_predictor(), workers=1)
    two = predict_folder(data, tmp_path / "two", stub_predictor(), workers=2)
    assert one.done == two.done and len(two.done) == 5
    for case_id in two.done:
        a, b = (nib.load(str(lesion_file(tmp_path / n, case_id))) for n in ("one", "two"))
        np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
        np.testing.assert_array_equal(a.affine, b.affine)
    assert read_rows(tmp_path / "one") == read_rows(tmp_path / "two")


# ----------------------------------------------------------------------------- bad cases


def test_bad_cases_are_reported_with_their_file_and_the_others_written(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    for index in (1, 2, 3, 4):
        write_case(data, f"BDMAP_0000000{index}")
    truncated = data / "BDMAP_00000002" / "ct.nii.gz"
    truncated.write_bytes(truncated.read_bytes()[:-40])  # cut inside the data
    four_d = data / "BDMAP_00000003" / "ct.nii.gz"
    save_nifti(four_d, np.zeros((*SHAPE, 2), np.int16), LPS_AFFINE)
    off_grid = data / "BDMAP_00000004" / "segmentations" / "liver.nii.gz"
    save_nifti(off_grid, np.zeros((5, 5, 5), np.uint8), LPS_AFFINE)
    report = predict_folder(data, out, stub_predictor(), organ_masks=True, workers=2)
    assert report.done == ["BDMAP_00000001"]
    failed = dict(report.failed)
    assert str(truncated) in failed["BDMAP_00000002"]
    assert "truncated or corrupt" in failed["BDMAP_00000002"]
    assert (
        str(four_d) in failed["BDMAP_00000003"] and "not a 3-D volume" in failed["BDMAP_00000003"]
    )
    assert str(off_grid) in failed["BDMAP_00000004"] and "shape" in failed["BDMAP_00000004"]
    assert [row["case_id"] for row in read_rows(out)] == ["BDMAP_00000001"]
    for case_id in failed:
        assert not (out / case_id / RECORD_NAME).exists()
    # The bad file fixed, a rerun predicts just that case.
    write_case(data, "BDMAP_00000002")
    again = predict_folder(data, out, stub_predictor(), organ_masks=True)
    assert again.done == ["BDMAP_00000002"] and again.skipped == ["BDMAP_00000001"]
    assert gzip.decompress(lesion_file(out, "BDMAP_00000002").read_bytes())


def test_a_failed_write_fails_that_case_only(tmp_path: Path, monkeypatch) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    for index in (1, 2, 3):
        write_case(data, f"BDMAP_0000000{index}")
    real_write = batch.write_nifti

    def flaky(volume, path, dtype=None):
        if "BDMAP_00000002" in str(path):
            raise OSError(28, "No space left on device")
        return real_write(volume, path, dtype)

    monkeypatch.setattr(batch, "write_nifti", flaky)
    report = predict_folder(data, out, stub_predictor(), workers=2)
    assert report.done == ["BDMAP_00000001", "BDMAP_00000003"]
    ((case_id, reason),) = report.failed
    assert case_id == "BDMAP_00000002"
    assert "No space left on device" in reason and str(out / "BDMAP_00000002") in reason
    assert not (out / "BDMAP_00000002" / RECORD_NAME).exists()


def test_out_may_not_be_the_input_tree(tmp_path: Path) -> None:
    write_case(tmp_path / "data", "BDMAP_00000001")
    with pytest.raises(DatasetError, match="OUT must differ from IN"):
        predict_folder(tmp_path / "data", tmp_path / "data", stub_predictor())
