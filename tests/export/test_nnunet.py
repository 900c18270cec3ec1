"""nnU-Net v2 export: a phantom cohort plus an offline synthetic case, labels, reruns, checker."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import CaseMaker, save_nifti, sphere
from tumorscale.export import check_nnunet_dataset, dataset_folder_name, export_nnunet
from tumorscale.phantom import PhantomOptions, write_cohort

ORGANS = ["pancreas", "liver", "kidney"]
SYNTHETIC_ID = "BDMAP_00000001_syn01"


def _lesion_union(case_folder: Path, organ: str) -> np.ndarray:
    files = sorted((case_folder / "segmentations").glob(f"{organ}_lesion*.nii.gz"))
    assert files, f"no {organ} lesion file in {case_folder}"
    return np.any([np.asanyarray(nib.load(f).dataobj) > 0 for f in files], axis=0)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Four phantom cases (mixed orientations, half with tumors) and one hand-made synthetic
    case: a copy of case 1 with a liver lesion sphere inside its liver."""
    root = tmp_path_factory.mktemp("cohort")
    real = root / "real"
    options = PhantomOptions(shape=(48, 40, 32), tumor_fraction=0.5)
    write_cohort(real, cases=4, seed=3, options=options)
    synthetic = root / "synthetic"
    case = synthetic / SYNTHETIC_ID
    shutil.copytree(real / "BDMAP_00000001", case)
    liver_file = case / "segmentations" / "liver.nii.gz"
    liver = np.asanyarray(nib.load(liver_file).dataobj) > 0
    centre = np.argwhere(liver).mean(axis=0)
    lesion = (sphere(liver.shape, tuple(centre), 4.0) > 0) & liver
    image = nib.load(liver_file)
    for old in (case / "segmentations").glob("liver_lesion*"):
        old.unlink()
    nib.save(nib.Nifti1Image(lesion.astype(np.uint8), image.affine, image.header),
             str(case / "segmentations" / "liver_lesion.nii.gz"))
    (case / ".synthesis.json").write_text(json.dumps({"source_id": "BDMAP_00000001"}))
    return real, synthetic


