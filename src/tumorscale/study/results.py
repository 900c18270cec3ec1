"""Study results: every finished evaluation gathered into two tables under OUT/results/.

per_case.csv: every row of every finished run × test set's evaluate/per_case.csv, its columns
unchanged, after the run columns RUN_COLUMNS (what `study fit` reads).
runs.csv: one row per run × test set × organ (and 'all organs'): the summary's point values
(means over tumor cases for dsc/nsd; pooled detection figures) and case counts.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from tumorscale.io import write_csv_atomic
from tumorscale.study.ledger import DONE, STATUS_NAME, read_status
from tumorscale.study.plan import Plan, PlannedRun, load_plan

RESULTS_FOLDER = "results"
RUN_COLUMNS = ["run_id", "n_real", "condition", "synthetic_ratio", "seed", "test_set"]
SUMMARY_METRICS = ["dsc", "nsd", "t_sen", "p_sen", "spe", "auc"]
SUMMARY_COLUMNS = [*RUN_COLUMNS, "organ", *SUMMARY_METRICS, "positive", "control"]


def _run_values(run: PlannedRun, test_set: str) -> dict[str, object]:
    return {"run_id": run.run_id, "n_real": run.n_real, "condition": run.condition,
            "synthetic_ratio": run.synthetic_ratio, "seed": run.seed, "test_set": test_set}


def finished_evaluations(plan: Plan) -> list[tuple[PlannedRun, str, Path]]:
    """(run, test set, evaluation folder) for every evaluate step the ledger records as done."""
    found = []
    for run in plan.runs:
        folder = plan.root / "runs" / run.run_id
        steps = read_status(folder / STATUS_NAME).get("steps", {})
        for test in plan.test_sets:
            step = steps.get(f"evaluate:{test.name}", {})
            out = folder / "evaluate" / test.name
            if step.get("status") == DONE and (out / "summary.json").exists():
                found.append((run, test.name, out))
    return found


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _point(summary: dict[str, Any], metric: str) -> object:
    """The point value of one metric in an organ's summary block (None when undefined)."""
    if metric in ("dsc", "nsd"):
        return summary[metric]["mean"]
    if metric == "t_sen":
        return summary["lesions"]["t_sen"]["value"]
    return summary["patients"][metric]["value"]


def _summary_rows(run: PlannedRun, test_set: str, summary_path: Path) -> list[dict[str, object]]:
    groups = json.loads(summary_path.read_text(encoding="utf-8"))["groups"]
    rows = []
    for organ, block in groups["all"].items():
        row = _run_values(run, test_set) | {"organ": organ}
        row |= {metric: _point(block, metric) for metric in SUMMARY_METRICS}
        rows.append(row | {"positive": block["positive"], "control": block["control"]})
    return rows


def collect_results(plan_dir: str | Path) -> Path:
    """Write OUT/results/per_case.csv and OUT/results/runs.csv from every finished evaluation;
    returns the per-case table's path."""
    plan = load_plan(plan_dir)
    out = plan.root / RESULTS_FOLDER
    case_columns: list[str] = []
    case_rows, summary_rows = [], []
    for run, test_set, folder in finished_evaluations(plan):
        columns, rows = _read_rows(folder / "per_case.csv")
        case_columns += [c for c in columns if c not in case_columns]
        case_rows += [_run_values(run, test_set) | row for row in rows]
        summary_rows += _summary_rows(run, test_set, folder / "summary.json")
    if not case_columns:
        from tumorscale.metrics.evaluate import PER_CASE_COLUMNS

        case_columns = list(PER_CASE_COLUMNS)  # an empty table still has its header

    def text(value: object) -> str:
        return "" if value is None else str(value)

    write_csv_atomic(out / "per_case.csv", [*RUN_COLUMNS, *case_columns], case_rows, text)
    write_csv_atomic(out / "runs.csv", SUMMARY_COLUMNS, summary_rows, text)
    return out / "per_case.csv"
