"""The report's sections as document blocks: study, headlines, metrics, savings, learning.

Headlines come from the fit result (fit.json's content, through `study.headlines`), the same
function fit.md prints; fit.md itself is never read.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tumorscale.errors import InputFileError
from tumorscale.study.headlines import headline_markdown
from tumorscale.study.learning import LEARNED_RULE, learned_text
from tumorscale.study.report.document import (
    Block,
    Bullets,
    Heading,
    MarkdownText,
    Paragraph,
    Table,
)
from tumorscale.study.report.figures import fit_problem, law_parameters, loss_figure, metric_figure
from tumorscale.study.report.format import (
    EMPTY,
    as_dict,
    count_text,
    fmt_count,
    fmt_estimate,
    fmt_interval,
    fmt_ratio,
    fmt_scan_count,
    fmt_value,
    metric_label,
    num,
)
from tumorscale.study.report.load import (
    Point,
    SeriesKey,
    StudyData,
    conditions_of,
    metrics_of,
    organs_of,
    plan_value,
    test_sets_of,
)
from tumorscale.study.report.slices import example_figure


def _describe(value: Any) -> str:
    """Plan values as one line: lists joined, mappings as `key: value` pairs ('' for nothing)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items() if not isinstance(v, (dict, list)))
    if isinstance(value, list):
        return ", ".join(str(v.get("name", v) if isinstance(v, dict) else v) for v in value)
    return str(value)


def study_name(data: StudyData) -> str:
    name = plan_value(data.plan, "name", "study_name", "title")
    return name if isinstance(name, str) and name.strip() else "scaling study"


def _run_values(data: StudyData, column: str) -> list[str]:
    """Distinct values of a run-table column (planned runs first, else evaluated rows)."""
    values = {str(row.get(column)) for row in data.planned_runs or data.rows if row.get(column)}
    numeric = all(num(v) is not None for v in values)
    return sorted(values, key=lambda v: (float(v), v) if numeric else (0.0, v))


def _test_sets_text(data: StudyData) -> str | None:
    entries = data.plan_test_sets()
    if not entries:
        return None
    kind = {True: " (in-distribution)", False: " (out-of-distribution)"}
    return ", ".join(f"{n}{kind.get(e.get('in_distribution'), '')}" for n, e in entries.items())


def study_blocks(data: StudyData) -> list[Block]:
    """What was studied: from plan.yaml and the run table, whatever of them exists."""
    conditions = [f"{c} ({data.ratios[c]:g}× synthetic)" if c in data.ratios else c
                  for c in _run_values(data, "condition")]  # fmt: skip
    counts = [fmt_count(v) for v in _run_values(data, "n_real")]
    fields = [
        ("Organs", _describe(plan_value(data.plan, "organs", "organ"))),
        ("Real-scan counts", ", ".join(counts)),
        ("Conditions", ", ".join(conditions)),
        ("Seeds", ", ".join(_run_values(data, "seed"))),
        ("Test sets", _test_sets_text(data)),
        ("Compute policy", _describe(plan_value(data.plan, "compute"))),
    ]
    rows = [[label, text[:300]] for label, text in fields if text]
    planned = {row.get("run_id") for row in data.planned_runs if row.get("run_id")}
    evaluated = {row.get("run_id") for row in data.rows if row.get("run_id")}
    if planned or evaluated:
        rows.append(["Runs evaluated", f"{len(evaluated):,} of {len(planned or evaluated):,}"])
    blocks: list[Block] = [Heading("Study")]
    blocks.append(Table(["item", "value"], rows) if rows else Paragraph("No study description."))
    if data.problems:
        blocks += [Paragraph("Missing or unreadable inputs:"), Bullets(data.problems)]
    return blocks


def demote_headings(text: str, levels: int = 2) -> str:
    """Nest another file's Markdown headings under the report's own (`#` -> `###`)."""
    return re.sub(r"^(#{1,6})(?=\s)", lambda m: "#" * min(len(m.group(1)) + levels, 6), text,
                  flags=re.MULTILINE)  # fmt: skip


