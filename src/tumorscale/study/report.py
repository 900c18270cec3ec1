"""The scaling-study report: PNG/SVG plots, `report.md` and a self-contained `report.html`.

Reads what `study fit` and `study run` left in the study folder (`results/fit.json`,
`results/fit.md`, `results/runs.csv`, `plan.yaml`, training logs and predictions under `runs/`
and the test cases under `testsets/`) and writes `report/` beside them. Every input is optional:
whatever is missing is named in the report and the rest is still shown. The HTML embeds every
plot as a base64 PNG and its CSS inline, so it opens offline with no network and no JavaScript.

A curve that `study fit` reads no claim off (`claims.allowed` false: no trend, runs that did not
learn, or no credible fit) is shown as points only, with the reason. The n = 0 value (synthetic
tumors only, `label_free`) is drawn apart, as an open diamond at the left edge of the log axis.
Each run's training-loss curve and `learned` flag (`study.learning`) have their own section.

Uncertainty bands around the fitted curves: the pointwise bootstrap band that `study fit` stores
in fit.json (`band`, measured range) when present. Otherwise the band is approximate: the envelope
of the eight power laws at the corners of the marginal a, b, c intervals, which ignores the
correlation between the parameters and is wider than a pointwise bootstrap band.

Figures are drawn on `matplotlib.figure.Figure` objects (Agg rendering), never through pyplot, so
the report neither changes nor depends on the user's matplotlib backend.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import yaml
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from tumorscale.errors import InputFileError
from tumorscale.io import atomic_path, read_nifti, write_text_atomic
from tumorscale.organs import TUMOR_ORGANS, FileRole, classify_segmentation, nifti_stem
from tumorscale.study.learning import (
    LEARNED_RULE,
    TRAIN_FOLDER,
    RunLearning,
    learned_text,
    read_study_learning,
)

ALL_ORGANS = "all organs"
IN_DISTRIBUTION = "in_distribution"
CT_WINDOW_HU = (-175.0, 250.0)
METRIC_LABELS = {
    "dsc": "DSC",
    "nsd": "NSD (2 mm)",
    "p_sen": "Patient-wise sensitivity",
    "t_sen": "Tumor-wise sensitivity",
    "spe": "Specificity",
    "auc": "AUC",
}
METRIC_ORDER = tuple(METRIC_LABELS)
EXTRAPOLATE_FACTOR = 4.0  # how far past the largest measured count the dashed curve goes
N_CAP_FACTOR = 100  # counts beyond 100× the largest measured n read as "> that" (as fit.md)
BOOTSTRAP_ALPHA, APPROX_ALPHA = 0.22, 0.09  # shading of the two kinds of band
EXAMPLE_VIEW_MM = 100.0  # smallest crop around the example tumor, so context stays visible
MAX_CASES_SCANNED = 12  # test cases read to find the example tumor (bounded report time)
EMPTY = "–"
ZERO_LABEL = "0 (synthetic only)"  # n = 0: no real scans, synthetic tumors only
ZERO_TICK = "0\n(synthetic only)"
ZERO_POSITION = 0.4  # the n = 0 marker sits at this fraction of the smallest positive count

__all__ = ["ReportPaths", "run_report", "write_report"]


@dataclass(frozen=True)
class ReportPaths:
    """What `write_report` wrote: the HTML, the Markdown and every figure file (PNG and SVG)."""

    html: Path
    markdown: Path
    figures: list[Path]


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class Point:
    """One measured point of a curve: the metric at `n_real` real scans, with its interval."""

    n_real: int
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n_seeds: int | None = None


SeriesKey = tuple[str, str, str, str]  # metric, test set, condition, organ


@dataclass(frozen=True)
class TrainedRun:
    """One run with its training-loss log and learned flag (n_real None: no table names it)."""

    run_id: str
    n_real: int | None
    condition: str
    seed: str
    learning: RunLearning


@dataclass
class StudyData:
    """Everything the report shows, read defensively from the study folder."""

    plan: dict[str, Any] = field(default_factory=dict)
    fits: dict[SeriesKey, dict[str, Any]] = field(default_factory=dict)
    savings: list[dict[str, Any]] = field(default_factory=list)
    headline_md: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    points: dict[SeriesKey, list[Point]] = field(default_factory=dict)  # n_real > 0 only
    label_free: dict[SeriesKey, Point] = field(default_factory=dict)  # n_real = 0
    trained_runs: list[TrainedRun] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    planned_runs: list[dict[str, str]] = field(default_factory=list)
    # The organ selection the plots show: "all organs", or the one organ of a one-organ fit.
    main_organ: str = ALL_ORGANS
    # The in-distribution set's names as found in the inputs (folders use them, not ours).
    id_names: set[str] = field(default_factory=set)

    def plan_test_sets(self) -> dict[str, dict[str, Any]]:
        """plan.yaml's `test_sets`: name -> {folder, in_distribution, ...} (empty if absent)."""
        entries = _dict(self.plan.get("test_sets"))
        return {str(name): _dict(entry) for name, entry in entries.items()}

    def is_in_distribution(self, test_set: str) -> bool:
        entries = self.plan_test_sets()
        if not entries:  # no plan: go by the usual names
            return test_set in (IN_DISTRIBUTION, "id", "in-distribution")
        return (
            test_set == IN_DISTRIBUTION or entries.get(test_set, {}).get("in_distribution") is True
        )

    def test_set_label(self, test_set: str) -> str:
        if not self.is_in_distribution(test_set):
            return f"out-of-distribution: {test_set}"
        names = [n for n in self.test_set_aliases(test_set) if n != IN_DISTRIBUTION]
        return f"in-distribution: {names[0]}" if names else "in-distribution"

    def test_set_aliases(self, test_set: str) -> list[str]:
        """Names a test set may have on disk: fit.json says `in_distribution`, the plan its name."""
        names = [test_set]
        if self.is_in_distribution(test_set):
            names += [n for n, e in self.plan_test_sets().items() if e.get("in_distribution")]
            names += [*sorted(self.id_names), IN_DISTRIBUTION]
        return list(dict.fromkeys(names))

    def test_folder(self, plan_dir: Path, test_set: str) -> Path | None:
        """The folder of test cases (`testsets/<name>` or the plan's `folder`), if it exists."""
        entries = self.plan_test_sets()
        for name in self.test_set_aliases(test_set):
            folder = entries.get(name, {}).get("folder")
            for candidate in (folder if isinstance(folder, str) else None, f"testsets/{name}"):
                if candidate and (plan_dir / candidate).is_dir():
                    return plan_dir / candidate
        return None


