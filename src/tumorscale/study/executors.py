"""Executing a plan: every unfinished run, locally (in process, or one GPU per run) or on Dask.

local:        runs one after the other in this process (CPU, or the default GPU).
local + gpus: a queue of runs; each GPU runs one at a time in its own subprocess with
              CUDA_VISIBLE_DEVICES set (log: OUT/runs/<run_id>/log.txt).
local + processes: the same queue over N CPU-only subprocesses sharing the cores.
dask:         one task per unfinished run on a `distributed` cluster (a LocalCluster of
              single-threaded worker processes when no scheduler address is given). Runs write
              only their own status files, so workers only need the plan folder on a shared
              filesystem.

Before the runs, the data tree is preprocessed once into the plan's shared cache. After them,
OUT/ledger.csv and OUT/results/ are regenerated.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tumorscale.study.ledger import DONE, FAILED, RUNNING, RunLedger, run_states, step_names
from tumorscale.study.ledger import write_ledger as _write_ledger
from tumorscale.study.plan import Plan, load_plan
from tumorscale.study.steps import (
    RunOutcome,
    inputs_changed_since,
    prepare_study,
    run_dir,
    run_one,
)
from tumorscale.workers import PARENT_PID_VARIABLE

EXECUTORS = ("local", "dask")


class StudyProgress:
    """Progress callbacks of a study (no-ops here; the CLI draws bars)."""

    def stage(self, text: str) -> None:
        """A study-level phase begins (preprocessing, runs, results)."""

    def runs(self, done: int, total: int) -> None:
        """Runs finished (done or failed) out of the runs this call executes."""

    def step(self, run_id: str, stage: str, done: int, total: int) -> None:
        """The current run's step progress (training iterations, cases)."""


@dataclass
class StudyOutcome:
    """Every run's outcome this call (runs already done are listed as done, not rerun)."""

    plan_root: Path
    outcomes: list[RunOutcome] = field(default_factory=list)
    results: Path | None = None

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status == FAILED]

    @property
    def ok(self) -> bool:
        return not self.failed


def unfinished_runs(plan: Plan) -> list[str]:
    """Run ids whose status file does not say done (pending, interrupted or failed)."""
    states = run_states(plan.root, [r.run_id for r in plan.runs])
    return [run_id for run_id, state in states.items() if state != DONE]


def record_crash(plan: Plan, run_id: str, error: str) -> RunOutcome:
    """Mark the run's first unfinished step failed (its process died without recording)."""
    ledger = RunLedger.open(run_dir(plan, run_id), run_id,
                            step_names([t.name for t in plan.test_sets]))  # fmt: skip
    step = next((s for s, v in ledger.steps.items() if v["status"] in (RUNNING, FAILED)), None)
    step = step or next(s for s, v in ledger.steps.items() if v["status"] != DONE)
    if ledger.steps[step]["status"] != FAILED:
        ledger.mark(step, FAILED, error=error)
    return RunOutcome(run_id, FAILED, step, ledger.steps[step]["error"])


def write_ledger(plan: Plan) -> Path:
    return _write_ledger(plan.root, [r.run_id for r in plan.runs])


# ----------------------------------------------------------------------------- local


def run_local(plan: Plan, run_ids: Sequence[str], progress: StudyProgress) -> list[RunOutcome]:
    """Run one after the other in this process."""
    outcomes = []
    for done, run_id in enumerate(run_ids, start=1):
        outcome = run_one(plan.root, run_id,
                          progress=lambda s, d, t, r=run_id: progress.step(r, s, d, t))
        outcomes.append(outcome)
        write_ledger(plan)
        progress.runs(done, len(run_ids))
    return outcomes


def cpu_slots(processes: int) -> list[dict[str, str]]:
    """Environments of `processes` CPU-only run processes sharing the cores evenly (small
    networks use one thread poorly-enough that parallel runs finish sooner)."""
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    return [{"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": threads}] * processes


def gpu_slots(gpus: Sequence[str]) -> list[dict[str, str]]:
    return [{"CUDA_VISIBLE_DEVICES": gpu} for gpu in gpus]


def _start(plan: Plan, run_id: str, slot: dict[str, str]) -> subprocess.Popen:
    log = run_dir(plan, run_id) / "log.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **slot, PARENT_PID_VARIABLE: str(os.getpid())}
    command = [sys.executable, "-m", "tumorscale.study.steps", str(plan.root), run_id]
    with log.open("ab") as handle:  # the child keeps its own descriptor
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def _finished(plan: Plan, run_id: str, returncode: int) -> RunOutcome:
    state = run_states(plan.root, [run_id])[run_id]
    if state == DONE:
        return RunOutcome(run_id, DONE)
    if returncode == 0:
        returncode = -1  # exited cleanly without finishing: still a failure
    log = run_dir(plan, run_id) / "log.txt"
    return record_crash(plan, run_id, f"run process exited with code {returncode} (see {log})")


