"""`tumorscale study plan|run`: scaling-study commands (a Typer sub-app that cli.py registers)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tumorscale.cli.output import stderr, stdout, styled, tagged
from tumorscale.errors import TumorscaleError

study_app = typer.Typer(help="Scaling studies: plan, run (local or Dask), fit, report.",
                        no_args_is_help=True)  # fmt: skip

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


def _fail(error: Exception) -> typer.Exit:
    stderr.print(tagged("error", "red", error), soft_wrap=True)
    return typer.Exit(code=2)


@study_app.command("plan")
def study_plan(
    study: Annotated[Path, typer.Argument(help="Study description (YAML).")],
    out: Annotated[Path, typer.Argument(help="Study folder to write the plan into.")],
    force: Annotated[bool, typer.Option(help="Replan a folder that already has a plan.")] = False,
) -> None:
    """Write the run table, nested real subsets and test sets of a study into OUT."""
    from tumorscale.study import load_study, make_plan
    from tumorscale.study.plan import PLAN_NAME

    if (out / PLAN_NAME).exists() and not force:
        raise _fail(ValueError(f"{out / PLAN_NAME}: already planned (edit it, or --force)"))
    try:
        plan = make_plan(load_study(study), out)
    except (TumorscaleError, ValueError) as error:
        raise _fail(error) from error
    tests = ", ".join(f"{t.name} ({len(_ids(plan, t))} cases)" for t in plan.test_sets)
    stdout.print(f"{len(plan.runs)} runs planned in {plan.root}; test sets: {tests}",
                 highlight=False, soft_wrap=True, emoji=False)  # fmt: skip


def _ids(plan, test) -> tuple[str, ...]:
    from tumorscale.study.plan import read_ids

    return read_ids(plan.root / test.cases_file)


class _BarProgress:
    """Study progress on stderr: runs done / total, and the current run's current step."""

    def __init__(self, bars: Progress) -> None:
        self.bars = bars
        self.runs_task = bars.add_task("runs", total=None)
        self.step_task = bars.add_task("", total=None, visible=False)

    def stage(self, text: str) -> None:
        self.bars.console.print(styled(text, "dim"))

    def runs(self, done: int, total: int) -> None:
        self.bars.update(self.runs_task, completed=done, total=total)

    def step(self, run_id: str, stage: str, done: int, total: int) -> None:
        self.bars.update(self.step_task, description=f"{run_id} {stage}", completed=done,
                         total=total or None, visible=True)  # fmt: skip


@contextlib.contextmanager
def study_progress(quiet: bool) -> Iterator[object | None]:
    if quiet:
        yield None
        return
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=stderr, transient=False) as bars:
        yield _BarProgress(bars)


def _gpus(text: str | None) -> list[str]:
    return [g.strip() for g in text.split(",") if g.strip()] if text else []


@study_app.command("run")
def study_run(
    out: Annotated[Path, typer.Argument(help="Study folder written by `study plan`.")],
    executor: Annotated[str, typer.Option(help="'local' or 'dask'.")] = "local",
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address (default: a LocalCluster).")
    ] = None,
    gpus: Annotated[
        str | None, typer.Option(help="Local: GPUs to spread runs over, e.g. 0,1 (one run each).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Dask LocalCluster worker processes.")
    ] = None,
    processes: Annotated[
        int, typer.Option(min=1, help="Local, no --gpus: CPU runs at once, sharing the cores.")
    ] = 1,
    quiet: Quiet = False,
) -> None:
    """Train, predict and evaluate every unfinished run; rerun to resume after any crash."""
    from tumorscale.study import execute_study

    if executor not in ("local", "dask"):
        raise _fail(ValueError(f"--executor must be 'local' or 'dask', got {executor!r}"))
    try:
        with study_progress(quiet) as progress:
            outcome = execute_study(
                out, executor, scheduler, _gpus(gpus), workers, progress, processes
            )
    except (TumorscaleError, ValueError, RuntimeError) as error:
        raise _fail(error) from error
    done = len(outcome.outcomes) - len(outcome.failed)
    stdout.print(f"{done} of {len(outcome.outcomes)} runs done; results: {outcome.results}",
                 highlight=False, soft_wrap=True, emoji=False)  # fmt: skip
    for failed in outcome.failed:
        stderr.print(tagged("failed", "red", f"{failed.run_id} at {failed.step}: {failed.error}"),
                     soft_wrap=True)  # fmt: skip
    if outcome.failed:
        raise typer.Exit(code=1)


@study_app.command("fit")
def study_fit(
    out: Annotated[Path, typer.Argument(help="Study folder with results (after `study run`).")],
    bootstrap: Annotated[int, typer.Option(min=50, help="Bootstrap resamples.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
) -> None:
    """Fit metric(n) = a − b·n^(−c) per metric, test set and condition, with bootstrap intervals.

    Writes results/fit.json and results/fit.md: plateau, real scans to reach 95 % and 99 % of it,
    real scans saved by synthetic data, saturation; extrapolated numbers are marked as such.
    """
    from tumorscale.study import collect_results
    from tumorscale.study.fit import fit_study_folder

    try:
        if not (out / "results" / "per_case.csv").exists():
            collect_results(out)
        json_path, md_path = fit_study_folder(out, n_bootstrap=bootstrap, seed=seed)
    except (TumorscaleError, ValueError) as error:
        raise _fail(error) from error
    stdout.print(f"fits: {json_path}\nsummary: {md_path}", highlight=False, soft_wrap=True)


@study_app.command("report")
def study_report(
    out: Annotated[Path, typer.Argument(help="Study folder with fits (after `study fit`).")],
) -> None:
    """Write report/report.html (self-contained, opens offline), report.md and the figures."""
    from tumorscale.study.report import report_study_folder

    try:
        paths = report_study_folder(out)
    except (TumorscaleError, ValueError) as error:
        raise _fail(error) from error
    stdout.print(f"report: {paths.html}", highlight=False, soft_wrap=True)
