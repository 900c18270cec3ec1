"""The study report: files, self-contained HTML, Markdown links, numbers, defensive inputs."""

from __future__ import annotations

import base64
import csv
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.figure import Figure as MplFigure

from tests.conftest import save_nifti, sphere
from tests.study.test_learning import write_log
from tumorscale.errors import InputFileError
from tumorscale.study.law import power_law
from tumorscale.study.report import (
    ZERO_LABEL,
    ReportPaths,
    StudyData,
    bootstrap_band,
    example_runs,
    load_report_data,
    markdown_to_html,
    report_study_folder,
    write_report,
)
from tumorscale.study.report.figures import _band, _colours, _draw_panel
from tumorscale.study.report.load import conditions_of as _conditions
from tumorscale.study.report.slices import _axial

COUNTS = (4, 8, 16, 32)
CONDITIONS = {"real_only": 0.0, "real_syn3": 3.0}
SEEDS = (0, 1)
LAWS = {"dsc": (0.85, 0.6, 0.5), "nsd": (0.9, 0.7, 0.6)}  # known a, b, c per metric
HEADLINE = "In-distribution DSC plateau (real only): 0.812 [0.790, 0.830]; DSC < 0.9 & rising."
NOT_CONVERGED = "only 2 distinct counts"
SATURATION_RULE = "saturated when the curve at the largest n is within 1% of its plateau"
SHAPE = (24, 24, 10)
RUN_COLUMNS = ["run_id", "n_real", "condition", "synthetic_ratio", "seed", "test_set", "organ",
               "dsc", "nsd", "t_sen", "p_sen", "spe", "auc"]  # fmt: skip


def _run_id(n: int, condition: str, seed: int) -> str:
    return f"n{n:02d}_{condition}_s{seed}"


def _estimate(value: float, spread: float, extrapolated: bool | None = None) -> dict:
    record = {"value": value, "ci_low": value - spread, "ci_high": value + spread}
    return record if extrapolated is None else {**record, "extrapolated": extrapolated}


def _n_estimate(value: float, spread: float, extrapolated: bool) -> dict:
    return {**_estimate(value, spread, extrapolated), "ci_extrapolated": extrapolated,
            "measured_range": [COUNTS[0], COUNTS[-1]]}  # fmt: skip


def _fit(metric: str, test_set: str, condition: str, organ: str = "all organs") -> dict:
    """A fit record in the form `study fit` writes (schema tumorscale.study.fit/1)."""
    a, b, c = LAWS[metric]
    a += 0.03 * CONDITIONS[condition]  # synthetic data lifts the plateau a little
    values = power_law(np.array(COUNTS, float), a, b, c)
    converged = not (metric == "nsd" and test_set == "ood_b" and condition == "real_only")
    band_n = np.geomspace(COUNTS[0], COUNTS[-1], 10)
    band = {"n_real": band_n.tolist(), "value": power_law(band_n, a, b, c).tolist(),
            "ci_low": (power_law(band_n, a, b, c) - 0.01).tolist(),
            "ci_high": (power_law(band_n, a, b, c) + 0.01).tolist()}  # fmt: skip
    return {
        "metric": metric, "test_set": test_set, "condition": condition,
        "synthetic_ratio": CONDITIONS[condition], "organ": organ,
        "points": [{"n_real": n, "value": float(v), "ci_low": float(v) - 0.02,
                    "ci_high": float(v) + 0.02, "n_seeds": len(SEEDS)}
                   for n, v in zip(COUNTS, values, strict=True)],
        "power_law": {"a": _estimate(a, 0.02, True), "b": _estimate(b, 0.1),
                      "c": _estimate(c, 0.1), "warning": "", "converged": converged,
                      "reason": None if converged else NOT_CONVERGED, "residual_sd": 0.01},
        "log_linear": {"slope": 0.05, "intercept": 0.4, "slope_ci_low": 0.03,
                       "slope_ci_high": 0.07, "log_base": 10},
        "n_at": {"0.95": _n_estimate(20.0, 5.0, False), "0.99": _n_estimate(400.0, 150.0, True)},
        "saturated": {"value": test_set == "ood_b", "confident": False,
                      "rule": SATURATION_RULE},
        "band": band if converged else None,
    }  # fmt: skip


