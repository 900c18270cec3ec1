"""The resumable-job core every batch command shares: markers, failures, progress, one report.

A batch job turns cases (source scans, phantoms to generate, CTs to predict) into outputs:

- A case is finished when its *completion marker* exists: a small JSON written atomically, last,
  next to the case's outputs. It records what the case was made from (`inputs`: a fingerprint of
  the input files, see `tumorscale.io.input_fingerprint`), with which `settings`, and which
  output files it wrote (path relative to the marker, size, and a sha256 when asked). A rerun
  skips the case only when the marker matches the current inputs and settings and every output
  is still there unchanged; a marker from an older format, or unreadable, means "redo cleanly".
- Outputs are written atomically (`tumorscale.io.atomic_path`), so a crash never leaves a file
  that looks complete; the marker is removed before a case is redone.
- A case that fails is recorded as (case id, reason naming the file) and the job goes on.
- Progress is one callback for every job: `progress(done, total)`, counting cases finished,
  skipped and failed.
- Every job returns one `JobReport`.

Only `tumorscale.io`, `tumorscale.errors` and `tumorscale.workers` are imported here: the job core
sits at the bottom layer, below every package that runs jobs.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tumorscale.errors import TumorscaleError
from tumorscale.io import write_text_atomic
from tumorscale.workers import process_pool

Progress = Callable[[int, int], None]
"""`progress(done, total)`: cases finished, skipped or failed so far, out of `total`."""

MARKER_KEY = "job"
MARKER_VERSION = 2

Item = TypeVar("Item")


# ----------------------------------------------------------------------------- the report


@dataclass
class JobReport:
    """What a batch job did.

    out: the folder the job wrote into; done: cases made by this run; skipped: cases already
    finished from the same inputs and settings; changed: finished cases whose inputs changed
    since, so made again (also in `done` once made); failed: (case id, reason naming the file);
    excluded: (case id, reason) for cases left out on purpose; warnings: messages for the user;
    elapsed_s: wall time of the run; details: what one job has beyond these (e.g. synthesis's
    tumor count, prediction's `other_settings`, the export's `labels`).
    """

    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def complete(self) -> list[str]:
        """Every case finished after this run: made now or skipped (sorted)."""
        return sorted({*self.done, *self.skipped})

    def record(self, outcome: Outcome) -> None:
        """Count one case's outcome as done or failed."""
        if outcome.error is None:
            self.done.append(outcome.case_id)
        else:
            self.failed.append((outcome.case_id, outcome.error))

    def finish(self, sort: bool = True) -> JobReport:
        """Stop the clock; with `sort`, list every id in order (else in the order of events)."""
        self.elapsed_s = time.monotonic() - self.started
        if sort:
            for items in (self.done, self.skipped, self.changed, self.failed, self.excluded):
                items.sort()
        return self


# ----------------------------------------------------------------------------- progress


class Tally:
    """Counts cases for a `Progress` callback (which may be None)."""

    def __init__(self, total: int, progress: Progress | None = None) -> None:
        self.total, self.done, self.progress = int(total), 0, progress

    def start(self, done: int = 0) -> None:
        """Report the cases counted before any work (skipped, failed while planning), and so the
        total, before the first case runs."""
        self.done = int(done)
        if self.progress is not None:
            self.progress(self.done, self.total)

    def tick(self, count: int = 1) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(self.done, self.total)


# ----------------------------------------------------------------------------- failures


def describe_error(error: BaseException, where: str | Path | None = None) -> str:
    """A failure message that names a file: a tumorscale error's own message (it names one),
    else `where: ErrorType: message`."""
    if isinstance(error, TumorscaleError):
        return str(error)
    text = f"{type(error).__name__}: {error}"
    return f"{where}: {text}" if where is not None else text


@dataclass(frozen=True)
class Outcome:
    """One case's result: `error` (a reason naming the file) is None when it succeeded."""

    case_id: str
    error: str | None = None
    value: Any = None


def attempt(
    case_id: str,
    where: str | Path | None,
    work: Callable[..., Any],
    *args: Any,
    errors: tuple[type[BaseException], ...] = (Exception,),
) -> Outcome:
    """Run `work(*args)` for one case; an error of `errors` becomes a failed `Outcome` (anything
    else propagates: it is a bug, not a bad case)."""
    try:
        return Outcome(case_id, None, work(*args))
    except errors as error:  # a batch records a broken case and goes on with the others
        return Outcome(case_id, describe_error(error, where))


def _collect(work: Callable[[Any], Iterable[Outcome]], item: Any) -> list[Outcome]:
    return list(work(item))


