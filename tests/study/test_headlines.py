"""Headlines are a function of the fit result: fit.md prints them, the report recomputes them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.study.test_fit import _clean_rows, _learning
from tests.study.test_report import make_study
from tumorscale.study.fit import fit_study, write_fit
from tumorscale.study.headlines import NO_COMPARISON, headline_lines, headline_markdown
from tumorscale.study.report import write_report


def _fit_md_headlines(path: Path) -> list[str]:
    section = path.read_text(encoding="utf-8").split("## Headlines")[1].split("\n## ")[0]
    return [line for line in section.splitlines() if line.strip()]


def test_fit_md_prints_the_fit_results_headlines(tmp_path: Path) -> None:
    rows = _clean_rows()
    study = fit_study(rows, metrics=("dsc", "nsd"), n_bootstrap=50, seed=0,
                      learning=_learning(rows, lambda row: False))  # fmt: skip
    json_path, md_path = write_fit(study, tmp_path)
    headlines = study.headlines()
    assert headlines and any("fewer" in line for line in headlines)
    assert _fit_md_headlines(md_path) == headlines
    assert headline_lines(json.loads(json_path.read_text(encoding="utf-8"))) == headlines
    text = md_path.read_text(encoding="utf-8")
    assert text.startswith(headline_markdown(study.to_json()))


def test_unreadable_records_give_no_line_and_no_error() -> None:
    saving = {"metric": "dsc", "test_set": "id", "organ": "liver", "target": {"kind": "plateau"}}
    data = {"fits": [{"metric": "dsc", "organ": "liver", "points": "junk"}, "junk", None],
            "savings": [saving, 3, {"target": None}]}  # fmt: skip
    assert headline_lines(data) == []
    assert headline_lines({}) == []
    assert headline_markdown({"fits": []}) == "## Headlines\n\n" + NO_COMPARISON


def test_report_headlines_come_from_fit_json_not_fit_md(tmp_path: Path) -> None:
    study = make_study(tmp_path, cases=False, ood=False, logs=False)
    path = study / "results" / "fit.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["savings"][0]["note"] = "DSC < 0.9 & rising"
    path.write_text(json.dumps(data), encoding="utf-8")
    (study / "results" / "fit.md").unlink()  # the report does not need it
    paths = write_report(study)
    markdown = paths.markdown.read_text(encoding="utf-8")
    text = paths.html.read_text(encoding="utf-8")
    assert all(line in markdown for line in headline_lines(data))
    assert "Note: DSC < 0.9 & rising." in markdown
    assert "Note: DSC &lt; 0.9 &amp; rising." in text and "DSC < 0.9" not in text


def test_report_without_fit_json_says_so(tmp_path: Path) -> None:
    study = make_study(tmp_path, fit=False, cases=False, ood=False, logs=False)
    (study / "results" / "fit.md").write_text("## Headlines\n\n- stale text\n", encoding="utf-8")
    markdown = write_report(study).markdown.read_text(encoding="utf-8")
    assert "No headline numbers (results/fit.json was not found" in markdown
    assert "stale text" not in markdown