def run_in_processes(plan: Plan, run_ids: Sequence[str], slots: Sequence[dict[str, str]],
                     progress: StudyProgress) -> list[RunOutcome]:
    """A queue of runs over `slots` (one GPU, or a share of the CPU cores, each): each slot runs
    one run at a time in its own subprocess with the slot's environment."""
    queue, active, outcomes = list(run_ids), {}, []
    while queue or active:
        for slot in [i for i in range(len(slots)) if i not in active]:
            if queue:
                run_id = queue.pop(0)
                active[slot] = (run_id, _start(plan, run_id, slots[slot]))
        for slot, (run_id, process) in list(active.items()):
            if process.poll() is not None:
                del active[slot]
                outcomes.append(_finished(plan, run_id, process.returncode))
                write_ledger(plan)
                progress.runs(len(outcomes), len(run_ids))
        time.sleep(0.2)
    return outcomes


# ----------------------------------------------------------------------------- dask


def _dask_client(scheduler: str | None, n_workers: int | None):
    """A client of `scheduler`, or of a new LocalCluster (returned too, to be closed)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:  # an optional extra
        raise RuntimeError("the dask executor needs `pip install tumorscale[cluster]` "
                           "(dask[distributed])") from error  # fmt: skip
    if scheduler:
        return Client(scheduler), None
    workers = n_workers or max(1, min(4, (os.cpu_count() or 2) // 2))
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None)  # fmt: skip
    return Client(cluster), cluster


def _prepare_task(plan_root: str) -> int:
    report = prepare_study(load_plan(plan_root))
    return len(report.done) + len(report.skipped)


def _run_task(plan_root: str, run_id: str) -> RunOutcome:
    return run_one(plan_root, run_id)


def run_dask(plan: Plan, run_ids: Sequence[str], progress: StudyProgress,
             scheduler: str | None = None, n_workers: int | None = None,
             resources: dict[str, float] | None = None) -> list[RunOutcome]:
    """One task per run on a Dask cluster; a task that dies is recorded as a failed run."""
    from distributed import as_completed

    client, cluster = _dask_client(scheduler, n_workers)
    tag = uuid.uuid4().hex[:8]  # a rerun must not reuse the keys of an earlier call
    try:
        futures = {
            client.submit(_run_task, str(plan.root), run_id, key=f"study-{run_id}-{tag}",
                          pure=False, resources=resources): run_id
            for run_id in run_ids
        }  # fmt: skip
        outcomes = []
        for future in as_completed(futures):
            run_id = futures[future]
            try:
                outcomes.append(future.result())
            except Exception as error:  # a worker died or the task crashed
                outcomes.append(record_crash(plan, run_id, f"{type(error).__name__}: {error}"))
            write_ledger(plan)
            progress.runs(len(outcomes), len(run_ids))
        return outcomes
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _prepare_on_dask(plan: Plan, scheduler: str | None) -> None:
    """Preprocess on a worker (not the login node) when the cluster is remote."""
    if not scheduler:
        prepare_study(plan)
        return
    client, _ = _dask_client(scheduler, None)
    try:
        client.submit(_prepare_task, str(plan.root), pure=False).result()
    finally:
        client.close()


# ----------------------------------------------------------------------------- study


def execute_study(plan_dir: str | Path, executor: str = "local", scheduler: str | None = None,
                  gpus: Sequence[str] = (), n_workers: int | None = None,
                  progress: StudyProgress | None = None, processes: int = 1) -> StudyOutcome:
    """Run every unfinished run of the plan in `plan_dir`, then rebuild the ledger and results.

    executor: 'local' (with `gpus`: one subprocess per GPU at a time; else with `processes` > 1:
    that many CPU-only subprocesses) or 'dask' (`scheduler` address, or a LocalCluster of
    `n_workers` processes)."""
    from tumorscale.study.results import collect_results

    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    progress = progress or StudyProgress()
    plan = load_plan(plan_dir)
    progress.stage("preprocessing the data into the shared cache")  # skips unchanged cases
    if executor == "dask":
        _prepare_on_dask(plan, scheduler)
    else:
        prepare_study(plan)
    todo = unfinished_runs(plan)
    changed = [r.run_id for r in plan.runs if r.run_id not in todo
               and inputs_changed_since(plan, r.run_id)]  # fmt: skip
    if changed:
        progress.stage(f"{len(changed)} finished run(s) whose inputs changed, run again: "
                       f"{', '.join(changed[:5])}")  # fmt: skip
    todo = [r.run_id for r in plan.runs if r.run_id in {*todo, *changed}]
    done_before = [RunOutcome(r.run_id, DONE) for r in plan.runs if r.run_id not in todo]
    if todo:
        progress.stage(f"{len(todo)} of {len(plan.runs)} runs to do")
        progress.runs(0, len(todo))
    if executor == "dask" and todo:
        outcomes = run_dask(plan, todo, progress, scheduler, n_workers)
    elif gpus and todo:
        outcomes = run_in_processes(plan, todo, gpu_slots(gpus), progress)
    elif processes > 1 and todo:
        outcomes = run_in_processes(plan, todo, cpu_slots(processes), progress)
    else:
        outcomes = run_local(plan, todo, progress)
    write_ledger(plan)
    progress.stage("collecting results")
    return StudyOutcome(plan.root, done_before + outcomes, collect_results(plan.root))