def _num(value: object) -> float | None:
    """A finite float, or None for anything missing, empty, NaN or not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _read_json(path: Path, problems: list[str]) -> dict[str, Any]:
    if not path.is_file():
        problems.append(f"{path.name} not found (run `tumorscale study fit`)")
        return {}
    try:
        return _dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        problems.append(f"{path.name} unreadable ({error})")
        return {}


def _read_plan(path: Path, problems: list[str]) -> dict[str, Any]:
    if not path.is_file():
        problems.append("plan.yaml not found")
        return {}
    try:
        return _dict(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as error:
        problems.append(f"plan.yaml unreadable ({error})")
        return {}


def _read_runs(path: Path, problems: list[str]) -> list[dict[str, str]]:
    if not path.is_file():
        problems.append("runs.csv not found (run `tumorscale study run`)")
        return []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return [dict(row) for row in csv.DictReader(handle)]
    except (OSError, csv.Error, UnicodeDecodeError) as error:
        problems.append(f"runs.csv unreadable ({error})")
        return []


def _fit_key(record: Mapping[str, Any]) -> SeriesKey | None:
    parts = [record.get(name) for name in ("metric", "test_set", "condition")]
    if not all(isinstance(part, str) and part for part in parts):
        return None
    organ = record.get("organ") if isinstance(record.get("organ"), str) else ALL_ORGANS
    return (parts[0], parts[1], parts[2], organ)  # type: ignore[return-value]


def _fit_points(record: Mapping[str, Any]) -> list[Point]:
    points = []
    for raw in _list(record.get("points")):
        raw = _dict(raw)
        n_real, value = _num(raw.get("n_real")), _num(raw.get("value"))
        if n_real is None or value is None or n_real <= 0:
            continue
        seeds = _num(raw.get("n_seeds"))
        points.append(
            Point(
                int(n_real),
                value,
                _num(raw.get("ci_low")),
                _num(raw.get("ci_high")),
                int(seeds) if seeds is not None else None,
            )
        )
    return sorted(points, key=lambda point: point.n_real)


def _label_free_point(record: Mapping[str, Any]) -> Point | None:
    """fit.json's n = 0 value (synthetic tumors only), if the record has one."""
    raw = _dict(record.get("label_free"))
    value = _num(raw.get("value"))
    if value is None:
        return None
    seeds = _num(raw.get("n_seeds"))
    return Point(0, value, _num(raw.get("ci_low")), _num(raw.get("ci_high")),
                 int(seeds) if seeds is not None else None)  # fmt: skip


def _split_label_free(points: dict[SeriesKey, list[Point]]) -> dict[SeriesKey, Point]:
    """Take the n = 0 points out of `points` (log axes and fits need n > 0); returns them."""
    zero = {key: p for key, series in points.items() for p in series if p.n_real == 0}
    for key in list(points):
        points[key] = [p for p in points[key] if p.n_real > 0]
        if not points[key]:
            del points[key]
    return zero


def _points_from_runs(rows: Iterable[Mapping[str, str]]) -> dict[SeriesKey, list[Point]]:
    """Seed means per (metric, test set, condition, organ, n_real) — used where no fit exists;
    n_real = 0 (synthetic tumors only) included."""
    values: dict[tuple[SeriesKey, int], list[float]] = defaultdict(list)
    for row in rows:
        n_real = _num(row.get("n_real"))
        test_set, condition = row.get("test_set") or "", row.get("condition") or ""
        if n_real is None or n_real < 0 or not test_set or not condition:
            continue
        organ = row.get("organ") or ALL_ORGANS
        for metric in METRIC_ORDER:
            value = _num(row.get(metric))
            if value is not None:
                values[((metric, test_set, condition, organ), int(n_real))].append(value)
    points: dict[SeriesKey, list[Point]] = defaultdict(list)
    for (key, n_real), seed_values in sorted(values.items(), key=lambda item: item[0][1]):
        points[key].append(Point(n_real, float(np.mean(seed_values)), n_seeds=len(seed_values)))
    return dict(points)


def _condition_ratios(fits: Iterable[Mapping[str, Any]], rows: Iterable[Mapping[str, str]]):
    ratios: dict[str, float] = {}
    for record in [*fits, *rows]:
        condition, ratio = record.get("condition"), _num(record.get("synthetic_ratio"))
        if isinstance(condition, str) and condition and ratio is not None:
            ratios.setdefault(condition, ratio)
    return ratios


def load_report_data(plan_dir: Path) -> StudyData:
    """Read every report input that exists; list what is missing in `problems`."""
    problems: list[str] = []
    results = plan_dir / "results"
    data = StudyData(plan=_read_plan(plan_dir / "plan.yaml", problems), problems=problems)
    fit_json = _read_json(results / "fit.json", problems)
    data.rows = [_renamed(data, row) for row in _read_runs(results / "runs.csv", problems)]
    fit_records = [_renamed(data, _dict(record)) for record in _list(fit_json.get("fits"))]
    data.fits = {key: rec for rec in fit_records if (key := _fit_key(rec)) is not None}
    data.savings = [_renamed(data, _dict(item)) for item in _list(fit_json.get("savings"))]
    data.points = _points_from_runs(data.rows)
    data.label_free = _split_label_free(data.points)
    for key, record in data.fits.items():
        if fitted := _fit_points(record):
            data.points[key] = fitted  # bootstrap intervals from the fit beat plain seed means
        if (zero := _label_free_point(record)) is not None:
            data.label_free[key] = zero
    data.ratios = _condition_ratios(fit_records, data.rows)
    fitted_organs = {key[3] for key in data.fits}
    if ALL_ORGANS not in fitted_organs and len(fitted_organs) == 1:
        data.main_organ = fitted_organs.pop()  # `study fit` of a one-organ study names the organ
    headline = results / "fit.md"
    if headline.is_file():
        data.headline_md = headline.read_text(encoding="utf-8", errors="replace")
    if (plan_dir / "runs.csv").is_file():
        data.planned_runs = _read_runs(plan_dir / "runs.csv", problems)
    data.trained_runs = _trained_runs(data, plan_dir)
    return data


def _trained_runs(data: StudyData, plan_dir: Path) -> list[TrainedRun]:
    """Every run the plan, the results or the run folders know, with its learning record;
    sorted by condition (synthetic ratio), n_real and seed."""
    known: dict[str, Mapping[str, Any]] = {}
    for row in [*data.planned_runs, *data.rows]:
        if row.get("run_id"):
            known.setdefault(str(row["run_id"]), row)
    folder = plan_dir / "runs"
    for train_dir in sorted(folder.glob(f"*/{TRAIN_FOLDER}")) if folder.is_dir() else []:
        known.setdefault(train_dir.parent.name, {})  # a run folder no table names
    learning = read_study_learning(plan_dir, known)
    runs = []
    for run_id, row in known.items():
        n_real = _num(row.get("n_real"))
        runs.append(TrainedRun(run_id, None if n_real is None else int(n_real),
                               str(row.get("condition") or EMPTY), str(row.get("seed") or ""),
                               learning[run_id]))  # fmt: skip
    ratio = data.ratios.get
    return sorted(runs, key=lambda r: (ratio(r.condition, math.inf), r.condition,
                                       -1 if r.n_real is None else r.n_real, r.seed))  # fmt: skip


