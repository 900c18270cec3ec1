"""`tumorscale evaluate` end to end: a phantom cohort against itself, and a hand-built cohort
with shifted, missing and extra lesions whose every summary number is worked out below."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import save_nifti
from tumorscale.cli import app
from tumorscale.metrics import EvaluationSettings, evaluate_folders
from tumorscale.phantom import PhantomOptions, write_cohort

SHAPE = (32, 32, 24)
AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])
VOXEL_MM3 = 0.8 * 0.8 * 2.0
runner = CliRunner()


def _box(lo: tuple[int, int, int], size=(6, 6, 4), shape=SHAPE) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[lo[0] : lo[0] + size[0], lo[1] : lo[1] + size[1], lo[2] : lo[2] + size[2]] = 1
    return mask


def _write(root: Path, case_id: str, lesion: np.ndarray | None, affine=AFFINE) -> None:
    folder = root / case_id / "segmentations"
    folder.mkdir(parents=True, exist_ok=True)
    if lesion is not None:
        save_nifti(folder / "pancreatic_lesion.nii.gz", lesion, affine)


A, B = (4, 4, 4), (20, 20, 14)  # two lesion sites, 144 voxels each (radius 3.5 mm > 3 mm)
TINY = np.zeros(SHAPE, np.uint8)
TINY[16, 16, 10] = 1  # one voxel: under the 3 mm radius, dropped at patient level


@pytest.fixture
def cohort(tmp_path: Path) -> tuple[Path, Path]:
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    cases = {
        # case: (truth lesion, predicted lesion or None for no file)
        "BDMAP_P1": (_box(A), _box((6, 4, 4))),  # shifted 2 voxels: overlap 96 → DSC 2/3
        "BDMAP_P2": (_box(A) | _box(B), _box(A)),  # one of two lesions: DSC 2·144/432 = 2/3
        "BDMAP_P3": (_box(A), None),  # no prediction file: empty, flagged
        "BDMAP_C1": (np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)),  # both empty: 1
        "BDMAP_C2": (np.zeros(SHAPE, np.uint8), _box(B)),  # false positive lesion
        "BDMAP_C3": (np.zeros(SHAPE, np.uint8), TINY),  # speck: DSC 0 but patient-negative
    }
    for case_id, (truth_mask, pred_mask) in cases.items():
        _write(truth, case_id, truth_mask)
        _write(pred, case_id, pred_mask)
    _write(truth, "BDMAP_U1", None)  # no truth lesion file: unknown, excluded
    _write(truth, "BDMAP_G1", _box(A))
    _write(pred, "BDMAP_G1", np.zeros((30, 32, 24), np.uint8))  # other grid: error row
    return truth, pred


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "per_case.csv").open(encoding="utf-8") as handle:
        return {row["case_id"]: row for row in csv.DictReader(handle)}


def test_hand_built_cohort_gives_hand_computed_values(cohort, tmp_path):
    truth, pred = cohort
    result = evaluate_folders(pred, truth, tmp_path / "out", ["pancreas"], workers=1)
    s = result.summary["groups"]["all"]["pancreas"]
    assert (s["positive"], s["control"], s["unknown"], s["errors"]) == (3, 3, 2, 1)
    assert s["dsc"]["mean"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert s["dsc_all"]["mean"] == pytest.approx((2 / 3 + 2 / 3 + 0 + 1 + 0 + 0) / 6)
    assert s["lesions"]["t_sen"]["value"] == pytest.approx(2 / 4)  # P1 1/1, P2 1/2, P3 0/1
    assert s["lesions"]["lesion_precision"]["value"] == pytest.approx(2 / 4)  # + C2, C3 specks
    assert s["patients"]["p_sen"]["value"] == pytest.approx(2 / 3)
    assert s["patients"]["spe"]["value"] == pytest.approx(2 / 3)  # C2 is a false positive
    # Mann–Whitney on volumes: positives 184.32, 184.32, 0 vs controls 0, 184.32, 0 → 6/9.
    assert s["patients"]["auc"]["value"] == pytest.approx(6 / 9)
    assert s["t_sen_by_size"]["<20"] == {"detected": 2, "total": 4, "t_sen": 0.5}
    assert result.summary["missing_predictions"] == ["BDMAP_P3"]
    assert [e["case_id"] for e in result.summary["errors"]] == ["BDMAP_G1"]
    assert "shape" in result.summary["errors"][0]["error"]

    rows = _rows(tmp_path / "out")
    assert float(rows["BDMAP_P1"]["dsc"]) == pytest.approx(2 / 3)
    assert float(rows["BDMAP_P1"]["hd95_mm"]) == pytest.approx(1.6)  # the 2-voxel shift
    assert rows["BDMAP_P3"]["prediction_missing"] == "True"
    assert rows["BDMAP_C1"]["empty_case"] == "both-empty"
    assert float(rows["BDMAP_C3"]["pred_volume_mm3"]) == pytest.approx(VOXEL_MM3)
    assert float(rows["BDMAP_C3"]["pred_volume_post_mm3"]) == 0.0
    assert rows["BDMAP_U1"]["tumor_status"] == "unknown" and rows["BDMAP_U1"]["dsc"] == ""
    assert rows["BDMAP_C1"]["hd95_mm"] == "0.0"
    markdown = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "| pancreas | 8 (3/3/2) | 44.4" in markdown


def test_excluding_both_empty_and_operating_threshold(cohort, tmp_path):
    truth, pred = cohort
    settings = EvaluationSettings(empty_policy="exclude", detection_threshold_mm3=200.0)
    result = evaluate_folders(pred, truth, tmp_path / "out", ["pancreas"], settings, workers=1)
    s = result.summary["groups"]["all"]["pancreas"]
    assert s["dsc_all"]["n"] == 5  # C1 excluded
    # 184.32 mm³ < 200 mm³: nothing is called positive any more.
    assert s["patients"]["p_sen"]["value"] == 0.0 and s["patients"]["spe"]["value"] == 1.0
    assert s["patients"]["auc"]["value"] == pytest.approx(6 / 9)  # the sweep ignores T


def test_split_groups_and_parallel_workers_agree(cohort, tmp_path):
    truth, pred = cohort
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"id": ["BDMAP_P1", "BDMAP_P2", "BDMAP_C1"], "ood": ["BDMAP_P3"]}))
    serial = evaluate_folders(
        pred, truth, tmp_path / "a", ["pancreas"], split_path=split, workers=1
    )
    parallel = evaluate_folders(
        pred, truth, tmp_path / "b", ["pancreas"], split_path=split, workers=2
    )
    assert serial.rows == parallel.rows
    groups = serial.summary["groups"]
    assert set(groups) == {"all", "id", "ood"}
    assert groups["id"]["pancreas"]["dsc"]["mean"] == pytest.approx(2 / 3)
    assert groups["ood"]["pancreas"]["dsc"]["mean"] == 0.0
    assert groups["all"]["pancreas"]["rows"] == 4  # only the split's cases


def test_cli_reports_errors_and_exits_nonzero(cohort, tmp_path):
    truth, pred = cohort
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["evaluate", "--pred", str(pred), "--gt", str(truth), "--out", str(out), "-q"]
    )
    assert result.exit_code == 1, result.output
    assert "BDMAP_G1" in result.output and "without prediction" in result.output
    assert (out / "summary.json").exists() and (out / "per_case.csv").exists()
    bad = runner.invoke(
        app,
        [
            "evaluate",
            "--pred",
            str(pred),
            "--gt",
            str(truth),
            "--out",
            str(out),
            "--match",
            "nearest",
        ],
    )
    assert bad.exit_code == 2 and "nearest" in bad.output


def test_phantom_cohort_against_itself_is_perfect(tmp_path):
    options = PhantomOptions(shape=(96, 80, 48), tumor_fraction=0.6)
    write_cohort(tmp_path / "cohort", 5, 11, options)
    out = tmp_path / "self"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--pred",
            str(tmp_path / "cohort"),
            "--gt",
            str(tmp_path / "cohort"),
            "--out",
            str(out),
            "-q",
            "--workers",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    overall = summary["groups"]["all"]["all organs"]
    assert overall["positive"] >= 2 and overall["control"] >= 2
    assert overall["dsc"]["mean"] == 1.0 and overall["nsd"]["mean"] == 1.0
    assert overall["lesions"]["t_sen"]["value"] == 1.0
    assert overall["patients"]["p_sen"]["value"] == 1.0
    assert overall["patients"]["spe"]["value"] == 1.0
    assert overall["patients"]["auc"]["value"] == 1.0
