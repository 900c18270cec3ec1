"""Terminal output for the CLI: progress bars on stderr, job reports, tables, problem lists."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tumorscale.atlas import DatasetSummary, Problem, Severity
from tumorscale.jobs import JobReport

# Progress and messages go to stderr so that --json output on stdout stays machine-readable.
# No markup, emoji codes or highlighting: user text (paths, case ids, reasons) is printed as
# written; a path holding "[old]", ":cd:" or "[/" must neither vanish nor crash. Styles come
# from `tagged`.
stderr = Console(stderr=True, markup=False, emoji=False, highlight=False)
stdout = Console(markup=False, emoji=False, highlight=False)


def tagged(tag: str, style: str, text: object = "") -> Text:
    """`tag: text` with only the tag styled; `text` is never parsed as markup."""
    return Text.assemble((tag, style), f": {text}" if text != "" else "")


def styled(text: object, style: str) -> Text:
    """`text` in `style`, never parsed as markup."""
    return Text(str(text), style=style)


@contextlib.contextmanager
def progress_bar(description: str, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A `progress(done, total)` callback drawing a bar on stderr (a no-op when quiet)."""
    if quiet:
        yield lambda done, total: None
        return
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr, transient=False) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


SHOWN_EXCLUDED = 10  # excluded cases listed one by one; the rest are counted


def changed_inputs(case_ids: list[str]) -> str:
    """The line that says which finished cases were redone because their inputs changed."""
    more = f" and {len(case_ids) - 5} more" if len(case_ids) > 5 else ""
    shown = ", ".join(case_ids[:5]) + more
    return f"{len(case_ids)} case(s) whose input changed since the last run: {shown}"


def print_report(report: JobReport, summary: str) -> None:
    """Print a batch job's report, the same way for every job: `summary` (what was made, where)
    on stdout; on stderr the cases left out on purpose, the cases redone because their inputs
    changed, warnings, and every failed case with its reason (which names the file)."""
    stdout.print(summary, soft_wrap=True)
    for case_id, reason in report.excluded[:SHOWN_EXCLUDED]:
        stderr.print(tagged("excluded", "yellow", f"{case_id}: {reason}"), soft_wrap=True)
    if len(report.excluded) > SHOWN_EXCLUDED:
        more = len(report.excluded) - SHOWN_EXCLUDED
        stderr.print(tagged("excluded", "yellow", f"{more} more case(s)"), soft_wrap=True)
    if report.changed:
        stderr.print(tagged("redone", "yellow", changed_inputs(report.changed)), soft_wrap=True)
    for warning in report.warnings:
        stderr.print(tagged("warning", "yellow", warning), soft_wrap=True)
    for case_id, reason in report.failed:
        stderr.print(tagged("failed", "red", f"{case_id}: {reason}"), soft_wrap=True)


def summary_table(summary: DatasetSummary) -> Table:
    title = (
        f"{summary.root}  ({summary.layout} layout): {summary.cases} cases, "
        f"{summary.cases_with_any_tumor} with at least one tumor"
    )
    compact = {"box": box.SIMPLE_HEAD, "pad_edge": False, "collapse_padding": True}
    table = Table(title=title, title_justify="left", **compact)
    table.add_column("organ", no_wrap=True, min_width=9)
    headers = (
        "cases\nw/ organ",
        "tumor\npositive",
        "\ncontrols",
        "\nunknown",
        "tumor\ninstances",
        "<20\nmm",
        "20-50\nmm",
        ">50\nmm",
    )
    for header in headers:
        width = max(len(line) for line in header.split("\n"))
        table.add_column(header, justify="right", no_wrap=True, min_width=width)
    for row in [*summary.organs, summary.total]:
        table.add_row(
            "total" if row.organ == "all" else row.organ,
            str(row.cases_with_organ),
            str(row.positive),
            str(row.control),
            str(row.unknown),
            str(row.instances),
            *(str(count) for count in row.instances_by_size.values()),
            end_section=row is summary.organs[-1],
        )
    return table


def print_problems(problems: list[Problem], console: Console = stderr) -> None:
    for problem in problems:
        style = "red" if problem.severity == Severity.ERROR else "yellow"
        console.print(
            tagged(problem.severity.value, style, f"{problem.path}: {problem.reason}"),
            soft_wrap=True,
        )


def _pct(value: object) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}"  # type: ignore[arg-type]


def evaluation_table(group: str, organs: dict[str, dict]) -> Table:
    """One evaluation group as a compact table (values in %); the intervals are in summary.md."""
    table = Table(title=f"evaluation: {group} (%, intervals in summary.md)")
    for column in ("organ", "cases +/ctrl", "DSC", "NSD", "T-Sen", "P-Sen", "Spe", "AUC"):
        table.add_column(column, justify="left" if column == "organ" else "right")
    for organ, s in organs.items():
        lesions, patients = s["lesions"], s["patients"]
        table.add_row(
            organ,
            f"{s['positive']}/{s['control']}",
            _pct(s["dsc"]["mean"]),
            _pct(s["nsd"]["mean"]),
            _pct(lesions["t_sen"]["value"]),
            _pct(patients["p_sen"]["value"]),
            _pct(patients["spe"]["value"]),
            _pct(patients["auc"]["value"]),
        )
    return table


@contextlib.contextmanager
def training_bar(quiet: bool = False) -> Iterator[Callable[[object], None]]:
    """A callback taking `train.Progress` that shows iterations, loss and samples/s on stderr."""
    if quiet:
        yield lambda progress: None
        return
    columns = (
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  {task.fields[rate]} samples/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr, transient=False) as bar:
        task = bar.add_task("training", total=None, loss="–", rate="–")

        def update(progress) -> None:
            bar.update(
                task,
                completed=progress.iteration,
                total=progress.total,
                loss=f"{progress.loss:.4f}",
                rate=f"{progress.samples_per_s:.2f}",
            )

        yield update
