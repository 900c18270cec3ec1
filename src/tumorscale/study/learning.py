"""Did each run of a study learn? Its training-loss curve and a `learned` flag.

A run learned when its logged training loss fell (`train.loop.loss_has_fallen` over the losses
in `runs/<id>/train/log.csv`) and, where `validation.csv` exists beside it, its final validation
DSC (the mean of the `dsc/*` metrics at the last validated iteration) is above 0. A missing or
unreadable log makes the flag unknown (None), never an error: `problem` says why.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tumorscale.train.loop import loss_has_fallen

TRAIN_FOLDER = "train"
LOG_NAME = "log.csv"
VALIDATION_NAME = "validation.csv"
LEARNED_RULE = (
    "a run learned when the mean training loss of the last tenth of its log is below 0.95× "
    "that of the first tenth and, where validation cases exist, its final validation DSC is "
    "above 0"
)
_READ_ERRORS = (OSError, csv.Error, UnicodeDecodeError, ValueError, KeyError, TypeError)


@dataclass(frozen=True)
class RunLearning:
    """One run's logged training loss (iterations ascending) and final validation DSC."""

    run_id: str
    iterations: tuple[int, ...] = ()
    losses: tuple[float, ...] = ()
    validation_dsc: float | None = None
    problem: str = ""  # why the log could not be read ('' when it was)

    @property
    def loss_fell(self) -> bool | None:
        """`loss_has_fallen` over the logged losses; None with fewer than 2 of them."""
        return loss_has_fallen(list(self.losses)) if len(self.losses) >= 2 else None

    @property
    def first_tenth_loss(self) -> float | None:
        return self._tenth_mean(first=True)

    @property
    def last_tenth_loss(self) -> float | None:
        return self._tenth_mean(first=False)

    def _tenth_mean(self, first: bool) -> float | None:
        # For display only: the flag itself comes from loss_has_fallen.
        if not self.losses:
            return None
        tenth = max(1, len(self.losses) // 10)
        part = self.losses[:tenth] if first else self.losses[-tenth:]
        return float(np.mean(part))

    @property
    def validation_failed(self) -> bool:
        return self.validation_dsc is not None and not self.validation_dsc > 0

    @property
    def learned(self) -> bool | None:
        """True: the loss fell (and validation DSC > 0 where measured); False: either failed;
        None: not known (no readable log)."""
        if self.loss_fell is False or self.validation_failed:
            return False
        return None if self.loss_fell is None else True


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _losses(path: Path) -> tuple[tuple[int, ...], tuple[float, ...]]:
    rows = sorted(_read_csv(path), key=lambda row: int(float(row["iteration"])))
    iterations = tuple(int(float(row["iteration"])) for row in rows)
    return iterations, tuple(float(row["loss"]) for row in rows)


def _final_validation_dsc(path: Path) -> float | None:
    """Mean of the `dsc*` metrics at the last iteration that has any (None: none logged)."""
    scores: dict[int, list[float]] = {}
    for row in _read_csv(path):
        if str(row.get("metric", "")).startswith("dsc"):
            value = float(row["value"])
            scores.setdefault(int(float(row["iteration"])), []).append(value)
    if not scores:
        return None
    return float(np.mean(scores[max(scores)]))  # NaN (a broken validation) counts as failed


def read_run_learning(train_dir: str | Path, run_id: str = "") -> RunLearning:
    """A run's learning record from its training folder (log.csv, validation.csv)."""
    train_dir = Path(train_dir)
    run_id = run_id or train_dir.parent.name
    log = train_dir / LOG_NAME
    if not log.is_file():
        return RunLearning(run_id, problem=f"{LOG_NAME} not found")
    try:
        iterations, losses = _losses(log)
    except _READ_ERRORS as error:
        return RunLearning(run_id, problem=f"{LOG_NAME} unreadable ({error!r})")
    validation, problem = None, ""
    if (train_dir / VALIDATION_NAME).is_file():
        try:
            validation = _final_validation_dsc(train_dir / VALIDATION_NAME)
        except _READ_ERRORS as error:
            problem = f"{VALIDATION_NAME} unreadable ({error!r})"
    return RunLearning(run_id, iterations, losses, validation, problem)


def read_study_learning(plan_dir: str | Path, run_ids: Iterable[str]) -> dict[str, RunLearning]:
    """run id → learning record, from `plan_dir/runs/<id>/train/`."""
    runs = Path(plan_dir) / "runs"
    return {
        run_id: read_run_learning(runs / run_id / TRAIN_FOLDER, run_id)
        for run_id in dict.fromkeys(run_ids)
        if run_id
    }


def learned_text(learned: bool | None) -> str:
    return {True: "yes", False: "no"}.get(learned, "unknown")  # type: ignore[call-overload]