def headline_blocks(data: StudyData) -> list[Block]:
    """fit.json's headlines, made from the fit result as fit.md's are (fit.md is not read)."""
    blocks: list[Block] = [Heading("Headline numbers")]
    fits = data.fit_result.get("fits")
    if not isinstance(fits, list):
        text = "No headline numbers (results/fit.json was not found or has no fits)."
        return [*blocks, Paragraph(text)]
    blocks.append(MarkdownText(demote_headings(headline_markdown(data.fit_result))))
    if any(isinstance(record, dict) for record in fits):  # fit.md has tables past its headlines
        blocks.append(Paragraph("The complete fit tables of `study fit` are in results/fit.md."))
    return blocks


def points_table(
    data: StudyData, metric: str, test_set: str, organ: str | None = None
) -> Table | None:
    """n_real × condition with `value [CI]` cells (organ: the plots' organ selection)."""
    organ = organ or data.main_organ
    series = {c: _series_points(data, (metric, test_set, c, organ)) for c in conditions_of(data)}
    conditions = [c for c, points in series.items() if points]
    cells: dict[int, dict[str, str]] = defaultdict(dict)
    for condition in conditions:
        for p in series[condition]:
            cells[p.n_real][condition] = fmt_interval(p.value, p.ci_low, p.ci_high)
    if not cells:
        return None
    rows = [[count_text(n), *(cells[n].get(c, EMPTY) for c in conditions)] for n in sorted(cells)]
    return Table(
        ["real scans", *conditions],
        rows,
        f"{metric_label(metric)}, {data.test_set_label(test_set)}",
    )


def _series_points(data: StudyData, key: SeriesKey) -> list[Point]:
    """A series' points for tables: the n = 0 value (if any) first, then the counts."""
    zero = data.label_free.get(key)
    return ([zero] if zero is not None else []) + data.points.get(key, [])


def _levels(data: StudyData) -> list[str]:
    """The plateau fractions that fit.json reports n for ("0.95", "0.99", ...)."""
    found = {str(k) for fit in data.fits.values() for k in as_dict(fit.get("n_at"))}
    return sorted(found, key=lambda k: (num(k) is None, num(k) or 0.0, k))


def _percent(level: str) -> str:
    number = num(level)
    return f"{number:.0%}" if number is not None and number <= 1 else level


def fit_table(data: StudyData, metric: str) -> Table | None:
    """One row per test set × condition: a, b, c, n for each plateau fraction, saturation."""
    levels = _levels(data)
    rows = []
    for test_set in test_sets_of(data):
        for condition in conditions_of(data):
            fit = data.fits.get((metric, test_set, condition, data.main_organ))
            if fit is not None:
                rows.append(_fit_row(fit, data.test_set_label(test_set), condition, levels))
    header = ["test set", "condition", "plateau a", "b", "c",
              *(f"n for {_percent(level)} of a" for level in levels),
              "saturated", "log-linear slope (per decade)", "status"]  # fmt: skip
    return Table(header, rows, f"{metric_label(metric)}: fitted laws") if rows else None


def _saturated_text(saturated: Mapping[str, Any]) -> str:
    value, confident = saturated.get("value"), saturated.get("confident")
    if value is True:
        return "yes (confident)" if confident is True else "yes"
    return "no" if value is False else EMPTY


def _fit_row(
    fit: Mapping[str, Any], test_set_label: str, condition: str, levels: Sequence[str]
) -> list[str]:
    law, n_at, log_linear = (as_dict(fit.get(k)) for k in ("power_law", "n_at", "log_linear"))
    ok = law_parameters(fit) is not None
    status = "converged" if ok else (fit_problem(fit) or EMPTY)
    if ok and isinstance(law.get("warning"), str) and law["warning"]:
        status += f"; warning: {law['warning']}"
    slope = fmt_interval(
        log_linear.get("slope"), log_linear.get("slope_ci_low"), log_linear.get("slope_ci_high")
    )
    return [
        test_set_label,
        condition,
        *(fmt_estimate(law.get(k)) if ok else EMPTY for k in ("a", "b", "c")),
        *(fmt_scan_count(n_at.get(level)) if ok else EMPTY for level in levels),
        _saturated_text(as_dict(fit.get("saturated"))),
        slope,
        status,
    ]


def _saturation_rules(data: StudyData) -> list[str]:
    rules = [as_dict(fit.get("saturated")).get("rule") for fit in data.fits.values()]
    return sorted({rule for rule in rules if isinstance(rule, str) and rule})