def _renamed(data: StudyData, record: dict[str, Any]) -> dict[str, Any]:
    """One name for the in-distribution set: fit.json says `in_distribution`, the plan `id`."""
    name = record.get("test_set")
    if isinstance(name, str) and name != IN_DISTRIBUTION and data.is_in_distribution(name):
        data.id_names.add(name)
        return {**record, "test_set": IN_DISTRIBUTION}
    return record


# ---------------------------------------------------------------------------------------------
# Orders, labels and number formatting


def _series(data: StudyData) -> set[SeriesKey]:
    return set(data.points) | set(data.fits) | set(data.label_free)


def _metrics(data: StudyData) -> list[str]:
    found = {key[0] for key in _series(data)}
    return [m for m in METRIC_ORDER if m in found] + sorted(found - set(METRIC_ORDER))


def _test_sets(data: StudyData) -> list[str]:
    found = {key[1] for key in _series(data)}
    return sorted(found, key=lambda name: (not data.is_in_distribution(name), name))


def _conditions(data: StudyData) -> list[str]:
    found = {key[2] for key in _series(data)}
    return sorted(found, key=lambda name: (data.ratios.get(name, math.inf), name))


def _organs(data: StudyData) -> list[str]:
    found = {key[3] for key in data.points} - {ALL_ORGANS}
    return [o for o in TUMOR_ORGANS if o in found] + sorted(found - set(TUMOR_ORGANS))


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def fmt_value(value: object) -> str:
    number = _num(value)
    if number is None:
        return EMPTY
    return f"{number:,.0f}" if abs(number) >= 100 else f"{number:.3f}"


def fmt_count(value: object) -> str:
    number = _num(value)
    return EMPTY if number is None else f"{number:,.0f}"


def fmt_interval(value: object, low: object, high: object, fmt=fmt_value) -> str:
    """`0.812 [0.790, 0.830]`; the bracket is left out when the interval is unknown."""
    text = fmt(value)
    if _num(low) is not None and _num(high) is not None and text != EMPTY:
        text += f" [{fmt(low)}, {fmt(high)}]"
    return text


def fmt_estimate(estimate: object, fmt=fmt_value) -> str:
    """A `{"value", "ci_low", "ci_high", "extrapolated"?, "ci_extrapolated"?}` record as text."""
    record = _dict(estimate)
    text = fmt_interval(record.get("value"), record.get("ci_low"), record.get("ci_high"), fmt)
    if text == EMPTY:
        return text
    if record.get("extrapolated"):
        return f"{text} (extrapolated)"
    return f"{text} (interval extrapolated)" if record.get("ci_extrapolated") else text


def fmt_scan_count(estimate: object) -> str:
    """A real-scan count estimate; past `N_CAP_FACTOR`× the measured range it reads `> N`."""
    record = _dict(estimate)
    measured = [_num(v) for v in _list(record.get("measured_range"))]
    cap = measured[-1] * N_CAP_FACTOR if measured and measured[-1] is not None else math.inf

    def count(value: object) -> str:  # far past the data the number itself means little
        number = _num(value)
        return f"> {cap:,.0f}" if number is not None and number > cap else fmt_count(number)

    value = _num(record.get("value"))
    if value is not None and value > cap:
        return f"{count(value)} (extrapolated)"
    return fmt_estimate(record, count)


def fmt_ratio(value: object) -> str:
    number = _num(value)
    return EMPTY if number is None else f"{number:.2f}×"


# ---------------------------------------------------------------------------------------------
# Curves


def power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """metric(n) = a − b·n^(−c)."""
    return a - b * np.power(n, -c)


def _claims_refused(fit: Mapping[str, Any] | None) -> list[str] | None:
    """Why `study fit` reads no claim off this curve; None when it does (or says nothing)."""
    claims = _dict(_dict(fit).get("claims"))
    if claims.get("allowed") is not False:
        return None
    return [str(reason) for reason in _list(claims.get("reasons"))]


def _parameters(fit: Mapping[str, Any] | None) -> dict[str, dict[str, float | None]] | None:
    """The converged power-law parameters with their intervals, or None (no usable fit: not
    converged, or no claim may be read off it)."""
    law = _dict(_dict(fit).get("power_law"))
    if not law or law.get("converged") is False or _claims_refused(fit) is not None:
        return None
    params = {
        name: {
            part: _num(_dict(law.get(name)).get(part)) for part in ("value", "ci_low", "ci_high")
        }
        for name in ("a", "b", "c")
    }
    return params if all(params[name]["value"] is not None for name in params) else None


def fit_problem(fit: Mapping[str, Any] | None) -> str | None:
    """Why a series is shown as points only (None when its power law is usable)."""
    if fit is None:
        return "no fit"
    if _parameters(fit) is not None:
        return None
    law = _dict(_dict(fit).get("power_law"))
    reason = law.get("reason") if isinstance(law.get("reason"), str) else None
    if law and law.get("converged") is False:
        return f"fit did not converge: {reason}" if reason else "fit did not converge"
    if (refused := _claims_refused(fit)) is not None:
        return "no claim: " + ("; ".join(refused) or "refused by `study fit`")
    return f"no power-law parameters: {reason}" if reason else "no power-law parameters"


def _band(n: np.ndarray, params: Mapping[str, Mapping[str, float | None]]):
    """Envelope of the curves at the corners of the a, b, c intervals (approximate; see module)."""
    bounds = [(params[k]["ci_low"], params[k]["ci_high"]) for k in ("a", "b", "c")]
    if any(low is None or high is None for low, high in bounds):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        curves = np.array(
            [power_law(n, a, b, c) for a in bounds[0] for b in bounds[1] for c in bounds[2]]
        )
    return np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)


# ---------------------------------------------------------------------------------------------
# Figures


@dataclass(frozen=True)
class FigureFiles:
    png: Path
    svg: Path
    caption: str
    title: str  # short text for the image's alt attribute


def _save(figure: MplFigure, folder: Path, stem: str, caption: str, title: str) -> FigureFiles:
    """Write PNG and SVG atomically (SVG with fixed ids and no date: reruns give equal files)."""
    paths = []
    with matplotlib.rc_context({"svg.hashsalt": "tumorscale"}):
        for suffix in ("png", "svg"):
            path = folder / f"{stem}.{suffix}"
            with atomic_path(path) as temporary:
                metadata = {"Date": None} if suffix == "svg" else None
                figure.savefig(temporary, format=suffix, dpi=110, metadata=metadata)
            figure.set_layout_engine("none")  # laid out once; the second format reuses it
            paths.append(path)
    return FigureFiles(paths[0], paths[1], caption, title)


def _colours(conditions: Sequence[str]) -> dict[str, str]:
    palette = [
        "#1f77b4",
        "#d62728",
        "#2ca02c",
        "#9467bd",
        "#ff7f0e",
        "#8c564b",
        "#17becf",
        "#7f7f7f",
    ]
    return {name: palette[index % len(palette)] for index, name in enumerate(conditions)}


