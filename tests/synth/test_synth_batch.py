"""Batch synthesis: healthy-case selection, layout, synthesis.csv, resume, workers, previews."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumorscale.atlas import TumorStatus, index_dataset, instance_diameters_mm, lesion_stats
from tumorscale.io import read_geometry, read_nifti
from tumorscale.phantom import PhantomOptions, write_cohort
from tumorscale.synth.batch import (
    CSV_COLUMNS,
    CSV_NAME,
    PARTIAL_PREFIX,
    PREVIEW_FOLDER,
    RECORD_NAME,
    output_case_id,
    params_from_row,
    read_source,
    select_sources,
    synthesize_case,
    synthesize_dataset,
)
from tumorscale.synth.preview import preview_name, previews_for_written_case

# Seed 1: case 1 (female, LPS) and case 3 (female, LAS) are controls, case 2 has a liver tumor.
OPTIONS = PhantomOptions(inplane_spacing_mm=(3.0, 3.0), slice_spacing_mm=(4.0, 4.0),
                         tumor_fraction=0.4)
ORGANS = ["pancreas", "liver", "kidney"]
SOURCES = ["BDMAP_00000001", "BDMAP_00000003"]
PER_CASE = 2
SEED = 5


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("source")
    write_cohort(root, 3, 1, OPTIONS)
    return root


@pytest.fixture(scope="module")
def uninterrupted(source, tmp_path_factory) -> tuple[Path, object, list[tuple[int, int]]]:
    out = tmp_path_factory.mktemp("synthetic") / "out"
    calls: list[tuple[int, int]] = []
    report = synthesize_dataset(source, out, ORGANS, PER_CASE, SEED,
                                progress=lambda done, total: calls.append((done, total)))
    return out, report, calls


def test_output_ids_sort_and_are_bounded() -> None:
    assert output_case_id("BDMAP_00000003", 1) == "BDMAP_00000003_syn01"
    assert output_case_id("BDMAP_00000003", 12) == "BDMAP_00000003_syn12"
    ids = [output_case_id("BDMAP_00000003", k) for k in range(1, 100)]
    assert ids == sorted(ids)
    with pytest.raises(ValueError):
        output_case_id("BDMAP_00000003", 100)


def test_healthy_sources_only(uninterrupted, source) -> None:
    out, report, calls = uninterrupted
    expected = [output_case_id(s, k) for s in SOURCES for k in range(1, PER_CASE + 1)]
    assert report.done == expected
    assert report.skipped == [] and report.failed == []
    assert report.excluded == [("BDMAP_00000002", "liver has a tumor")]
    assert calls[0] == (0, 4) and calls[-1] == (4, 4)
    assert sorted(p.name for p in out.iterdir()) == [*expected, CSV_NAME]
    assert not (source / CSV_NAME).exists()  # nothing written into the source tree


def test_cases_are_abdomenatlas_with_tumors_in_each_organ(uninterrupted, source) -> None:
    out, report, _ = uninterrupted
    index = index_dataset(out)
    assert [case.case_id for case in index.cases] == report.done
    for case in index.cases:
        source_id = case.case_id.split("_syn")[0]
        source_case = index_dataset(source).case(source_id)
        # Same grid and orientation as the source CT (written back in its own geometry).
        written, original = read_geometry(case.ct), read_geometry(source_case.ct)
        assert written.shape == original.shape
        np.testing.assert_allclose(written.affine, original.affine, atol=1e-5)
        assert written.orientation == original.orientation != "RAS"
        # Every source mask is carried; the synthesized organs get <organ>_lesion files.
        source_names = {p.name for p in source_case.segmentation_files}
        names = {p.name for p in case.segmentation_files}
        assert names == source_names
        for organ in ORGANS:
            assert lesion_stats(case, organ, use_cache=False).status == TumorStatus.POSITIVE
        for organ in ("colon", "esophagus", "uterus"):  # copied all-zero lesion files
            assert lesion_stats(case, organ, use_cache=False).status == TumorStatus.CONTROL
        assert (case.folder / RECORD_NAME).is_file()


def test_synthesis_csv_matches_the_written_tumors(uninterrupted) -> None:
    out, report, _ = uninterrupted
    with open(out / CSV_NAME, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    assert [(r["case_id"], r["organ"]) for r in rows] == [
        (case_id, organ) for case_id in report.done for organ in ("pancreas", "liver", "kidney")
    ]
    assert report.details["tumors"] == sum(1 for r in rows if not r["skipped"]) == len(rows)
    for row in rows:
        assert row["source_id"] == row["case_id"].split("_syn")[0]
        assert row["tumor"] == "1"
        mask = read_nifti(out / row["case_id"] / "segmentations" / f"{row['organ']}_lesion.nii.gz",
                          kind="mask")
        (measured,) = instance_diameters_mm(mask.array, mask.voxel_volume_mm3)
        # Later organs' mass effect may nudge an earlier tumor by a voxel or so.
        assert measured == pytest.approx(float(row["achieved_diameter_mm"]), rel=0.1)
        assert abs(float(row["achieved_contrast_hu"]) - float(row["contrast_hu"])) < 15.0
        geometry = json.loads(row["geometry"])  # typed shape record (None: a plain ellipsoid)
        assert geometry is None or geometry["type"] == "ellipsoid"
        assert row["phase"] == "portal_venous"


def test_csv_rows_rebuild_the_parameters(uninterrupted, source) -> None:
    out, _, _ = uninterrupted
    case = index_dataset(source).case(SOURCES[0])
    ct, masks, _ = read_source(case, ("pancreas", "liver", "kidney"))
    new_ct, _, lesions, records = synthesize_case(ct, masks, ("pancreas", "liver", "kidney"),
                                                  SEED, SOURCES[0], 1)
    with open(out / CSV_NAME, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["case_id"] == f"{SOURCES[0]}_syn01"]
    assert [params_from_row(row) for row in rows] == [record.params for record in records]
    # The in-memory result is what was written.
    written = read_nifti(out / f"{SOURCES[0]}_syn01" / "ct.nii.gz", kind="image")
    np.testing.assert_array_equal(written.array, np.rint(new_ct.array))
    kidney = read_nifti(out / f"{SOURCES[0]}_syn01" / "segmentations" / "kidney_lesion.nii.gz",
                        kind="mask")
    np.testing.assert_array_equal(kidney.array, lesions["kidney"])


def test_interrupted_then_rerun_equals_uninterrupted(uninterrupted, source, tmp_path) -> None:
    reference_out, _, _ = uninterrupted
    out = tmp_path / "out"

    def stop_after_first(done: int, total: int) -> None:
        if done == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        synthesize_dataset(source, out, ORGANS, PER_CASE, SEED, progress=stop_after_first)
    first = output_case_id(SOURCES[0], 1)
    assert sorted(p.name for p in out.iterdir()) == [first]
    # What a kill leaves behind: a stale partial folder and a half-written case folder.
    stale = out / f"{PARTIAL_PREFIX}{output_case_id(SOURCES[0], 2)}-x"
    stale.mkdir()
    (stale / "ct.nii.gz").write_bytes(b"half")
    half = out / output_case_id(SOURCES[1], 1)
    (half / "segmentations").mkdir(parents=True)
    (half / "ct.nii.gz").write_bytes(b"half")

    report = synthesize_dataset(source, out, ORGANS, PER_CASE, SEED)
    assert report.skipped == [first]
    assert len(report.done) == 3
    assert tree_bytes(out) == tree_bytes(reference_out)


def test_rerun_skips_complete_cases(uninterrupted, source) -> None:
    out, _, _ = uninterrupted
    before = tree_bytes(out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("ct.nii.gz")}
    report = synthesize_dataset(source, out, ORGANS, PER_CASE, SEED)
    assert report.done == [] and len(report.skipped) == 4
    assert tree_bytes(out) == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("ct.nii.gz")} == stamps


def test_a_changed_source_is_synthesized_again_and_reported(source, tmp_path) -> None:
    copy = tmp_path / "source"
    shutil.copytree(source, copy)
    out = tmp_path / "out"
    synthesize_dataset(copy, out, ORGANS, PER_CASE, SEED)
    ct = copy / SOURCES[1] / "ct.nii.gz"
    image = nib.load(str(ct))
    brighter = np.asarray(image.dataobj).astype(np.int16) + 10  # another scan of the same grid
    nib.save(nib.Nifti1Image(brighter, image.affine, image.header), str(ct))
    report = synthesize_dataset(copy, out, ORGANS, PER_CASE, SEED)
    redone = [output_case_id(SOURCES[1], k) for k in range(1, PER_CASE + 1)]
    assert report.done == report.changed == redone
    assert report.skipped == [output_case_id(SOURCES[0], k) for k in range(1, PER_CASE + 1)]


def test_workers_give_identical_results_and_previews_on_rerun(uninterrupted, source,
                                                              tmp_path) -> None:
    reference_out, _, _ = uninterrupted
    out = tmp_path / "parallel"
    report = synthesize_dataset(source, out, ORGANS, PER_CASE, SEED, workers=2)
    assert len(report.done) == 4
    assert tree_bytes(out) == tree_bytes(reference_out)
    # --preview on a finished run draws the missing previews from the written files.
    report = synthesize_dataset(source, out, ORGANS, PER_CASE, SEED, preview=True)
    assert len(report.skipped) == 4
    pngs = sorted(p.name for p in (out / PREVIEW_FOLDER).iterdir())
    expected = sorted(preview_name(case_id, organ, 1) for case_id in report.skipped
                      for organ in ORGANS)
    assert pngs == expected
    assert all((out / PREVIEW_FOLDER / name).read_bytes()[:4] == b"\x89PNG" for name in pngs)


def test_results_depend_on_the_case_id_not_on_the_other_cases(uninterrupted, source,
                                                               tmp_path) -> None:
    reference_out, _, _ = uninterrupted
    alone = tmp_path / "alone"
    shutil.copytree(source / SOURCES[1], alone / SOURCES[1])
    out = tmp_path / "out"
    synthesize_dataset(alone, out, ["kidney", "liver", "pancreas"], PER_CASE, SEED, preview=True)
    for k in (1, 2):
        case_id = output_case_id(SOURCES[1], k)
        assert tree_bytes(out / case_id) == tree_bytes(reference_out / case_id)
    fresh = tree_bytes(out / PREVIEW_FOLDER)
    assert len(fresh) == 2 * len(ORGANS)
    # Previews drawn while building equal those drawn later from the written files.
    redrawn = tmp_path / "redrawn"
    for k in (1, 2):
        case_id = output_case_id(SOURCES[1], k)
        stored = json.loads((reference_out / case_id / RECORD_NAME).read_text(encoding="utf-8"))
        previews_for_written_case(reference_out / case_id, stored["rows"], redrawn)
    assert tree_bytes(redrawn) == fresh
    # Another seed gives other tumors.
    other = synthesize_dataset(alone, tmp_path / "other", ORGANS, 1, SEED + 1)
    assert other.done == [output_case_id(SOURCES[1], 1)]
    assert (tmp_path / "other" / other.done[0] / "ct.nii.gz").read_bytes() != (
        reference_out / other.done[0] / "ct.nii.gz"
    ).read_bytes()


def test_bad_cases_are_recorded_and_the_others_go_on(source, tmp_path) -> None:
    tree = tmp_path / "tree"
    for case_id in SOURCES:
        shutil.copytree(source / case_id, tree / case_id)
    broken = tree / "BDMAP_00000009"
    shutil.copytree(source / SOURCES[0], broken)
    (broken / "ct.nii.gz").write_bytes((broken / "ct.nii.gz").read_bytes()[:400])  # truncated
    mismatch = tree / "BDMAP_00000010"
    shutil.copytree(source / SOURCES[1], mismatch)
    shutil.copyfile(source / SOURCES[0] / "segmentations" / "liver.nii.gz",
                    mismatch / "segmentations" / "liver.nii.gz")  # another case's grid
    report = synthesize_dataset(tree, tmp_path / "out", ["liver"], 1, SEED)
    assert report.done == [output_case_id(s, 1) for s in SOURCES]
    failed = dict(report.failed)
    assert set(failed) == {"BDMAP_00000009", "BDMAP_00000010"}
    assert "liver.nii.gz" in failed["BDMAP_00000010"]
    assert not report.ok
    assert not any(p.name.startswith(PARTIAL_PREFIX) for p in (tmp_path / "out").iterdir())


def test_unknown_status_needs_allow_unknown(source, tmp_path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(source / SOURCES[0], tree / SOURCES[0])
    for lesion in (tree / SOURCES[0] / "segmentations").glob("*_lesion.nii.gz"):
        lesion.unlink()
    cases = index_dataset(tree).cases
    plans, excluded, failed = select_sources(cases, ["liver", "uterus"])
    assert plans == [] and failed == []
    assert excluded == [(SOURCES[0], "liver status unknown (no lesion file); "
                                     "uterus status unknown (no lesion file)")]
    plans, _, _ = select_sources(cases, ["uterus", "liver"], allow_unknown=True)
    assert [(p.case.case_id, p.organs) for p in plans] == [(SOURCES[0], ("liver", "uterus"))]


@pytest.mark.parametrize(
    ("organs", "per_case", "size_mix"),
    [(["lung"], 1, (4, 2, 1)), ([], 1, (4, 2, 1)), (["liver"], 0, (4, 2, 1)),
     (["liver"], 100, (4, 2, 1)), (["liver"], 1, (0, 0, 0)), (["liver"], 1, (1, 2))],
)
def test_bad_requests_are_refused(source, tmp_path, organs, per_case, size_mix) -> None:
    with pytest.raises(ValueError):
        synthesize_dataset(source, tmp_path / "out", organs, per_case, 0, size_mix=size_mix)
