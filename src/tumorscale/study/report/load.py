"""The report's inputs, read defensively from the study folder into one `StudyData`.

Reads what `study fit` and `study run` left there (`results/fit.json`, `results/runs.csv`,
`plan.yaml`, `runs.csv`, training logs under `runs/`). Every input is optional: whatever is
missing or unreadable is named in `StudyData.problems` and the rest is still read.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tumorscale.metrics.labels import METRIC_LABELS
from tumorscale.metrics.summary import ALL_ORGANS
from tumorscale.organs import TUMOR_ORGANS
from tumorscale.study.learning import TRAIN_FOLDER, RunLearning, read_study_learning
from tumorscale.study.report.format import EMPTY, as_dict, as_list, num

IN_DISTRIBUTION = "in_distribution"
METRIC_ORDER = tuple(METRIC_LABELS)


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
    fit_result: dict[str, Any] = field(default_factory=dict)  # fit.json as read ({}: none)
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
        entries = as_dict(self.plan.get("test_sets"))
        return {str(name): as_dict(entry) for name, entry in entries.items()}

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


def _read_json(path: Path, problems: list[str]) -> dict[str, Any]:
    if not path.is_file():
        problems.append(f"{path.name} not found (run `tumorscale study fit`)")
        return {}
    try:
        return as_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        problems.append(f"{path.name} unreadable ({error})")
        return {}


def _read_plan(path: Path, problems: list[str]) -> dict[str, Any]:
    if not path.is_file():
        problems.append("plan.yaml not found")
        return {}
    try:
        return as_dict(yaml.safe_load(path.read_text(encoding="utf-8")))
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
    for raw in as_list(record.get("points")):
        raw = as_dict(raw)
        n_real, value = num(raw.get("n_real")), num(raw.get("value"))
        if n_real is None or value is None or n_real <= 0:
            continue
        seeds = num(raw.get("n_seeds"))
        points.append(
            Point(
                int(n_real),
                value,
                num(raw.get("ci_low")),
                num(raw.get("ci_high")),
                int(seeds) if seeds is not None else None,
            )
        )
    return sorted(points, key=lambda point: point.n_real)


def _label_free_point(record: Mapping[str, Any]) -> Point | None:
    """fit.json's n = 0 value (synthetic tumors only), if the record has one."""
    raw = as_dict(record.get("label_free"))
    value = num(raw.get("value"))
    if value is None:
        return None
    seeds = num(raw.get("n_seeds"))
    return Point(0, value, num(raw.get("ci_low")), num(raw.get("ci_high")),
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
        n_real = num(row.get("n_real"))
        test_set, condition = row.get("test_set") or "", row.get("condition") or ""
        if n_real is None or n_real < 0 or not test_set or not condition:
            continue
        organ = row.get("organ") or ALL_ORGANS
        for metric in METRIC_ORDER:
            value = num(row.get(metric))
            if value is not None:
                values[((metric, test_set, condition, organ), int(n_real))].append(value)
    points: dict[SeriesKey, list[Point]] = defaultdict(list)
    for (key, n_real), seed_values in sorted(values.items(), key=lambda item: item[0][1]):
        points[key].append(Point(n_real, float(np.mean(seed_values)), n_seeds=len(seed_values)))
    return dict(points)


def _condition_ratios(
    fits: Iterable[Mapping[str, Any]], rows: Iterable[Mapping[str, str]]
) -> dict[str, float]:
    ratios: dict[str, float] = {}
    for record in [*fits, *rows]:
        condition, ratio = record.get("condition"), num(record.get("synthetic_ratio"))
        if isinstance(condition, str) and condition and ratio is not None:
            ratios.setdefault(condition, ratio)
    return ratios


def load_report_data(plan_dir: Path) -> StudyData:
    """Read every report input that exists; list what is missing in `problems`."""
    problems: list[str] = []
    results = plan_dir / "results"
    data = StudyData(plan=_read_plan(plan_dir / "plan.yaml", problems), problems=problems)
    fit_json = data.fit_result = _read_json(results / "fit.json", problems)
    data.rows = [_renamed(data, row) for row in _read_runs(results / "runs.csv", problems)]
    fit_records = [_renamed(data, as_dict(record)) for record in as_list(fit_json.get("fits"))]
    data.fits = {key: rec for rec in fit_records if (key := _fit_key(rec)) is not None}
    data.savings = [_renamed(data, as_dict(item)) for item in as_list(fit_json.get("savings"))]
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
        n_real = num(row.get("n_real"))
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


def series_of(data: StudyData) -> set[SeriesKey]:
    return set(data.points) | set(data.fits) | set(data.label_free)


def metrics_of(data: StudyData) -> list[str]:
    found = {key[0] for key in series_of(data)}
    return [m for m in METRIC_ORDER if m in found] + sorted(found - set(METRIC_ORDER))


def test_sets_of(data: StudyData) -> list[str]:
    found = {key[1] for key in series_of(data)}
    return sorted(found, key=lambda name: (not data.is_in_distribution(name), name))


def conditions_of(data: StudyData) -> list[str]:
    found = {key[2] for key in series_of(data)}
    return sorted(found, key=lambda name: (data.ratios.get(name, math.inf), name))


def organs_of(data: StudyData) -> list[str]:
    found = {key[3] for key in data.points} - {ALL_ORGANS}
    return [o for o in TUMOR_ORGANS if o in found] + sorted(found - set(TUMOR_ORGANS))


def plan_value(plan: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` found at the top of the plan or one level down."""
    for scope in [plan, *(v for v in plan.values() if isinstance(v, dict))]:
        for name in names:
            if scope.get(name) not in (None, "", [], {}):
                return scope[name]
    return None


def plan_list(plan: Mapping[str, Any], *names: str) -> list[Any]:
    value = plan_value(plan, *names)
    if isinstance(value, dict):
        return list(value)
    return value if isinstance(value, list) else ([value] if value is not None else [])