def _draw_points(axes, points: Sequence[Point], colour: str, shift: float) -> None:
    # Conditions share the same counts: a small multiplicative shift keeps error bars apart.
    n = np.array([p.n_real for p in points], dtype=float) * shift
    values = np.array([p.value for p in points])
    low = np.array([p.value - p.ci_low if p.ci_low is not None else 0.0 for p in points])
    high = np.array([p.ci_high - p.value if p.ci_high is not None else 0.0 for p in points])
    yerr = np.clip(np.vstack([low, high]), 0.0, None)
    axes.errorbar(n, values, yerr=yerr, fmt="o", color=colour, ms=5, capsize=3, lw=1.2, zorder=3)


def _draw_label_free(axes, point: Point, colour: str, x: float) -> None:
    """The n = 0 value (synthetic tumors only): an open diamond at `x`, left of every count."""
    low = point.value - point.ci_low if point.ci_low is not None else 0.0
    high = point.ci_high - point.value if point.ci_high is not None else 0.0
    yerr = np.clip([[low], [high]], 0.0, None)
    axes.errorbar([x], [point.value], yerr=yerr, fmt="D", color=colour, mfc="white", mec=colour,
                  ms=6, capsize=3, lw=1.2, zorder=3)  # fmt: skip


def _draw_fit(axes, points: Sequence[Point], fit: Mapping[str, Any], colour: str) -> list[float]:
    """Fitted curve (solid inside the measured range, dashed beyond), band and plateau line."""
    params = _parameters(fit)
    if params is None or not points:
        return []
    a, b, c = (params[k]["value"] for k in ("a", "b", "c"))
    n_min, n_max = points[0].n_real, points[-1].n_real
    measured = np.geomspace(n_min, n_max, 120)
    beyond = np.geomspace(n_max, n_max * EXTRAPOLATE_FACTOR, 60)
    with np.errstate(over="ignore", invalid="ignore"):
        inside, outside = power_law(measured, a, b, c), power_law(beyond, a, b, c)
    axes.plot(measured, inside, "-", color=colour, lw=1.8, zorder=2)
    axes.plot(beyond, outside, "--", color=colour, lw=1.4, zorder=2)
    bootstrap = bootstrap_band(fit)
    if bootstrap is not None:
        axes.fill_between(*bootstrap, color=colour, alpha=BOOTSTRAP_ALPHA, lw=0)
    else:  # no bootstrap band in fit.json: the approximate envelope (see the module docstring)
        every_n = np.concatenate([measured, beyond])
        if (band := _band(every_n, params)) is not None:
            axes.fill_between(every_n, *band, color=colour, alpha=APPROX_ALPHA, lw=0)
    axes.axhline(a, color=colour, ls=":", lw=1.0, zorder=1)
    return [float(v) for v in (*inside, *outside, a) if math.isfinite(v)]


def bootstrap_band(fit: Mapping[str, Any]) -> tuple[np.ndarray, ...] | None:
    """fit.json's pointwise bootstrap band (n, low, high) over the measured range, if any."""
    band = _dict(fit.get("band"))
    columns = [[_num(v) for v in _list(band.get(k))] for k in ("n_real", "ci_low", "ci_high")]
    rows = [r for r in zip(*columns, strict=False) if all(v is not None for v in r) and r[0] > 0]
    if len(rows) < 2:
        return None
    return tuple(np.array(column, dtype=float) for column in zip(*rows, strict=True))


def _y_limits(values: Sequence[float]) -> tuple[float, float] | None:
    if not values:
        return None
    low, high = min(values), max(values)
    pad = max(0.05 * (high - low), 0.02)
    low, high = low - pad, high + pad
    if min(values) >= 0.0 and max(values) <= 1.0:  # fractions: stay near [0, 1]
        low, high = max(low, -0.02), min(high, 1.02)
    return low, high


def _draw_panel(
    axes, data: StudyData, metric: str, test_set: str, colours
) -> tuple[list[str], list[float]]:
    """One test set's panel; returns notes on series shown as points only, and its y values."""
    notes, y_values, counts, unfitted, fitted = [], [], set(), [], False
    conditions = list(colours)
    zero_x = _zero_position(data, metric, test_set)
    for index, condition in enumerate(conditions):
        key = (metric, test_set, condition, data.main_organ)
        points, fit = data.points.get(key, []), data.fits.get(key)
        shift = 1.0 + 0.03 * (index - (len(conditions) - 1) / 2)
        if (zero := data.label_free.get(key)) is not None and zero_x is not None:
            _draw_label_free(axes, zero, colours[condition], zero_x * shift)
            y_values += [v for v in (zero.value, zero.ci_low, zero.ci_high) if v is not None]
        if not points:
            continue
        _draw_points(axes, points, colours[condition], shift)
        y_values += [v for p in points for v in (p.value, p.ci_low, p.ci_high) if v is not None]
        curve = _draw_fit(axes, points, fit or {}, colours[condition])
        y_values, fitted = y_values + curve, fitted or bool(curve)
        counts.update(p.n_real for p in points)
        if (problem := fit_problem(fit)) is not None:
            notes.append(f"{data.test_set_label(test_set)}, {condition}: {problem}")
            unfitted.append(condition)
    ticks = sorted(counts) + ([max(counts) * EXTRAPOLATE_FACTOR] if fitted and counts else [])
    labels = [f"{n:,.0f}" for n in ticks]
    if zero_x is not None:
        if counts:  # a thin line marks the break between n = 0 and the log-scaled counts
            axes.axvline(math.sqrt(zero_x * min(counts)), color="#999999", lw=0.8, ls=":")
        ticks, labels = [zero_x, *ticks], [ZERO_TICK, *labels]
    _style_panel(axes, data.test_set_label(test_set), ticks, labels)
    if unfitted and counts:
        text = "points only (no fit or no claim): " + ", ".join(unfitted)
        axes.text(0.98, 0.02, text, ha="right", va="bottom", fontsize=7, color="#555555",
                  transform=axes.transAxes)  # fmt: skip
    return notes, y_values


def _zero_position(data: StudyData, metric: str, test_set: str) -> float | None:
    """Where this panel draws n = 0 on its log axis (None: no n = 0 value to draw): a fixed
    fraction of the smallest positive count, so it sits at the axis's left edge."""
    keys = [(metric, test_set, c, data.main_organ) for c in _conditions(data)]
    if not any(key in data.label_free for key in keys):
        return None
    counts = [p.n_real for key in keys for p in data.points.get(key, [])]
    return ZERO_POSITION * min(counts) if counts else 1.0


def _style_panel(axes, title: str, ticks: list[float], labels: list[str] | None = None) -> None:
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("real annotated scans (log scale)")
    axes.grid(True, which="major", alpha=0.3)
    if not ticks:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        return
    axes.set_xscale("log")
    axes.set_xticks(ticks, labels or [f"{n:,.0f}" for n in ticks])
    axes.minorticks_off()