def run_outcomes(
    items: Sequence[Item],
    work: Callable[[Item], Iterable[Outcome]],
    workers: int = 1,
    pool: Callable[[int], Executor] | None = None,
    ordered: bool = False,
) -> Iterator[Outcome]:
    """The outcomes of `work(item)` for every item: in this process, one after the other, when
    `workers` <= 1 (or one item), else in a process pool (`pool(n)`, default
    `workers.process_pool`; `work` must then be a module-level function). `work` yields one
    `Outcome` per case: one item may hold several cases (a source read once for several
    outputs). `ordered`: in the order of `items`, else as they finish."""
    items = list(items)
    if workers <= 1 or len(items) < 2:
        for item in items:
            yield from work(item)
        return
    count = min(int(workers), len(items))
    with (pool or process_pool)(count) as executor:
        futures = [executor.submit(_collect, work, item) for item in items]
        for future in futures if ordered else as_completed(futures):
            yield from future.result()


def run_cases(
    items: Sequence[Item],
    work: Callable[[Item], Iterable[Outcome]],
    report: JobReport,
    tally: Tally,
    workers: int = 1,
    pool: Callable[[int], Executor] | None = None,
    ordered: bool = False,
) -> list[Outcome]:
    """`run_outcomes`, recording each outcome in `report` and counting it in `tally`."""
    outcomes = []
    for outcome in run_outcomes(items, work, workers, pool, ordered):
        report.record(outcome)
        tally.tick()
        outcomes.append(outcome)
    return outcomes


# ----------------------------------------------------------------------------- markers


class State(enum.Enum):
    """A case's state on a rerun."""

    COMPLETE = "complete"  # finished from the same inputs and settings: skip it
    CHANGED = "changed"  # finished with the same settings from inputs that changed since: redo
    TODO = "todo"  # not finished, other settings, or an old/unreadable marker: (re)do


def _plain(value: Any) -> Any:
    """`value` as JSON gives it back (tuples -> lists, Paths -> str), for comparisons."""
    return json.loads(json.dumps(value, default=str))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _output_entry(base: Path, path: Path, hashed: bool) -> list[object]:
    name = Path(os.path.relpath(path, base)).as_posix()
    return [name, path.stat().st_size, _sha256(path) if hashed else None]


def write_marker(
    path: str | Path,
    inputs: Any,
    settings: Any,
    outputs: Iterable[Path] = (),
    *,
    hashed: bool = False,
    payload: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a case's completion marker atomically (call it last); returns what it wrote.

    inputs: what the case was made from (an input fingerprint, a digest); settings: the
    result-changing options (JSON-able); outputs: the paths of the files the case wrote (as any
    path: absolute, or relative to the current folder), recorded relative to the marker's folder
    with their size and, with `hashed`, their sha256 (so that
    the marker is the same for the same content, and a file edited in place is noticed);
    payload: the job's own record, stored beside (top-level keys other than `job`).
    """
    path = Path(path)
    base = path.parent
    entries = [_output_entry(base, Path(output), hashed) for output in outputs]
    data = dict(payload or {})
    data[MARKER_KEY] = _plain(
        {"version": MARKER_VERSION, "inputs": inputs, "settings": settings, "outputs": entries}
    )
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n")
    return data


def read_marker(path: str | Path) -> dict[str, Any] | None:
    """A marker written by `write_marker`, or None when it is missing, unreadable, or of an
    older format (a case with such a marker is done again)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    job = data.get(MARKER_KEY)
    if not isinstance(job, dict) or job.get("version") != MARKER_VERSION:
        return None
    if not isinstance(job.get("outputs"), list):
        return None
    return data


def outputs_intact(path: str | Path, marker: Mapping[str, Any]) -> bool:
    """Whether every output the marker lists is there with its recorded size (and hash)."""
    base = Path(path).parent
    try:
        for name, size, digest in marker[MARKER_KEY]["outputs"]:
            output = base / name
            if output.stat().st_size != size or (digest is not None and _sha256(output) != digest):
                return False
    except (OSError, ValueError, TypeError):
        return False
    return True


def marker_state(path: str | Path, inputs: Any, settings: Any) -> State:
    """What a rerun does with the case whose marker is at `path` (see `State`)."""
    marker = read_marker(path)
    if marker is None:
        return State.TODO
    job = marker[MARKER_KEY]
    if job.get("settings") != _plain(settings):
        return State.TODO
    if job.get("inputs") != _plain(inputs):
        return State.CHANGED
    return State.COMPLETE if outputs_intact(path, marker) else State.TODO


def completed_marker(path: str | Path, inputs: Any, settings: Any) -> dict[str, Any] | None:
    """The marker at `path` when its case is complete for `inputs` and `settings`, else None."""
    if marker_state(path, inputs, settings) is not State.COMPLETE:
        return None
    return read_marker(path)


def clear_marker(path: str | Path) -> None:
    """Remove a case's marker before it is made again: until the new one lands, a crash
    mid-case never looks finished."""
    Path(path).unlink(missing_ok=True)


__all__ = [
    "MARKER_KEY",
    "MARKER_VERSION",
    "JobReport",
    "Outcome",
    "Progress",
    "State",
    "Tally",
    "attempt",
    "clear_marker",
    "completed_marker",
    "describe_error",
    "marker_state",
    "outputs_intact",
    "read_marker",
    "run_cases",
    "run_outcomes",
    "write_marker",
]