def _saving_target(item: Mapping[str, Any]) -> str:
    """What level a saving is measured at, from either fit.json form (`target` or `level`)."""
    target = as_dict(item.get("target"))
    kind, parameter = target.get("kind"), num(target.get("parameter"))
    value = fmt_estimate(target) if target else fmt_value(item.get("level"))
    if kind == "plateau" and parameter is not None:
        return f"{parameter:.0%} of the real-only plateau: {value}"
    if kind == "real_only_at_n" and parameter is not None:
        return f"real-only fit at n = {parameter:,.0f}: {value}"
    return value


def _saving_row(data: StudyData, item: Mapping[str, Any]) -> list[str]:
    return [
        data.test_set_label(str(item.get("test_set", EMPTY))),
        str(item.get("condition", EMPTY)),
        _saving_target(item),
        fmt_scan_count(item.get("n_real_only", item.get("real_only_n"))),
        fmt_scan_count(item.get("n_with_synthetic", item.get("synthetic_n"))),
        fmt_estimate(item.get("ratio"), fmt_ratio),
        "yes" if item.get("extrapolated") else "no",
        str(item.get("note") or ""),
    ]


def savings_tables(data: StudyData) -> list[Table]:
    """Per metric: real scans needed for each target without and with synthetic data (for the
    plots' organ selection; per-organ savings stay in fit.json)."""
    by_metric: dict[str, list[list[str]]] = defaultdict(list)
    for item in data.savings:
        organ = item.get("organ") if isinstance(item.get("organ"), str) else data.main_organ
        if organ == data.main_organ:
            by_metric[str(item.get("metric", EMPTY))].append(_saving_row(data, item))
    header = ["test set", "condition", "target", "real scans, real only",
              "real scans, with synthetic", "ratio", "extrapolated", "note"]  # fmt: skip
    order = [m for m in metrics_of(data) if m in by_metric]
    tables = []
    for metric in order + sorted(set(by_metric) - set(order)):
        rows = by_metric[metric]
        keep = header if any(row[-1] for row in rows) else header[:-1]  # drop an empty note column
        tables.append(Table(keep, [row[: len(keep)] for row in rows], metric_label(metric)))
    return tables


def _savings_blocks(data: StudyData) -> list[Block]:
    text = (
        "Real scans needed to reach each target without and with synthetic data; ratio = real "
        "only / with synthetic (3.00× reads: 1 real scan with synthetic data does the work of 3 "
        "without)."
    )
    tables = savings_tables(data)
    body: list[Block] = [Paragraph(text), *tables] if tables else [Paragraph("No savings.")]
    return [Heading("Real scans saved by synthetic data"), *body]


def organ_table(data: StudyData, metric: str, test_set: str) -> Table | None:
    """Per-organ means: rows organ × condition, columns real-scan counts."""
    series = {
        (o, c): points
        for o in organs_of(data)
        for c in conditions_of(data)
        if (points := _series_points(data, (metric, test_set, c, o)))
    }
    counts = sorted({p.n_real for points in series.values() for p in points})
    rows = []
    for (organ, condition), points in series.items():
        by_n = {p.n_real: p for p in points}
        cells = [
            fmt_interval(p.value, p.ci_low, p.ci_high) if (p := by_n.get(n)) else EMPTY
            for n in counts
        ]
        rows.append([organ, condition, *cells])
    header = ["organ", "condition", *(f"n = {count_text(n)}" for n in counts)]
    return (
        Table(header, rows, f"{metric_label(metric)} per organ, {data.test_set_label(test_set)}")
        if rows
        else None
    )


def build_blocks(data: StudyData, plan_dir: Path, figure_dir: Path) -> list[Block]:
    """The whole report as blocks (writes the figures on the way)."""
    examples = _example_blocks(data, plan_dir, figure_dir)  # first: may add to data.problems
    blocks = [Heading(f"Scaling study report: {study_name(data)}", 1), *study_blocks(data)]
    blocks += headline_blocks(data)
    for metric in metrics_of(data):
        blocks += _metric_blocks(data, metric, figure_dir)
    blocks += _savings_blocks(data) + learning_blocks(data, figure_dir) + _organ_blocks(data)
    return blocks + examples + _notes(data)