def _legend_handles(data: StudyData, metric: str, colours: Mapping[str, str]) -> list:
    """One entry per condition, then only the line and band styles this figure uses."""
    handles = [Line2D([], [], color=c, marker="o", ls="-", label=n) for n, c in colours.items()]
    grey = "#555555"
    if any(k[0] == metric and k[3] == data.main_organ for k in data.label_free):
        handles.append(Line2D([], [], color=grey, marker="D", mfc="white", ls="none",
                              label="0 real scans (synthetic tumors only)"))  # fmt: skip
    fits = [f for k, f in data.fits.items() if k[0] == metric and k[3] == data.main_organ]
    fitted = [f for f in fits if _parameters(f) is not None]
    if not fitted:
        return handles
    handles += [
        Line2D([], [], color=grey, ls="-", label="power-law fit (measured range)"),
        Line2D([], [], color=grey, ls="--", label="extrapolation"),
        Line2D([], [], color=grey, ls=":", label="plateau a"),
    ]
    if any(bootstrap_band(f) is not None for f in fitted):
        handles.append(Patch(color=grey, alpha=BOOTSTRAP_ALPHA + 0.1, label="bootstrap band"))
    if any(bootstrap_band(f) is None for f in fitted):
        label = "approx. band (a, b, c intervals)"
        handles.append(Patch(color=grey, alpha=APPROX_ALPHA + 0.05, label=label))
    return handles


def metric_figure(data: StudyData, metric: str, folder: Path) -> tuple[FigureFiles, list[str]]:
    """Metric vs real scans, one panel per test set side by side, one colour per condition."""
    test_sets, colours = _test_sets(data), _colours(_conditions(data))
    figure = MplFigure(figsize=(4.6 * max(len(test_sets), 1) + 0.6, 4.4), layout="constrained")
    panels = figure.subplots(1, max(len(test_sets), 1), squeeze=False, sharey=True)[0]
    notes: list[str] = []
    y_values: list[float] = []
    for axes, test_set in zip(panels, test_sets, strict=False):
        panel_notes, panel_values = _draw_panel(axes, data, metric, test_set, colours)
        notes, y_values = notes + panel_notes, y_values + panel_values
    if (limits := _y_limits(y_values)) is not None:
        panels[0].set_ylim(*limits)  # shared by every panel, so set once from all of them
    panels[0].set_ylabel(metric_label(metric))
    figure.legend(
        handles=_legend_handles(data, metric, colours),
        loc="outside lower center",
        ncols=4,
        fontsize=8,
    )
    caption = (
        f"{metric_label(metric)} against the number of real annotated scans "
        f"({data.main_organ}). Points: "
        "mean over seeds with its confidence interval (where known); solid: power law a − b·n^(−c) "
        f"over the measured range; dashed: extrapolation to {EXTRAPOLATE_FACTOR:g}× the largest "
        "count; shaded: the 95% pointwise bootstrap band of `study fit` (measured range), or, "
        "lighter, where fit.json has no band, an approximate envelope from the a, b, c "
        "intervals; dotted: plateau a. Open diamonds at the left edge, where present: "
        f"{ZERO_LABEL}, runs trained on synthetic tumors with no real annotated scan, "
        "never part of a fit. Curves `study fit` reads no claim off are shown as points only."
    )
    title = f"{metric_label(metric)} against real scans"
    return _save(figure, folder, f"metric_{_slug(metric)}", caption, title), notes


def _count_colours(counts: Sequence[int | None]) -> dict[int | None, Any]:
    """Sequential colours by real-scan count (viridis, small to large); grey for unknown."""
    known = sorted(n for n in set(counts) if n is not None)
    cmap = matplotlib.colormaps["viridis"]
    colours: dict[int | None, Any] = {
        n: cmap(0.9 * i / max(len(known) - 1, 1)) for i, n in enumerate(known)
    }
    return colours | {None: "#888888"}


def loss_figure(data: StudyData, folder: Path) -> FigureFiles | None:
    """Each run's logged training loss against iteration, one panel per condition, coloured by
    n_real, dashed where the run did not learn (None: no run has a readable log)."""
    by_condition: dict[str, list[TrainedRun]] = defaultdict(list)
    for run in data.trained_runs:  # already in condition, n_real, seed order
        if run.learning.losses:
            by_condition[run.condition].append(run)
    if not by_condition:
        return None
    runs = [run for group in by_condition.values() for run in group]
    colours = _count_colours([run.n_real for run in runs])
    figure = MplFigure(figsize=(4.6 * len(by_condition) + 0.6, 4.0), layout="constrained")
    panels = figure.subplots(1, len(by_condition), squeeze=False, sharey=True)[0]
    for axes, (condition, group) in zip(panels, by_condition.items(), strict=True):
        for run in group:
            style = "--" if run.learning.learned is False else "-"
            axes.plot(run.learning.iterations, run.learning.losses, style,
                      color=colours[run.n_real], lw=1.2)  # fmt: skip
        axes.set_title(condition, fontsize=10)
        axes.set_xlabel("iteration")
        axes.grid(True, alpha=0.3)
    panels[0].set_ylabel("training loss (mean per logged interval)")
    figure.legend(handles=_loss_legend(runs, colours), loc="outside lower center", ncols=5,
                  fontsize=8)  # fmt: skip
    caption = (
        "Training loss of every run with a readable log (runs/<id>/train/log.csv), one panel per "
        "condition, coloured by the number of real annotated scans; dashed: the run did not "
        f"learn ({LEARNED_RULE})."
    )
    return _save(figure, folder, "training_loss", caption, "training loss of every run")


def _loss_legend(runs: Sequence[TrainedRun], colours: Mapping[int | None, Any]) -> list:
    counts = sorted({run.n_real for run in runs}, key=lambda n: (n is None, n or 0))
    handles = [
        Line2D([], [], color=colours[n], label="n_real unknown" if n is None else f"n_real = "
               f"{_count_text(n)}")
        for n in counts
    ]  # fmt: skip
    if any(run.learning.learned is False for run in runs):
        handles.append(Line2D([], [], color="#555555", ls="--", label="did not learn"))
    return handles


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


# ---------------------------------------------------------------------------------------------
# Example slices


@dataclass(frozen=True)
class ExampleRun:
    run_id: str
    condition: str
    n_real: int


@dataclass(frozen=True)
class ExampleCase:
    case_dir: Path
    slice_index: int
    ct: np.ndarray
    truth: np.ndarray
    spacing: tuple[float, float, float]
    tumor_voxels: int
    window: tuple[slice, slice]  # (i, j) ranges of the shown crop around the tumor


def example_runs(data: StudyData) -> dict[str, list[ExampleRun]]:
    """Per condition, the smallest and the largest real-count run (lowest seed of each)."""
    runs: dict[str, dict[int, tuple[float, str]]] = defaultdict(dict)
    for row in data.rows:
        run_id, condition, n_real = row.get("run_id"), row.get("condition"), _num(row.get("n_real"))
        if not run_id or not condition or n_real is None:
            continue
        seed = _num(row.get("seed"))
        candidate = (seed if seed is not None else math.inf, run_id)
        best = runs[condition].get(int(n_real))
        runs[condition][int(n_real)] = min(best, candidate) if best else candidate
    chosen = {}
    for condition in _conditions(data):
        by_count = runs.get(condition, {})
        counts = sorted({min(by_count), max(by_count)}) if by_count else []
        chosen[condition] = [ExampleRun(by_count[n][1], condition, n) for n in counts]
    return {condition: picks for condition, picks in chosen.items() if picks}


