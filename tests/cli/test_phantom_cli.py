"""The issue's acceptance commands, run through the real CLI: phantoms, info, determinism, demo,
and the real example CT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tumorscale.cli import app
from tumorscale.organs import TUMOR_ORGANS

runner = CliRunner()
FAST = ["--inplane-mm", "2.0", "2.5", "--slice-mm", "4", "5", "--quiet"]


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_six_phantoms_and_their_summary(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    invoke("phantom", str(out), "--cases", "6", "--seed", "0", "--quiet")
    info = json.loads(invoke("dataset", "info", str(out), "--json"))
    manifest = json.loads((out / "phantom_manifest.json").read_text(encoding="utf-8"))["cases"]
    females = sum(case["sex"] == "F" for case in manifest)
    assert info["cases"] == 6
    for organ in TUMOR_ORGANS:
        expected_cases = females if organ == "uterus" else 6
        summary = info["organs"][organ]
        assert summary["cases_with_organ"] == expected_cases, organ
        # Every organ a case has carries a lesion file: positive or control, never unknown.
        assert summary["tumor_positive"] + summary["controls"] == expected_cases, organ
        written = {case["case_id"] for case in manifest
                   for tumor in case["tumors"] if tumor["organ"] == organ}
        assert summary["tumor_positive"] == len(written), organ
        records = [t for case in manifest for t in case["tumors"] if t["organ"] == organ]
        # Touching lesions may merge into one 26-connected instance, never split into more.
        assert len(written) <= summary["tumor_instances"] <= len(records), organ
    assert info["cases_with_any_tumor"] == sum(bool(case["tumors"]) for case in manifest) > 0
    assert info["problems"] == []
    assert runner.invoke(app, ["dataset", "check", str(out), "--quiet"]).exit_code == 0


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    for name in ("a", "b"):
        invoke("phantom", str(tmp_path / name), "--cases", "3", "--seed", "7", *FAST)
    files_a, files_b = (
        sorted(p.relative_to(tmp_path / n) for p in (tmp_path / n).rglob("*") if p.is_file())
        for n in ("a", "b")
    )
    assert files_a == files_b and len(files_a) > 40
    for relative in files_a:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    invoke("phantom", str(tmp_path / "c"), "--cases", "1", "--seed", "8", *FAST)
    ct = Path("BDMAP_00000001") / "ct.nii.gz"
    assert (tmp_path / "c" / ct).read_bytes() != (tmp_path / "a" / ct).read_bytes()


def test_bad_phantom_options_are_clear_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["phantom", str(tmp_path), "--inplane-mm", "1.0", "0.5"])
    assert result.exit_code == 2
    assert "inplane_spacing_mm" in result.output
    result = runner.invoke(app, ["phantom", str(tmp_path), "--style", "mri"])
    assert result.exit_code == 2 and "unknown style 'mri'" in result.output


def test_quick_demo_runs_a_study_end_to_end(tmp_path: Path) -> None:
    """`tumorscale demo --quick`: phantoms → plan → 4 runs → fit → self-contained HTML report."""
    output = invoke("demo", "--quick", "--out", str(tmp_path / "demo"), "--quiet")
    study = tmp_path / "demo" / "study"
    html = study / "report" / "report.html"
    assert "report:" in output and html.is_file()
    text = html.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") >= 5 and "http://" not in text
    runs = (study / "results" / "runs.csv").read_text(encoding="utf-8").splitlines()
    conditions = {line.split(",")[2] for line in runs[1:]}
    assert {"real-only", "real+3x-synthetic"} <= conditions
    assert (study / "results" / "fit.json").is_file()


@pytest.mark.network
def test_dataset_example_then_info(tmp_path: Path, example_cache: Path) -> None:
    out = tmp_path / "ex"
    invoke("dataset", "example", str(out), "--cache", str(example_cache), "--quiet")
    info = json.loads(invoke("dataset", "info", str(out), "--json"))
    assert info["cases"] == 1
    for organ in ("liver", "pancreas", "kidney", "colon"):
        assert info["organs"][organ]["cases_with_organ"] == 1
        assert info["organs"][organ]["unknown"] == 1  # no lesion files: never guessed negative


def test_demo_accepts_a_relative_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tumorscale demo` (default `./tumorscale-demo`) with a relative folder: the study file's
    data paths must not be resolved twice (they were: tumorscale-demo/tumorscale-demo/...)."""
    from tumorscale.study.demo import make_demo

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tumorscale.study.demo.execute_study", _stop_before_running)
    with pytest.raises(_Stop):
        make_demo(Path("relative-demo"), quick=True)
    assert (tmp_path / "relative-demo" / "study" / "plan.yaml").is_file()


class _Stop(Exception):
    pass


def _stop_before_running(*args, **kwargs):
    raise _Stop
