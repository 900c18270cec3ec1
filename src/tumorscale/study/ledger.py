"""The study ledger: one status file per run, and a study-level CSV regenerated from them.

OUT/runs/<run_id>/status.json holds every step of the run (train, predict:<test set>,
evaluate:<test set>) with its status (pending, running, done, failed), start and end time,
seconds, outputs and error. Each run writes only its own file, atomically, so runs on different
Dask workers sharing a filesystem never write the same file. OUT/ledger.csv is a view of all of
them, rewritten by the process that drives the study.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tumorscale.io import write_csv_atomic, write_text_atomic

STATUS_NAME = "status.json"
LEDGER_NAME = "ledger.csv"
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
LEDGER_COLUMNS = ["run_id", "step", "status", "start", "end", "seconds", "error"]


def step_names(test_sets: Sequence[str]) -> list[str]:
    """The steps of a run, in order."""
    return ["train", *(f"predict:{t}" for t in test_sets), *(f"evaluate:{t}" for t in test_sets)]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _blank(step: str) -> dict[str, Any]:
    return {"step": step, "status": PENDING, "start": None, "end": None, "seconds": None,
            "outputs": {}, "error": None}  # fmt: skip


@dataclass
class RunLedger:
    """The status file of one run; every change is written at once (atomically)."""

    path: Path
    run_id: str
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, run_dir: Path, run_id: str, steps: Sequence[str]) -> RunLedger:
        """Read the run's status file (or start one) and make sure it lists `steps`."""
        path = Path(run_dir) / STATUS_NAME
        recorded = read_status(path).get("steps", {})
        ledger = cls(path, run_id, {s: recorded.get(s) or _blank(s) for s in steps})
        ledger.save()
        return ledger

    @property
    def status(self) -> str:
        return run_status(self.steps.values())

    def save(self) -> None:
        record = {"run_id": self.run_id, "status": self.status, "updated": _now(),
                  "steps": self.steps}  # fmt: skip
        write_text_atomic(self.path, json.dumps(record, indent=2) + "\n")

    def is_done(self, step: str) -> bool:
        return self.steps[step]["status"] == DONE

    def mark(self, step: str, status: str, **values: Any) -> None:
        self.steps[step].update(status=status, **values)
        self.save()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        """Record a step: running, then done with the outputs the body puts in the yielded
        dict, or failed with the error (re-raised so the run stops there)."""
        start, outputs = time.perf_counter(), {}
        self.mark(name, RUNNING, start=_now(), end=None, seconds=None, error=None, outputs={})
        try:
            yield outputs
        except BaseException as error:
            seconds = round(time.perf_counter() - start, 3)
            text = f"{type(error).__name__}: {error}"
            self.mark(name, FAILED, end=_now(), seconds=seconds, error=text, outputs=outputs)
            raise
        self.mark(name, DONE, end=_now(), seconds=round(time.perf_counter() - start, 3),
                  outputs=outputs)  # fmt: skip


def run_status(steps: Any) -> str:
    """failed if a step failed, done if all are done, running if any started, else pending."""
    states = [s["status"] for s in steps]
    if FAILED in states:
        return FAILED
    if states and all(s == DONE for s in states):
        return DONE
    return RUNNING if any(s != PENDING for s in states) else PENDING


def read_status(path: Path) -> dict[str, Any]:
    """A run's status record, or {} when absent or unreadable (a run never started)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def run_states(plan_root: Path, run_ids: Sequence[str]) -> dict[str, str]:
    """run id → overall status from its status file (pending when it has none)."""
    states = {}
    for run_id in run_ids:
        steps = read_status(plan_root / "runs" / run_id / STATUS_NAME).get("steps", {})
        states[run_id] = run_status(steps.values()) if steps else PENDING
    return states


def write_ledger(plan_root: Path, run_ids: Sequence[str]) -> Path:
    """Regenerate OUT/ledger.csv (one row per run × step) from the runs' status files."""
    rows = []
    for run_id in run_ids:
        steps = read_status(plan_root / "runs" / run_id / STATUS_NAME).get("steps", {})
        for step in steps.values():
            rows.append({"run_id": run_id, **{k: step.get(k) for k in LEDGER_COLUMNS[1:]}})
        if not steps:
            rows.append({"run_id": run_id, "step": "", "status": PENDING})
    path = plan_root / LEDGER_NAME
    write_csv_atomic(path, LEDGER_COLUMNS, rows, lambda v: "" if v is None else str(v))
    return path