def _lesion_union(folder: Path, organs: set[str]) -> np.ndarray | None:
    """Union of the lesion masks of `organs` in a `segmentations/` folder (None: none found)."""
    union = None
    for path in sorted(folder.glob("*.nii*")) if folder.is_dir() else []:
        stem = nifti_stem(path.name)
        meaning = classify_segmentation(stem) if stem else None
        if meaning is None or meaning.role != FileRole.LESION or meaning.organ not in organs:
            continue
        mask = read_nifti(path, kind="labels").array > 0  # tolerant: some releases store 0/255
        union = mask if union is None else (union | mask if union.shape == mask.shape else union)
    return union


def _largest_tumor(truth: np.ndarray) -> tuple[int, int, np.ndarray]:
    """Axial index where the largest tumor is widest, its voxel count, its mask on that slice."""
    import cc3d  # local: only example slices need it

    labels = cc3d.connected_components(truth.astype(np.uint8), connectivity=26)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = labels == int(np.argmax(sizes))
    index = int(np.argmax(largest.sum(axis=(0, 1))))
    return index, int(sizes.max()), largest[..., index]


def view_window(
    tumor: np.ndarray, spacing: Sequence[float], min_mm: float = EXAMPLE_VIEW_MM
) -> tuple[slice, slice]:
    """A crop of an axial slice centred on the tumor: at least `min_mm` or twice the tumor wide."""
    window = []
    for axis, index in enumerate(np.nonzero(tumor)):
        centre = (index.min() + index.max()) / 2
        width_mm = max(min_mm, 2.0 * (index.max() - index.min() + 1) * spacing[axis])
        half = width_mm / 2 / spacing[axis]
        low = max(0, int(np.floor(centre - half)))
        window.append(slice(low, min(tumor.shape[axis], int(np.ceil(centre + half)) + 1)))
    return window[0], window[1]


def find_example_case(test_dir: Path, organs: set[str]) -> ExampleCase | None:
    """Among the first test cases, the one with the largest truth tumor (None: no tumor found)."""
    best: ExampleCase | None = None
    case_dirs = sorted(p for p in test_dir.iterdir() if (p / "ct.nii.gz").is_file())
    for case_dir in case_dirs[:MAX_CASES_SCANNED]:
        try:
            truth = _lesion_union(case_dir / "segmentations", organs)
            if truth is None or not truth.any():
                continue
            slice_index, voxels, tumor = _largest_tumor(truth)
            if best is not None and voxels <= best.tumor_voxels:
                continue
            ct = read_nifti(case_dir / "ct.nii.gz")
        except (InputFileError, OSError, ValueError):
            continue  # one unreadable case must not sink the report
        if ct.shape == truth.shape:
            window = view_window(tumor, ct.spacing)
            best = ExampleCase(case_dir, slice_index, ct.array, truth, ct.spacing, voxels, window)
    return best


def _axial(array: np.ndarray, index: int, window: tuple[slice, slice] | None = None) -> np.ndarray:
    # RAS array [i=R, j=A, k=S]: radiological view (patient right on the left), anterior up.
    rows, columns = window or (slice(None), slice(None))
    return array[rows, columns, index][::-1, :].T


def _draw_example(axes, case: ExampleCase, prediction: np.ndarray | None, title: str) -> None:
    def view(array: np.ndarray) -> np.ndarray:
        return _axial(array, case.slice_index, case.window).astype(float)

    aspect = case.spacing[1] / case.spacing[0]
    low, high = CT_WINDOW_HU
    axes.imshow(view(case.ct), cmap="gray", origin="lower", vmin=low, vmax=high, aspect=aspect)
    axes.contour(view(case.truth), levels=[0.5], colors="#00e000", linewidths=1.2)
    if prediction is None:
        title += "\n(no prediction found)"
    elif (predicted := view(prediction)).any():
        axes.contour(predicted, levels=[0.5], colors="#ff3030", linewidths=1.2)
    else:
        title += "\n(nothing predicted in view)"
    axes.set_title(title, fontsize=8)
    axes.set_xticks([])
    axes.set_yticks([])


def _prediction(
    plan_dir: Path, run: ExampleRun, aliases: Sequence[str], case: ExampleCase, organs: set[str]
) -> np.ndarray | None:
    """The run's predicted lesions (union over organs) for the case; None when absent."""
    for name in aliases:
        folder = plan_dir / "runs" / run.run_id / "predict" / name / case.case_dir.name
        try:
            mask = _lesion_union(folder / "segmentations", organs)
        except (InputFileError, OSError, ValueError):
            return None
        if mask is not None:
            return mask if mask.shape == case.truth.shape else None
        if folder.is_dir():  # predicted, but no lesion file at all: nothing found
            return np.zeros_like(case.truth)
    return None


def _report_organs(data: StudyData) -> set[str]:
    planned = [o for o in _plan_list(data.plan, "organs", "organ") if isinstance(o, str)]
    known = set(planned) & set(TUMOR_ORGANS) or set(_organs(data)) & set(TUMOR_ORGANS)
    return known or set(TUMOR_ORGANS)


def example_figure(
    data: StudyData, plan_dir: Path, test_set: str, folder: Path
) -> FigureFiles | None:
    """CT slices through the largest truth tumor: truth (green) and predictions (red) per run."""
    test_dir, runs = data.test_folder(plan_dir, test_set), example_runs(data)
    organs, aliases = _report_organs(data), data.test_set_aliases(test_set)
    case = find_example_case(test_dir, organs) if test_dir is not None and runs else None
    if case is None:
        return None
    columns = max(len(picks) for picks in runs.values())
    figure = MplFigure(figsize=(2.8 * columns, 2.9 * len(runs)), layout="constrained")
    grid = figure.subplots(len(runs), columns, squeeze=False)
    for row, (condition, picks) in enumerate(runs.items()):
        for column in range(columns):
            axes = grid[row][column]
            if column >= len(picks):
                axes.set_axis_off()
                continue
            run = picks[column]
            title = f"{condition}, n_real = {run.n_real:,}"
            prediction = _prediction(plan_dir, run, aliases, case, organs)
            _draw_example(axes, case, prediction, title)
    caption = (
        f"{data.test_set_label(test_set)}: case {case.case_dir.name}, "
        f"axial slice {case.slice_index} "
        f"through its largest tumor ({case.tumor_voxels:,} voxels), cropped around it; CT window "
        f"[{CT_WINDOW_HU[0]:g}, {CT_WINDOW_HU[1]:g}] HU. Green: truth; red: prediction of the "
        "smallest and largest real-count run of each condition (lowest seed)."
    )
    title = f"example slices, {data.test_set_label(test_set)}"
    return _save(figure, folder, f"example_{_slug(test_set)}", caption, title)


