"""What every `tumorscale` command shares: option types, the error exit, a batch job's end."""

from __future__ import annotations

from typing import Annotated

import typer

from tumorscale.cli.output import print_report, stderr, tagged
from tumorscale.errors import TumorscaleError
from tumorscale.jobs import JobReport
from tumorscale.organs import TUMOR_ORGANS, get_organ

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
Workers = Annotated[
    int, typer.Option(help="Parallel worker processes (default: CPU count, at most 8).")
]
Organs = Annotated[
    list[str] | None,
    typer.Option(
        "--organ", help=f"Restrict to these organs ({', '.join(TUMOR_ORGANS)}); repeatable."
    ),
]


def fail(error: TumorscaleError | ValueError) -> typer.Exit:
    """Print `error: ...` (naming the file) on stderr; the exit (code 2) to raise."""
    stderr.print(tagged("error", "red", error), soft_wrap=True)
    return typer.Exit(code=2)


def finish_job(report: JobReport, summary: str) -> None:
    """Print a batch job's report (`print_report`); exit with code 1 when a case failed."""
    print_report(report, summary)
    if not report.ok:
        raise typer.Exit(code=1)


def selected_organs(organs: list[str] | None) -> list[str]:
    return [get_organ(name).name for name in organs] if organs else list(TUMOR_ORGANS)
