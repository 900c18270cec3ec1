"""`tumorscale synth` and `tumorscale synth-qa` end to end on a small phantom cohort."""

from __future__ import annotations

import csv
from pathlib import Path

from typer.testing import CliRunner

from tumorscale.cli import app

runner = CliRunner()
FAST = ["--inplane-mm", "1.6", "1.6", "--slice-mm", "3", "3", "--quiet"]


def invoke(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.stdout


def test_synth_then_qa_on_phantoms(tmp_path: Path) -> None:
    healthy, reference = tmp_path / "healthy", tmp_path / "reference"
    invoke("phantom", str(healthy), "--cases", "2", "--seed", "3", "--tumor-fraction", "0", *FAST)
    # seed 5: liver tumors in the reference, so the liver has a distance to report
    invoke("phantom", str(reference), "--cases", "3", "--seed", "5", "--tumor-fraction", "1", *FAST)
    out = tmp_path / "synth"
    args = [
        "synth",
        str(healthy),
        str(out),
        "--organs",
        "liver,pancreas",
        "--per-case",
        "1",
        "--seed",
        "0",
        "--preview",
        "--quiet",
    ]
    output = invoke(*args)
    assert "2 synthetic cases written" in output
    rows = list(csv.DictReader((out / "synthesis.csv").open(encoding="utf-8")))
    inserted = [row for row in rows if not row["skipped"]]
    assert {row["organ"] for row in inserted} == {"liver", "pancreas"}
    for row in inserted:
        assert abs(float(row["achieved_contrast_hu"]) - float(row["contrast_hu"])) <= 15.0
        case = out / row["case_id"] / "segmentations" / f"{row['organ']}_lesion.nii.gz"
        assert case.is_file()
    assert len(list((out / "previews").glob("*.png"))) == len(inserted)
    # A rerun finds everything complete and changes nothing.
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert "0 synthetic cases written, 2 already complete" in invoke(*args)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    qa = tmp_path / "qa"
    output = invoke(
        "synth-qa", str(out), "--reference", str(reference), "--out", str(qa), "--quiet"
    )
    assert "synthetic" in output and "reference" in output
    assert (qa / "qa_features.csv").is_file() and (qa / "qa_summary.csv").is_file()
    assert list(qa.glob("qa_*.png"))


def test_synth_rejects_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    result = runner.invoke(
        app, ["synth", str(tmp_path / "in"), str(tmp_path / "out"), "--size-mix", "4:2"]
    )
    assert result.exit_code == 2 and "--size-mix" in result.output
    result = runner.invoke(
        app, ["synth", str(tmp_path / "in"), str(tmp_path / "out"), "--organs", "lung"]
    )
    assert result.exit_code == 2 and "unknown tumor organ 'lung'" in result.output