def _fit_json(test_sets: tuple[str, ...]) -> dict:
    fits = [_fit(m, t, c) for m in LAWS for t in test_sets for c in CONDITIONS]
    fits.append(_fit("dsc", "in_distribution", "real_only", organ="liver"))
    saving = {"metric": "dsc", "test_set": "in_distribution", "organ": "all organs",
              "condition": "real_syn3", "synthetic_ratio": 3.0, "baseline_condition": "real_only",
              "target": {"kind": "plateau", "parameter": 0.95, **_estimate(0.81, 0.02)},
              "n_real_only": _n_estimate(30.0, 6.0, False),
              "n_with_synthetic": _n_estimate(10.0, 2.0, False),
              "ratio": {"value": 3.0, "ci_low": 2.1, "ci_high": 4.5},
              "extrapolated": False, "note": ""}  # fmt: skip
    # the brief's older form of a saving (level, real_only_n, synthetic_n) must still read
    legacy = {"metric": "nsd", "test_set": "in_distribution", "condition": "real_syn3",
              "level": 0.8, "real_only_n": _estimate(12.0, 3.0),
              "synthetic_n": {**_estimate(50_000.0, 10.0), "measured_range": [4, 32]},
              "ratio": {"value": 0.25, "ci_low": None, "ci_high": None},
              "extrapolated": True}  # fmt: skip
    return {"schema": "tumorscale.study.fit/1", "fits": fits, "savings": [saving, legacy]}


def _runs_rows(test_sets: tuple[str, ...]) -> list[dict]:
    rows = []
    for n in COUNTS:
        for condition, ratio in CONDITIONS.items():
            for seed in SEEDS:
                for test_set in test_sets:
                    for organ in ("all organs", "liver"):
                        dsc = 0.85 - 0.6 * n**-0.5 + 0.01 * seed
                        rows.append({"run_id": _run_id(n, condition, seed), "n_real": n,
                                     "condition": condition, "synthetic_ratio": ratio,
                                     "seed": seed, "test_set": test_set, "organ": organ,
                                     "dsc": dsc, "nsd": dsc + 0.05, "spe": 0.9,
                                     "auc": ""})  # fmt: skip
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, RUN_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _write_case(folder: Path, lesion_centre: tuple[int, int, int] | None) -> None:
    rng = np.random.default_rng(1)
    save_nifti(folder / "ct.nii.gz", rng.normal(40, 20, SHAPE).astype(np.int16))
    lesion = np.zeros(SHAPE, np.uint8) if lesion_centre is None else sphere(SHAPE, lesion_centre, 3)
    save_nifti(folder / "segmentations" / "liver_lesion.nii.gz", lesion)
    save_nifti(folder / "segmentations" / "liver.nii.gz", sphere(SHAPE, (12, 12, 5), 8))