@pytest.fixture(scope="module")
def exported(cohort: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    real, synthetic = cohort
    out = tmp_path_factory.mktemp("nnunet")
    report = export_nnunet(real, out, 501, organs=ORGANS, synthetic_root=synthetic, workers=2)
    return report


def test_export_is_a_valid_nnunet_dataset(exported, cohort: tuple[Path, Path]) -> None:
    real, synthetic = cohort
    assert exported.ok and not exported.excluded
    assert exported.out.name == "Dataset501_Tumorscale"
    assert check_nnunet_dataset(exported.out) == []
    meta = json.loads((exported.out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["labels"] == {
        "background": 0, "pancreas_lesion": 1, "liver_lesion": 2, "kidney_lesion": 3
    }
    assert meta["numTraining"] == 5 and meta["file_ending"] == ".nii.gz"
    block = meta["tumorscale"]
    assert block["real_cases"] == [f"BDMAP_0000000{i}" for i in range(1, 5)]
    assert block["synthetic_cases"] == {SYNTHETIC_ID: "BDMAP_00000001"}
    assert block["organs"] == ORGANS
    assert block["real_root"] == str(real.resolve())
    assert block["synthetic_root"] == str(synthetic.resolve())


def test_images_are_byte_identical_and_labels_share_their_grid(exported, cohort) -> None:
    real, synthetic = cohort
    for case_id in exported.done:
        source = (synthetic if case_id == SYNTHETIC_ID else real) / case_id / "ct.nii.gz"
        image = exported.out / "imagesTr" / f"{case_id}_0000.nii.gz"
        assert image.read_bytes() == source.read_bytes()
        label = nib.load(exported.out / "labelsTr" / f"{case_id}.nii.gz")
        ct = nib.load(source)
        assert label.shape == ct.shape
        np.testing.assert_allclose(label.affine, ct.affine, atol=1e-5)
        np.testing.assert_allclose(label.header.get_qform(), ct.header.get_qform(), atol=1e-5)
        assert label.get_data_dtype() == np.uint8


def test_lesion_voxels_carry_their_organ_label(exported, cohort) -> None:
    real, synthetic = cohort
    tumor_voxels = 0
    for case_id in exported.done:
        folder = (synthetic if case_id == SYNTHETIC_ID else real) / case_id
        label = np.asanyarray(nib.load(exported.out / "labelsTr" / f"{case_id}.nii.gz").dataobj)
        expected = np.zeros(label.shape, dtype=np.uint8)
        for index, organ in enumerate(ORGANS, start=1):
            expected[_lesion_union(folder, organ)] = index
        np.testing.assert_array_equal(label, expected)
        tumor_voxels += int(np.count_nonzero(label))
    synthetic_label = nib.load(exported.out / "labelsTr" / f"{SYNTHETIC_ID}.nii.gz")
    assert set(np.unique(np.asanyarray(synthetic_label.dataobj))) >= {0, 2}
    assert tumor_voxels > 0


def test_rerun_skips_finished_cases_and_redoes_a_changed_one(cohort, tmp_path: Path) -> None:
    real, _ = cohort
    source = tmp_path / "real"
    shutil.copytree(real, source)
    first = export_nnunet(source, tmp_path / "out", 502, organs=["liver"])
    labels = first.out / "labelsTr"
    stamps = {path.name: path.stat().st_mtime_ns for path in labels.iterdir()}
    calls: list[tuple[int, int]] = []
    again = export_nnunet(
        source, tmp_path / "out", 502, organs=["liver"], progress=lambda *c: calls.append(c)
    )
    assert again.done == [] and again.skipped == first.done
    assert calls[-1] == (4, 4)
    assert {path.name: path.stat().st_mtime_ns for path in labels.iterdir()} == stamps
    lesion_file = source / "BDMAP_00000002" / "segmentations" / "liver_lesion.nii.gz"
    image = nib.load(lesion_file)
    changed = np.zeros(image.shape, dtype=np.uint8)
    changed[10:14, 10:14, 10:14] = 1
    nib.save(nib.Nifti1Image(changed, image.affine, image.header), str(lesion_file))
    third = export_nnunet(source, tmp_path / "out", 502, organs=["liver"])
    assert third.done == ["BDMAP_00000002"] and third.changed == ["BDMAP_00000002"]
    label = np.asanyarray(nib.load(labels / "BDMAP_00000002.nii.gz").dataobj)
    assert int(np.count_nonzero(label == 1)) == 64
    assert check_nnunet_dataset(first.out) == []



def test_synthesize_dataset_output_exports(tmp_path: Path) -> None:
    from tumorscale.synth.batch import synthesize_dataset

    options = PhantomOptions(shape=(64, 56, 40), tumor_fraction=0.5)
    write_cohort(tmp_path / "real", cases=4, seed=0, options=options)
    batch = synthesize_dataset(tmp_path / "real", tmp_path / "syn", ["liver"], per_case=1, seed=0)
    assert batch.done
    report = export_nnunet(
        tmp_path / "real", tmp_path / "out", 503, organs=["liver"], synthetic_root=tmp_path / "syn"
    )
    assert report.ok and set(batch.done) <= set(report.done)
    assert check_nnunet_dataset(report.out) == []
    for case_id in batch.done:
        lesion = _lesion_union(tmp_path / "syn" / case_id, "liver")
        label = nib.load(report.out / "labelsTr" / f"{case_id}.nii.gz")
        np.testing.assert_array_equal(np.asanyarray(label.dataobj) == 1, lesion)
        assert lesion.any()
    meta = json.loads((report.out / "dataset.json").read_text(encoding="utf-8"))
    assert set(meta["tumorscale"]["synthetic_cases"]) == set(batch.done)


# ----------------------------------------------------------------------------- small cases


def _organ_case(make_case: CaseMaker, root: Path, case_id: str, with_uterus: bool = True) -> Path:
    shape = (24, 24, 12)
    liver = sphere(shape, (12, 12, 6), 6)
    lesion = sphere(shape, (12, 12, 6), 2)
    masks = {"liver": liver, "liver_lesion": lesion}
    if with_uterus:
        masks["uterus_lesion"] = np.zeros(shape, np.uint8)
    return make_case(root, case_id, shape, masks)


def test_organ_classes_lesion_wins_over_organ(make_case: CaseMaker, tmp_path: Path) -> None:
    folder = _organ_case(make_case, tmp_path / "data", "BDMAP_00000001")
    report = export_nnunet(tmp_path / "data", tmp_path / "out", 7, name="Liver",
                           organs=["liver"], organ_classes=True)
    assert report.done == ["BDMAP_00000001"]
    meta = json.loads((report.out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["labels"] == {"background": 0, "liver_lesion": 1, "liver": 2}
    label = np.asanyarray(nib.load(report.out / "labelsTr" / "BDMAP_00000001.nii.gz").dataobj)
    liver = np.asanyarray(nib.load(folder / "segmentations" / "liver.nii.gz").dataobj) > 0
    lesion = np.asanyarray(nib.load(folder / "segmentations" / "liver_lesion.nii.gz").dataobj) > 0
    assert np.all(label[lesion] == 1)
    assert np.all(label[liver & ~lesion] == 2)
    assert np.all(label[~liver & ~lesion] == 0)
    assert check_nnunet_dataset(report.out) == []


def test_unknown_status_is_excluded_unless_opted_in(make_case: CaseMaker, tmp_path: Path) -> None:
    data = tmp_path / "data"
    _organ_case(make_case, data, "BDMAP_00000001")
    _organ_case(make_case, data, "BDMAP_00000002", with_uterus=False)
    strict = export_nnunet(data, tmp_path / "out", 8, organs=["liver", "uterus"])
    assert strict.done == ["BDMAP_00000001"]
    assert strict.excluded == [("BDMAP_00000002", "uterus tumor status unknown (no lesion file)")]
    loose = export_nnunet(
        data, tmp_path / "out2", 8, organs=["liver", "uterus"], unknown_as_background=True
    )
    assert loose.done == ["BDMAP_00000001", "BDMAP_00000002"]
    meta = json.loads((loose.out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["tumorscale"]["unknown_as_background"] == {"BDMAP_00000002": ["uterus"]}
    assert check_nnunet_dataset(loose.out) == []


def test_bad_case_is_reported_and_others_go_on(make_case: CaseMaker, tmp_path: Path) -> None:
    data = tmp_path / "data"
    _organ_case(make_case, data, "BDMAP_00000001")
    bad = _organ_case(make_case, data, "BDMAP_00000002")
    bad_lesion = bad / "segmentations" / "liver_lesion.nii.gz"
    save_nifti(bad_lesion, np.zeros((20, 20, 10), np.uint8))
    report = export_nnunet(data, tmp_path / "out", 9, organs=["liver"])
    assert report.done == ["BDMAP_00000001"]
    assert [case for case, _ in report.failed] == ["BDMAP_00000002"]
    assert str(bad_lesion) in report.failed[0][1] and "shape" in report.failed[0][1]
    assert not report.ok
    assert check_nnunet_dataset(report.out) == []


def test_uncompressed_ct_is_gzipped_losslessly(make_case: CaseMaker, tmp_path: Path) -> None:
    folder = _organ_case(make_case, tmp_path / "data", "BDMAP_00000001")
    nii = folder / "ct.nii"
    nii.write_bytes(gzip.decompress((folder / "ct.nii.gz").read_bytes()))
    (folder / "ct.nii.gz").unlink()
    report = export_nnunet(tmp_path / "data", tmp_path / "out", 10, organs=["liver"])
    image = report.out / "imagesTr" / "BDMAP_00000001_0000.nii.gz"
    assert gzip.decompress(image.read_bytes()) == nii.read_bytes()
    assert check_nnunet_dataset(report.out) == []


def test_stale_cases_are_removed_when_the_selection_changes(
    make_case: CaseMaker, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    _organ_case(make_case, data, "BDMAP_00000001")
    _organ_case(make_case, data, "BDMAP_00000002", with_uterus=False)
    first = export_nnunet(data, tmp_path / "out", 11, organs=["liver"])
    orphan = first.out / "imagesTr" / "BDMAP_00000009_0000.nii.gz"  # a crash's leftover
    shutil.copyfile(first.out / "imagesTr" / "BDMAP_00000001_0000.nii.gz", orphan)
    report = export_nnunet(data, tmp_path / "out", 11, organs=["liver", "uterus"])
    assert sorted(p.name for p in (report.out / "imagesTr").iterdir()) == [
        "BDMAP_00000001_0000.nii.gz"
    ]
    assert check_nnunet_dataset(report.out) == []


def test_arguments_and_foreign_folders_are_refused(make_case: CaseMaker, tmp_path: Path) -> None:
    assert dataset_folder_name(5, "Pancreas") == "Dataset005_Pancreas"
    for bad_id in (0, 1000, True, 1.5):
        with pytest.raises(ValueError, match="dataset id"):
            dataset_folder_name(bad_id, "X")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dataset name"):
        dataset_folder_name(5, "a b")
    data = tmp_path / "data"
    _organ_case(make_case, data, "BDMAP_00000001")
    with pytest.raises(ValueError, match="organs"):
        export_nnunet(data, tmp_path / "out", 12, organs=["spleen"])
    (tmp_path / "out" / "Dataset012_Theirs").mkdir(parents=True)
    with pytest.raises(Exception, match="unique ids"):
        export_nnunet(data, tmp_path / "out", 12)
    (tmp_path / "out" / "Dataset013_Tumorscale").mkdir()
    (tmp_path / "out" / "Dataset013_Tumorscale" / "dataset.json").write_text("{}")
    with pytest.raises(Exception, match="not written by tumorscale"):
        export_nnunet(data, tmp_path / "out", 13)


# ----------------------------------------------------------------------------- the checker


@pytest.fixture
def valid_dataset(make_case: CaseMaker, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    for number in (1, 2):
        _organ_case(make_case, data, f"BDMAP_0000000{number}")
    report = export_nnunet(data, tmp_path / "out", 20, organs=["liver"])
    assert check_nnunet_dataset(report.out) == []
    return report.out


def _edit_json(folder: Path, change: Callable[[dict], None]) -> None:
    meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    change(meta)
    (folder / "dataset.json").write_text(json.dumps(meta))


def _write_label(folder: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    path = folder / "labelsTr" / "BDMAP_00000001.nii.gz"
    image = nib.load(path)
    array = change(np.asanyarray(image.dataobj).copy())
    nib.save(nib.Nifti1Image(array.astype(np.uint8), image.affine, image.header), str(path))


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing label": (
        lambda f: (f / "labelsTr" / "BDMAP_00000002.nii.gz").unlink(),
        "missing label for image case BDMAP_00000002",
    ),
    "wrong numTraining": (
        lambda f: _edit_json(f, lambda m: m.update(numTraining=3)),
        "numTraining is 3 but imagesTr holds 2",
    ),
    "non-consecutive labels": (
        lambda f: _edit_json(f, lambda m: m.update(labels={"background": 0, "liver_lesion": 2})),
        "consecutive",
    ),
    "background not 0": (
        lambda f: _edit_json(f, lambda m: m.update(labels={"background": 1, "liver_lesion": 0})),
        "'background' to 0",
    ),
    "missing key": (lambda f: _edit_json(f, lambda m: m.pop("file_ending")), "'file_ending'"),
    "wrong type": (
        lambda f: _edit_json(f, lambda m: m.update(numTraining="2")), "'numTraining' must be"
    ),
    "no channel suffix": (
        lambda f: (f / "imagesTr" / "BDMAP_00000002_0000.nii.gz").rename(
            f / "imagesTr" / "BDMAP_00000002.nii.gz"
        ),
        "channel suffix",
    ),
    "wrong file ending": (
        lambda f: _edit_json(f, lambda m: m.update(file_ending=".nrrd")), "file_ending '.nrrd'"
    ),
    "undeclared label value": (
        lambda f: _write_label(f, lambda a: np.where(a > 0, 5, 0)), "values [5] are not declared"
    ),
    "label on another grid": (
        lambda f: _write_label(f, lambda a: a[:-2]), "differs from BDMAP_00000001_0000"
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_checker_catches_corruption(valid_dataset: Path, corruption: str) -> None:
    corrupt, expected = CORRUPTIONS[corruption]
    corrupt(valid_dataset)
    problems = check_nnunet_dataset(valid_dataset)
    assert any(expected in problem for problem in problems), problems


def test_checker_rejects_bad_folder_names(valid_dataset: Path) -> None:
    renamed = valid_dataset.rename(valid_dataset.parent / "Dataset20_Short")
    assert any("DatasetXXX_Name" in problem for problem in check_nnunet_dataset(renamed))
    assert check_nnunet_dataset(renamed.parent / "absent") == [
        f"{renamed.parent / 'absent'}: not a folder"
    ]