# ---------------------------------------------------------------------------------------------
# Document model: one list of blocks, rendered to Markdown and to HTML (same content in both)


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str | None = None


@dataclass(frozen=True)
class MarkdownText:
    """Markdown written by another step (fit.md), kept verbatim in report.md."""

    text: str


Block = Heading | Paragraph | Bullets | Table | MarkdownText | FigureFiles


def _plan_value(plan: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` found at the top of the plan or one level down."""
    for scope in [plan, *(v for v in plan.values() if isinstance(v, dict))]:
        for name in names:
            if scope.get(name) not in (None, "", [], {}):
                return scope[name]
    return None


def _plan_list(plan: Mapping[str, Any], *names: str) -> list[Any]:
    value = _plan_value(plan, *names)
    if isinstance(value, dict):
        return list(value)
    return value if isinstance(value, list) else ([value] if value is not None else [])


def _describe(value: Any) -> str:
    """Plan values as one line: lists joined, mappings as `key: value` pairs ('' for nothing)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items() if not isinstance(v, (dict, list)))
    if isinstance(value, list):
        return ", ".join(str(_dict(v).get("name", v) if isinstance(v, dict) else v) for v in value)
    return str(value)


def _study_name(data: StudyData) -> str:
    name = _plan_value(data.plan, "name", "study_name", "title")
    return name if isinstance(name, str) and name.strip() else "scaling study"


def _run_values(data: StudyData, column: str) -> list[str]:
    """Distinct values of a run-table column (planned runs first, else evaluated rows)."""
    values = {str(row.get(column)) for row in data.planned_runs or data.rows if row.get(column)}
    numeric = all(_num(v) is not None for v in values)
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
        ("Organs", _describe(_plan_value(data.plan, "organs", "organ"))),
        ("Real-scan counts", ", ".join(counts)),
        ("Conditions", ", ".join(conditions)),
        ("Seeds", ", ".join(_run_values(data, "seed"))),
        ("Test sets", _test_sets_text(data)),
        ("Compute policy", _describe(_plan_value(data.plan, "compute"))),
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


def headline_section(text: str) -> tuple[str, bool]:
    """fit.md's preamble and its `## Headlines` section (the report renders the tables itself);
    the whole text when it has no such section. Also says whether anything was left out."""
    sections = re.split(r"(?m)^(?=## )", text)
    chosen = [part for part in sections[1:] if re.match(r"## +headline", part, re.IGNORECASE)]
    if not chosen:
        return text.strip(), False
    return (sections[0] + "".join(chosen)).strip(), len(chosen) < len(sections) - 1


def headline_blocks(data: StudyData) -> list[Block]:
    blocks: list[Block] = [Heading("Headline numbers")]
    if not (data.headline_md and data.headline_md.strip()):
        return [*blocks, Paragraph("No headline numbers (results/fit.md was not found).")]
    text, shortened = headline_section(data.headline_md)
    blocks.append(MarkdownText(demote_headings(text)))
    if shortened:
        blocks.append(Paragraph("The complete fit tables of `study fit` are in results/fit.md."))
    return blocks


def points_table(
    data: StudyData, metric: str, test_set: str, organ: str | None = None
) -> Table | None:
    """n_real × condition with `value [CI]` cells (organ: the plots' organ selection)."""
    organ = organ or data.main_organ
    series = {c: _series_points(data, (metric, test_set, c, organ)) for c in _conditions(data)}
    conditions = [c for c, points in series.items() if points]
    cells: dict[int, dict[str, str]] = defaultdict(dict)
    for condition in conditions:
        for p in series[condition]:
            cells[p.n_real][condition] = fmt_interval(p.value, p.ci_low, p.ci_high)
    if not cells:
        return None
    rows = [[_count_text(n), *(cells[n].get(c, EMPTY) for c in conditions)] for n in sorted(cells)]
    return Table(
        ["real scans", *conditions],
        rows,
        f"{metric_label(metric)}, {data.test_set_label(test_set)}",
    )


def _series_points(data: StudyData, key: SeriesKey) -> list[Point]:
    """A series' points for tables: the n = 0 value (if any) first, then the counts."""
    zero = data.label_free.get(key)
    return ([zero] if zero is not None else []) + data.points.get(key, [])


def _count_text(n_real: int) -> str:
    return ZERO_LABEL if n_real == 0 else f"{n_real:,}"


def _levels(data: StudyData) -> list[str]:
    """The plateau fractions that fit.json reports n for ("0.95", "0.99", ...)."""
    found = {str(k) for fit in data.fits.values() for k in _dict(fit.get("n_at"))}
    return sorted(found, key=lambda k: (_num(k) is None, _num(k) or 0.0, k))


def _percent(level: str) -> str:
    number = _num(level)
    return f"{number:.0%}" if number is not None and number <= 1 else level


def fit_table(data: StudyData, metric: str) -> Table | None:
    """One row per test set × condition: a, b, c, n for each plateau fraction, saturation."""
    levels = _levels(data)
    rows = []
    for test_set in _test_sets(data):
        for condition in _conditions(data):
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
    law, n_at, log_linear = (_dict(fit.get(k)) for k in ("power_law", "n_at", "log_linear"))
    ok = _parameters(fit) is not None
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
        _saturated_text(_dict(fit.get("saturated"))),
        slope,
        status,
    ]


def _saturation_rules(data: StudyData) -> list[str]:
    rules = [_dict(fit.get("saturated")).get("rule") for fit in data.fits.values()]
    return sorted({rule for rule in rules if isinstance(rule, str) and rule})


def _saving_target(item: Mapping[str, Any]) -> str:
    """What level a saving is measured at, from either fit.json form (`target` or `level`)."""
    target = _dict(item.get("target"))
    kind, parameter = target.get("kind"), _num(target.get("parameter"))
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
    order = [m for m in _metrics(data) if m in by_metric]
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
        for o in _organs(data)
        for c in _conditions(data)
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
    header = ["organ", "condition", *(f"n = {_count_text(n)}" for n in counts)]
    return (
        Table(header, rows, f"{metric_label(metric)} per organ, {data.test_set_label(test_set)}")
        if rows
        else None
    )


def build_blocks(data: StudyData, plan_dir: Path, figure_dir: Path) -> list[Block]:
    """The whole report as blocks (writes the figures on the way)."""
    examples = _example_blocks(data, plan_dir, figure_dir)  # first: may add to data.problems
    blocks = [Heading(f"Scaling study report: {_study_name(data)}", 1), *study_blocks(data)]
    blocks += headline_blocks(data)
    for metric in _metrics(data):
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
    tables = [points_table(data, metric, t) for t in _test_sets(data)]
    return blocks + [t for t in [*tables, fit_table(data, metric)] if t is not None]


def learning_table(data: StudyData) -> Table:
    """One row per run: its log's length, first- and last-tenth mean loss, final validation
    DSC and whether it learned ("unknown" where the log is missing or unreadable)."""
    rows = []
    for run in data.trained_runs:
        record = run.learning
        rows.append([
            run.run_id,
            EMPTY if run.n_real is None else _count_text(run.n_real),
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
    tables = [organ_table(data, m, t) for t in _test_sets(data) for m in _metrics(data)]
    tables = [t for t in tables if t is not None]
    return [Heading("Per organ"), *(tables or [Paragraph("No per-organ results.")])]


def _example_blocks(data: StudyData, plan_dir: Path, figure_dir: Path) -> list[Block]:
    figures = []
    for test_set in _test_sets(data):
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


# ---------------------------------------------------------------------------------------------
# Markdown


def _md_text(text: str) -> str:
    # An opening angle bracket would read as an HTML tag to a Markdown renderer.
    return text.replace("<", "&lt;")


def _md_cell(text: str) -> str:
    return _md_text(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block], base: Path) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {_md_text(block.text)}")
        elif isinstance(block, Paragraph):
            parts.append(_md_text(block.text))
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {_md_text(item)}" for item in block.items))
        elif isinstance(block, MarkdownText):
            parts.append(block.text)
        elif isinstance(block, Table):
            parts.append(_md_table(block))
        elif isinstance(block, FigureFiles):
            png, svg = (p.relative_to(base).as_posix() for p in (block.png, block.svg))
            caption = _md_text(block.caption)
            parts.append(f"![{_md_cell(block.title)}]({png})\n\n*{caption}* ([SVG]({svg}))")
    return "\n\n".join(parts) + "\n"


def _md_table(table: Table) -> str:
    lines = [f"**{_md_text(table.caption)}**\n"] if table.caption else []
    lines.append("| " + " | ".join(_md_cell(h) for h in table.header) + " |")
    lines.append("|" + "---|" * len(table.header))
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# HTML (self-contained: inline CSS, base64 images, no scripts, no external URLs)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1180px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0 1.4em; font-size: 0.88em; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f3f3f3; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.88em; color: #444; }
.headline { background: #f7f9fc; border-left: 4px solid #1f77b4; padding: 0.4em 1em; }
code { background: #f2f2f2; padding: 0 0.2em; }
"""


def _inline(text: str) -> str:
    """Escape, then allow the two inline marks our Markdown uses: `code` and **bold**."""
    escaped = html.escape(text, quote=True)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


_BULLET = re.compile(r"^\s*[-*+]\s+")


def markdown_to_html(text: str) -> str:
    """A small, safe Markdown subset (headings, bullets, pipe tables, paragraphs) for fit.md."""
    out: list[str] = []
    for chunk in re.split(r"\n\s*\n", text.strip()):
        lines = [line.rstrip() for line in chunk.splitlines() if line.strip()]
        out += _markdown_chunk(lines)
    return "\n".join(out)


def _markdown_chunk(lines: list[str]) -> Iterator[str]:
    paragraph: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if heading := re.match(r"^(#{1,6})\s+(.*)$", line):
            yield from _flush(paragraph)
            level = len(heading.group(1))
            yield f"<h{level}>{_inline(heading.group(2))}</h{level}>"
        elif re.match(r"^[-*+]\s+", line):
            yield from _flush(paragraph)
            items = []
            while index < len(lines) and _BULLET.match(lines[index]):
                item = _BULLET.sub("", lines[index])
                items.append(f"<li>{_inline(item)}</li>")
                index += 1
            yield "<ul>" + "".join(items) + "</ul>"
            continue
        elif line.startswith("|"):
            yield from _flush(paragraph)
            rows = []
            while index < len(lines) and lines[index].strip().startswith("|"):
                rows.append(lines[index].strip())
                index += 1
            yield _pipe_table_html(rows)
            continue
        else:
            paragraph.append(line)
        index += 1
    yield from _flush(paragraph)


def _flush(paragraph: list[str]) -> Iterator[str]:
    if paragraph:
        yield f"<p>{_inline(' '.join(paragraph))}</p>"
        paragraph.clear()


def _pipe_table_html(rows: list[str]) -> str:
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row.strip("|"))] for row in rows]
    cells = [[c.replace("\\|", "|") for c in row] for row in cells]
    body = [row for row in cells if not all(re.fullmatch(r":?-{2,}:?", c) for c in row if c)]
    if not body:
        return ""
    return _html_table(Table(body[0], body[1:]), inline_marks=True)


def _html_table(table: Table, inline_marks: bool = False) -> str:
    text = _inline if inline_marks else html.escape
    parts = ["<table>"]
    if table.caption:
        parts.append(f"<caption>{text(table.caption)}</caption>")
    parts.append("<tr>" + "".join(f"<th>{text(h)}</th>" for h in table.header) + "</tr>")
    parts += ["<tr>" + "".join(f"<td>{text(c)}</td>" for c in row) + "</tr>" for row in table.rows]
    return "\n".join([*parts, "</table>"])


def _html_figure(figure: FigureFiles) -> str:
    encoded = base64.b64encode(figure.png.read_bytes()).decode("ascii")
    caption = html.escape(figure.caption)
    return (
        f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(figure.title)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{_inline(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, MarkdownText):
        return f'<div class="headline">{markdown_to_html(block.text)}</div>'
    if isinstance(block, Table):
        return _html_table(block)
    return _html_figure(block)


def to_html(blocks: Sequence[Block], title: str) -> str:
    body = "\n".join(_html_block(block) for block in blocks)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


# ---------------------------------------------------------------------------------------------
# Entry points


def write_report(plan_dir: str | Path, out: str | Path | None = None) -> ReportPaths:
    """Write `report.md`, `report.html` and `figures/*.png|svg` (default folder: `plan_dir/report`).

    Every input is optional; what is missing is named in the report. Outputs are written
    atomically, and a rerun rewrites them from the current results.
    """
    plan_dir = Path(plan_dir)
    out_dir = Path(out) if out is not None else plan_dir / "report"
    figure_dir = out_dir / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    data = load_report_data(plan_dir)
    blocks = build_blocks(data, plan_dir, figure_dir)
    markdown, html_path = out_dir / "report.md", out_dir / "report.html"
    write_text_atomic(markdown, to_markdown(blocks, out_dir))
    write_text_atomic(html_path, to_html(blocks, f"tumorscale report: {_study_name(data)}"))
    figures = [path for b in blocks if isinstance(b, FigureFiles) for path in (b.png, b.svg)]
    return ReportPaths(html=html_path, markdown=markdown, figures=figures)


def run_report(plan_dir: str | Path) -> ReportPaths:
    """The `tumorscale study report OUT` entry: check the study folder, then write the report."""
    plan_dir = Path(plan_dir)
    if not plan_dir.is_dir():
        raise InputFileError(plan_dir, "study folder not found (run `tumorscale study plan` first)")
    if not (plan_dir / "results").is_dir() and not (plan_dir / "plan.yaml").is_file():
        raise InputFileError(plan_dir, "not a study folder: no plan.yaml and no results/")
    return write_report(plan_dir)