def _metric_blocks(data: StudyData, metric: str, figure_dir: Path) -> list[Block]:
    figure, notes = metric_figure(data, metric, figure_dir)
    blocks: list[Block] = [Heading(metric_label(metric)), figure]
    if not any(key[0] == metric for key in data.fits):
        blocks.append(Paragraph(f"No {metric_label(metric)} fit in fit.json: points only."))
    elif notes:
        blocks += [Paragraph("Shown as points only:"), Bullets(notes)]
    tables = [points_table(data, metric, t) for t in test_sets_of(data)]
    return blocks + [t for t in [*tables, fit_table(data, metric)] if t is not None]


def learning_table(data: StudyData) -> Table:
    """One row per run: its log's length, first- and last-tenth mean loss, final validation
    DSC and whether it learned ("unknown" where the log is missing or unreadable)."""
    rows = []
    for run in data.trained_runs:
        record = run.learning
        rows.append([
            run.run_id,
            EMPTY if run.n_real is None else count_text(run.n_real),
            run.condition,
            fmt_count(record.iterations[-1] if record.iterations else None),
            fmt_value(record.first_tenth_loss),
            fmt_value(record.last_tenth_loss),
            fmt_value(record.validation_dsc),
            learned_text(record.learned),
            record.problem,
        ])  # fmt: skip
    header = ["run", "n real", "condition", "iterations", "loss, first tenth",
              "loss, last tenth", "final validation DSC", "learned", "note"]  # fmt: skip
    keep = header if any(row[-1] for row in rows) else header[:-1]  # drop an empty note column
    return Table(keep, [row[: len(keep)] for row in rows], "Runs: did they learn?")


def learning_blocks(data: StudyData, figure_dir: Path) -> list[Block]:
    """Each run's training-loss curve and learned flag: without learning, curves are noise."""
    blocks: list[Block] = [Heading("Did the runs learn?")]
    if not data.trained_runs:
        return [*blocks, Paragraph("No runs found (no runs.csv and no run folders).")]
    flags = [run.learning.learned for run in data.trained_runs]
    blocks.append(Paragraph(
        f"Learned: {flags.count(True)} of {len(flags)} runs; did not learn: "
        f"{flags.count(False)}; unknown (no readable training log): {flags.count(None)}. "
        f"A run learned when {LEARNED_RULE.removeprefix('a run learned when ')}."
    ))  # fmt: skip
    figure = loss_figure(data, figure_dir)
    blocks.append(figure or Paragraph("No training logs found (runs/<id>/train/log.csv)."))
    return [*blocks, learning_table(data)]


def _organ_blocks(data: StudyData) -> list[Block]:
    tables = [organ_table(data, m, t) for t in test_sets_of(data) for m in metrics_of(data)]
    tables = [t for t in tables if t is not None]
    return [Heading("Per organ"), *(tables or [Paragraph("No per-organ results.")])]


def _example_blocks(data: StudyData, plan_dir: Path, figure_dir: Path) -> list[Block]:
    figures = []
    for test_set in test_sets_of(data):
        try:
            figure = example_figure(data, plan_dir, test_set, figure_dir)
        except (InputFileError, OSError, ValueError) as error:
            data.problems.append(f"example slices for {test_set}: {error}")
            continue
        if figure is not None:
            figures.append(figure)
    text = "No example slices (no predictions or test cases with a tumor were found)."
    return [Heading("Example slices"), *(figures or [Paragraph(text)])]


def _notes(data: StudyData) -> list[Block]:
    notes = [
        "Intervals are bootstrap confidence intervals over test cases and seeds from "
        "`study fit`; points without one are plain seed means from runs.csv.",
        "Every number outside the measured real-scan range is marked '(extrapolated)'; "
        "'(interval extrapolated)' means the number is measured but its interval reaches out.",
        "The lighter band around a fitted curve is approximate: the envelope of the power "
        "laws at the corners of the marginal a, b, c intervals (it ignores their correlation, "
        "so it is usually wider than a pointwise bootstrap band).",
        *(f"Saturation rule: {rule}" for rule in _saturation_rules(data)),
    ]
    return [Heading("Notes"), Bullets(notes)]