def make_study(
    root: Path,
    *,
    fit: bool = True,
    runs: bool = True,
    plan: bool = True,
    ood: bool = True,
    cases: bool = True,
    logs: bool = True,
) -> Path:
    """A study folder as plan/run/fit leave it (the plan calls the in-distribution set 'id').

    Training logs: every run's loss falls except FLAT_RUN's; NO_LOG_RUN has none."""
    root.mkdir(parents=True, exist_ok=True)
    test_sets = ("id", "ood_b") if ood else ("id",)
    if plan:
        entries = {name: {"folder": f"testsets/{name}", "in_distribution": name == "id"}
                   for name in test_sets}  # fmt: skip
        plan_values = {"name": "fixture <study>", "organs": ["liver"], "test_sets": entries,
                       "compute": {"policy": "fixed", "iterations": 10}}  # fmt: skip
        (root / "plan.yaml").write_text(yaml.safe_dump(plan_values), encoding="utf-8")
    results = root / "results"
    results.mkdir(parents=True, exist_ok=True)
    if fit:
        fitted = ("in_distribution", "ood_b") if ood else ("in_distribution",)
        (results / "fit.json").write_text(json.dumps(_fit_json(fitted)), encoding="utf-8")
        (results / "fit.md").write_text(f"# Headline\n\n- {HEADLINE}\n", encoding="utf-8")
    if runs:
        _write_csv(results / "runs.csv", _runs_rows(test_sets))
    if logs:
        _write_logs(root)
    if cases:
        for name in test_sets:
            _write_case(root / "testsets" / name / "BDMAP_00000001", (12, 12, 5))
            _write_case(root / "testsets" / name / "BDMAP_00000002", None)
        for n in (COUNTS[0], COUNTS[-1]):
            predicted = sphere(SHAPE, (13, 12, 5), 2 + n // 16)
            folder = root / "runs" / _run_id(n, "real_only", 0) / "predict" / "id"
            save_nifti(
                folder / "BDMAP_00000001" / "segmentations" / "liver_lesion.nii.gz", predicted
            )
    return root


FLAT_RUN, NO_LOG_RUN = _run_id(4, "real_only", 1), _run_id(32, "real_syn3", 1)


def _write_logs(root: Path) -> None:
    for n in COUNTS:
        for condition in CONDITIONS:
            for seed in SEEDS:
                run_id = _run_id(n, condition, seed)
                falling = [1.5 / (1 + 0.2 * k) for k in range(20)]  # 1.5 → 0.31
                losses = [1.0, 1.02, 0.98, 1.01] * 5 if run_id == FLAT_RUN else falling
                if run_id != NO_LOG_RUN:
                    write_log(root / "runs" / run_id / "train", losses)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> ReportPaths:
    return write_report(make_study(tmp_path_factory.mktemp("study")))


def _links(markdown: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", markdown)


def test_writes_markdown_html_and_every_figure(full_report: ReportPaths) -> None:
    assert full_report.html.is_file() and full_report.markdown.is_file()
    names = {path.name for path in full_report.figures}
    # dsc, nsd, spe from the fits/runs.csv (auc is empty everywhere); example slices for both sets
    stems = ("metric_dsc", "metric_nsd", "metric_spe", "example_in_distribution", "example_ood_b",
             "training_loss")
    expected = {f"{stem}.{suffix}" for stem in stems for suffix in ("png", "svg")}
    assert names == expected
    assert all(path.is_file() and path.stat().st_size > 1000 for path in full_report.figures)


def test_html_embeds_every_png_and_fetches_nothing(full_report: ReportPaths) -> None:
    text = full_report.html.read_text(encoding="utf-8")
    embedded = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    pngs = [path for path in full_report.figures if path.suffix == ".png"]
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(p.read_bytes() for p in pngs)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert "url(" not in text and "<script" not in text.lower() and "@import" not in text


def test_markdown_links_every_figure_and_each_exists(full_report: ReportPaths) -> None:
    markdown = full_report.markdown.read_text(encoding="utf-8")
    links = _links(markdown)
    base = full_report.markdown.parent
    assert all((base / link).is_file() for link in links)
    assert {(base / link).resolve() for link in links} == {p.resolve() for p in full_report.figures}


def test_headline_and_numbers_appear_escaped(full_report: ReportPaths) -> None:
    markdown = full_report.markdown.read_text(encoding="utf-8")
    text = full_report.html.read_text(encoding="utf-8")
    # fit.md holds a decoy: the headlines are made from fit.json's content, fit.md is not read
    assert HEADLINE not in markdown and "0.812 [0.790, 0.830]" not in text
    saving = ("**in_distribution, all organs**: Real only reaches 95% of its DSC plateau "
              "(0.85 [0.83, 0.87]) at 30 [24, 36] real scans; with 3× synthetic at 10 [8, 12] "
              "(3.0× fewer [2.1, 4.5]).")  # fmt: skip
    assert saving in markdown
    assert "<strong>in_distribution, all organs</strong>: Real only reaches 95% of its" in text
    assert "fixture &lt;study&gt;" in text and "<study>" not in text
    # plateau of dsc/real_only (0.85 ± 0.02), n for 99% marked extrapolated, savings ratio
    shown = [
        "0.850 [0.830, 0.870] (extrapolated)",
        "400 [250, 550] (extrapolated)",
        "95% of the real-only plateau: 0.810 [0.790, 0.830]",
        "| 30 [24, 36] | 10 [8, 12] | 3.00× [2.10×, 4.50×] | no |",
        # the legacy-form saving, its count capped at 100× the largest measured n
        "| 0.800 | 12 [9, 15] | > 3,200 (extrapolated) | 0.25× | yes |",
        "0.050 [0.030, 0.070]",
        SATURATION_RULE,
    ]
    for number in shown:
        assert number in markdown
        cells = [c.strip() for c in number.strip("| ").split(" | ")] if "|" in number else [number]
        assert all(html.escape(cell) in text for cell in cells)


def test_non_converged_fit_is_named_with_its_reason(full_report: ReportPaths) -> None:
    markdown = full_report.markdown.read_text(encoding="utf-8")
    assert f"fit did not converge: {NOT_CONVERGED}" in markdown
    assert "out-of-distribution: ood_b, real_only" in markdown


def test_in_distribution_names_are_merged(full_report: ReportPaths) -> None:
    # fit.json says in_distribution, runs.csv and the plan say 'id': one test set, not two
    markdown = full_report.markdown.read_text(encoding="utf-8")
    assert "out-of-distribution: id" not in markdown
    assert "Specificity per organ, in-distribution" in markdown
    assert "| liver | real_only |" in markdown


def test_example_runs_are_smallest_and_largest_with_lowest_seed(tmp_path: Path) -> None:
    data = load_report_data(make_study(tmp_path, fit=False, cases=False))
    runs = example_runs(data)
    assert list(runs) == ["real_only", "real_syn3"]
    assert [(r.run_id, r.n_real) for r in runs["real_only"]] == [
        (_run_id(4, "real_only", 0), 4),
        (_run_id(32, "real_only", 0), 32),
    ]


def test_axial_slice_is_radiological_with_anterior_up() -> None:
    volume = np.zeros((4, 5, 3))
    volume[3, 4, 1] = 1.0  # most right (i), most anterior (j) in RAS
    view = _axial(volume, 1)
    assert view.shape == (5, 4)
    # origin="lower": last row is the top (anterior); patient right is the viewer's left
    assert view[4, 0] == 1.0 and view.sum() == 1.0


def test_band_envelops_the_fitted_curve() -> None:
    n = np.geomspace(4, 128, 50)
    params = {"a": _estimate(0.85, 0.02), "b": _estimate(0.6, 0.1), "c": _estimate(0.5, 0.1)}
    low, high = _band(n, params)
    curve = power_law(n, 0.85, 0.6, 0.5)
    assert np.all(low <= curve) and np.all(curve <= high)
    assert np.allclose(high[-1], 0.87 - 0.5 * 128**-0.6)
    assert _band(n, {**params, "b": {"value": 0.6, "ci_low": None, "ci_high": None}}) is None


def test_markdown_subset_is_escaped() -> None:
    rendered = markdown_to_html(
        "## Title\n\n<script>x</script> **bold** `c`\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    )
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered
    assert "<h2>Title</h2>" in rendered and "<strong>bold</strong>" in rendered
    assert "<td>1</td><td>2</td>" in rendered


@pytest.mark.parametrize(
    "options",
    [
        {"fit": False, "cases": False},
        {"runs": False},
        {"plan": False, "ood": False},
        {"ood": False, "cases": False},
        {"fit": False, "runs": False, "plan": False, "cases": False},
    ],
    ids=["no-fit", "no-runs", "no-plan", "no-ood", "nothing"],
)
def test_missing_inputs_still_give_a_report(tmp_path: Path, options: dict) -> None:
    paths = write_report(make_study(tmp_path, **options))
    markdown = paths.markdown.read_text(encoding="utf-8")
    assert paths.html.is_file()
    assert all((paths.markdown.parent / link).is_file() for link in _links(markdown))
    if not options.get("fit", True):
        assert "fit.json not found" in markdown and "No headline numbers" in markdown
    if not options.get("ood", True):
        assert "out-of-distribution" not in markdown
    if options == {"plan": False, "ood": False}:  # the usual name "id" still finds the cases
        assert "in-distribution: id" in markdown
        assert "example_in_distribution.png" in {p.name for p in paths.figures}


def test_broken_and_null_inputs_do_not_crash(tmp_path: Path) -> None:
    study = make_study(tmp_path / "a", runs=False, cases=False)
    (study / "results" / "fit.json").write_text("{not json", encoding="utf-8")
    (study / "plan.yaml").write_text("[unclosed", encoding="utf-8")
    markdown = write_report(study).markdown.read_text(encoding="utf-8")
    assert "fit.json unreadable" in markdown and "plan.yaml unreadable" in markdown

    nulls = make_study(tmp_path / "b", runs=False, cases=False, logs=False)
    record = {"metric": "dsc", "test_set": "in_distribution", "condition": "real_only",
              "synthetic_ratio": None, "organ": None, "power_law": None, "n_at": None,
              "points": [{"n_real": 4, "value": 0.5, "ci_low": None, "ci_high": None},
                         {"n_real": None, "value": 0.6},
                         {"n_real": 8, "value": "nan"}]}  # fmt: skip
    broken = {"fits": [record, {"metric": None}, "junk"], "savings": [{"ratio": None}, 3]}
    (nulls / "results" / "fit.json").write_text(json.dumps(broken), encoding="utf-8")
    paths = write_report(nulls)
    markdown = paths.markdown.read_text(encoding="utf-8")
    assert "| 4 | 0.500 |" in markdown and "no power-law parameters" in markdown
    assert [p.name for p in paths.figures] == ["metric_dsc.png", "metric_dsc.svg"]


def test_single_condition_without_its_predictions(tmp_path: Path) -> None:
    study = make_study(tmp_path, fit=False, ood=False)
    rows = [r for r in _runs_rows(("id",)) if r["condition"] == "real_syn3"]
    _write_csv(study / "results" / "runs.csv", rows)
    paths = write_report(study)
    data: StudyData = load_report_data(study)
    assert [key for key in example_runs(data)] == ["real_syn3"]
    assert "example_in_distribution.png" in {p.name for p in paths.figures}


def test_run_report_checks_the_folder(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="study folder not found"):
        report_study_folder(tmp_path / "missing")
    with pytest.raises(InputFileError, match="not a study folder"):
        report_study_folder(tmp_path)
    paths = report_study_folder(make_study(tmp_path / "ok", fit=False, runs=False, cases=False))
    assert paths.html.parent == tmp_path / "ok" / "report"


class _TagBalance(HTMLParser):
    """Counts open/close tags, so an unbalanced document fails the test."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_html_tags_are_balanced(full_report: ReportPaths) -> None:
    parser = _TagBalance()
    parser.feed(full_report.html.read_text(encoding="utf-8"))
    assert parser.errors == [] and parser.stack == []


def _per_case_rows() -> list[dict]:
    """Per-case rows as `study run` collects them: DSC rises with n, as a power law."""
    rng = np.random.default_rng(0)
    rows = []
    for n in COUNTS:
        for condition, ratio in CONDITIONS.items():
            for seed in SEEDS:
                for test_set in ("id", "ood_b"):
                    for k in range(6):
                        positive = k < 4
                        dsc = 0.8 + 0.02 * ratio - 0.7 * n**-0.6 + rng.normal(0, 0.03)
                        rows.append({"run_id": _run_id(n, condition, seed), "n_real": n,
                                     "condition": condition, "synthetic_ratio": ratio,
                                     "seed": seed, "test_set": test_set,
                                     "case_id": f"BDMAP_{k:08d}", "organ": "liver",
                                     "tumor_status": "positive" if positive else "control",
                                     "dsc": dsc if positive else "",
                                     "nsd": dsc + 0.05 if positive else "",
                                     "detected_lesions": int(positive),
                                     "truth_lesions": int(positive),
                                     "predicted_positive": positive or k == 5})  # fmt: skip
    return rows


def test_report_reads_what_study_fit_writes(tmp_path: Path) -> None:
    from tumorscale.study.fit import fit_study, write_fit

    study = make_study(tmp_path, fit=False)
    write_fit(fit_study(_per_case_rows(), organ="liver", n_bootstrap=30), study / "results")
    paths = write_report(study)
    markdown = paths.markdown.read_text(encoding="utf-8")
    data = load_report_data(study)
    assert data.main_organ == "liver"  # a one-organ fit names its organ
    assert {key[1] for key in data.fits} == {"in_distribution", "ood_b"}
    fit = data.fits[("dsc", "in_distribution", "real_only", "liver")]
    plateau = fit["power_law"]["a"]["value"]
    assert f"| in-distribution: id | real_only | {plateau:.3f}" in markdown
    assert "Headlines" in markdown and "**DSC**" in markdown  # fit.md's headlines, savings table
    n, low, high = bootstrap_band(fit)  # fit.json's own band is read, not the approximation
    assert n[0] == COUNTS[0] and n[-1] == pytest.approx(COUNTS[-1]) and np.all(low <= high)


def test_learning_table_and_loss_figure(full_report: ReportPaths) -> None:
    markdown = full_report.markdown.read_text(encoding="utf-8")
    assert "## Did the runs learn?" in markdown and "training_loss.png" in markdown
    assert "Learned: 14 of 16 runs; did not learn: 1; unknown (no readable training log): 1." in (
        markdown
    )
    first, last = 1.5 * (1 + 1 / 1.2) / 2, (1.5 / (1 + 0.2 * 18) + 1.5 / (1 + 0.2 * 19)) / 2
    learned = f"| {_run_id(4, 'real_only', 0)} | 4 | real_only | 100 | {first:.3f} | {last:.3f} "
    assert learned + "| – | yes |" in markdown
    assert f"| {FLAT_RUN} | 4 | real_only | 100 | 1.010 | 0.995 | – | no |" in markdown
    assert f"| {NO_LOG_RUN} | 32 | real_syn3 | – | – | – | – | unknown | log.csv not found |" in (
        markdown
    )
    text = full_report.html.read_text(encoding="utf-8")
    assert "<caption>Runs: did they learn?</caption>" in text


def test_unreadable_logs_read_unknown(tmp_path: Path) -> None:
    study = make_study(tmp_path, cases=False, ood=False)
    (study / "runs" / FLAT_RUN / "train" / "log.csv").write_bytes(b"\xff\xfe garbage")
    (study / "runs" / "stray" / "train").mkdir(parents=True)  # a run folder no table names
    markdown = write_report(study).markdown.read_text(encoding="utf-8")
    unreadable = f"| {FLAT_RUN} | 4 | real_only | – | – | – | – | unknown | log.csv unreadable"
    assert unreadable in markdown
    assert "| stray | – | – | – | – | – | – | unknown | log.csv not found |" in markdown
    quiet = make_study(tmp_path / "nologs", cases=False, ood=False, logs=False)
    paths = write_report(quiet)
    markdown = paths.markdown.read_text(encoding="utf-8")
    assert "No training logs found" in markdown and "unknown (no readable training log): 16" in (
        markdown
    )
    assert "training_loss.png" not in {p.name for p in paths.figures}


def _refused(record: dict) -> dict:
    reasons = ["runs did not learn: training loss did not fall in 5 of 8 runs"]
    return {**record, "claims": {"allowed": False, "reasons": reasons, "sanity": []},
            "saturated": {**record["saturated"], "value": None}}  # fmt: skip


def test_a_curve_without_claims_is_points_only(tmp_path: Path) -> None:
    study = make_study(tmp_path, cases=False, ood=False)
    path = study / "results" / "fit.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["fits"] = [_refused(f) if f["condition"] == "real_only" else f for f in data["fits"]]
    path.write_text(json.dumps(data), encoding="utf-8")
    markdown = write_report(study).markdown.read_text(encoding="utf-8")
    reason = "no claim: runs did not learn: training loss did not fall in 5 of 8 runs"
    assert f"| in-distribution: id | real_only | – | – | – | – | – | – | 0.050 [0.030, 0.070] | {reason} |" in markdown  # noqa: E501
    assert f"in-distribution: id, real_only: {reason}" in markdown  # the figure's note
    assert "0.850 [0.830, 0.870]" not in markdown  # its plateau is not shown


def _with_label_free(study: Path) -> None:
    """n = 0 runs of real_syn3 in runs.csv, and label_free values in fit.json."""
    rows = _runs_rows(("id", "ood_b"))
    for seed in SEEDS:
        for test_set in ("id", "ood_b"):
            rows.append({"run_id": _run_id(0, "real_syn3", seed), "n_real": 0,
                         "condition": "real_syn3", "synthetic_ratio": 3.0, "seed": seed,
                         "test_set": test_set, "organ": "all organs", "dsc": 0.2 + 0.02 * seed,
                         "nsd": 0.25, "spe": 0.8, "auc": ""})  # fmt: skip
    _write_csv(study / "results" / "runs.csv", rows)
    path = study / "results" / "fit.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for record in data["fits"]:
        if record["condition"] == "real_syn3" and record["metric"] == "dsc":
            record["label_free"] = {"n_real": 0, "value": 0.3, "ci_low": 0.25, "ci_high": 0.36,
                                    "n_seeds": 2}  # fmt: skip
    path.write_text(json.dumps(data), encoding="utf-8")


def test_label_free_point_is_drawn_apart_and_tabled(tmp_path: Path) -> None:
    study = make_study(tmp_path, cases=False)
    _with_label_free(study)
    paths = write_report(study)
    markdown = paths.markdown.read_text(encoding="utf-8")
    data = load_report_data(study)
    key = ("dsc", "in_distribution", "real_syn3", "all organs")
    assert data.label_free[key].value == 0.3  # fit.json's value beats the runs.csv mean
    nsd = data.label_free[("nsd", "in_distribution", "real_syn3", "all organs")]
    assert nsd.value == pytest.approx(0.25) and nsd.n_seeds == 2  # no fit value: seed mean
    assert all(p.n_real > 0 for points in data.points.values() for p in points)
    assert f"| {ZERO_LABEL} | – | 0.300 [0.250, 0.360] |" in markdown  # DSC, in-distribution
    assert "metric_dsc.png" in {p.name for p in paths.figures}
    figure = MplFigure()
    axes = figure.subplots()
    _draw_panel(axes, data, "dsc", "in_distribution", _colours(_conditions(data)))
    ticks = dict(zip(axes.get_xticks(), (t.get_text() for t in axes.get_xticklabels()),
                     strict=True))  # fmt: skip
    zero = min(ticks)
    assert ticks[zero] == "0\n(synthetic only)" and zero < COUNTS[0]
    assert axes.get_xscale() == "log"


def test_report_renders_what_study_fit_writes_with_label_free(tmp_path: Path) -> None:
    from tumorscale.study.fit import fit_study, write_fit

    rows = _per_case_rows()
    for row in [r for r in rows if r["n_real"] == COUNTS[0] and r["condition"] == "real_syn3"]:
        rows.append(row | {"n_real": 0, "run_id": row["run_id"].replace("n04", "n00")})
    study = make_study(tmp_path, fit=False, cases=False)
    write_fit(fit_study(rows, organ="liver", n_bootstrap=30), study / "results")
    markdown = write_report(study).markdown.read_text(encoding="utf-8")
    assert "synthetic tumors only (0 real scans): DSC" in markdown  # fit.md's headline
    assert f"| {ZERO_LABEL} |" in markdown
