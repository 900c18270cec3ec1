"""The `tumorscale` command. Thin: parses arguments, calls the library, prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tumorscale import atlas
from tumorscale.cli_output import print_problems, progress_bar, stderr, stdout, summary_table
from tumorscale.errors import TumorscaleError
from tumorscale.organs import TUMOR_ORGANS, get_organ

app = typer.Typer(
    help="Scale CT tumor segmentation with real and synthetic data (AbdomenAtlas 2.0).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dataset_app = typer.Typer(
    help="Inspect, validate and fetch AbdomenAtlas 2.0 datasets.", no_args_is_help=True
)
app.add_typer(dataset_app, name="dataset")

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


def _fail(error: TumorscaleError | ValueError) -> typer.Exit:
    stderr.print(f"[red]error[/]: {error}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def _selected_organs(organs: list[str] | None) -> list[str]:
    return [get_organ(name).name for name in organs] if organs else list(TUMOR_ORGANS)


def dataset_summary(
    path: Path, organs: list[str], workers: int | None, quiet: bool
) -> atlas.DatasetSummary:
    """Index a dataset, measure its lesions (cached) and summarize it."""
    with progress_bar("indexing", quiet) as progress:
        index = atlas.index_dataset(path, progress=progress)
    with progress_bar("measuring tumors", quiet) as progress:
        stats = atlas.dataset_lesion_stats(index.cases, organs, workers=workers, progress=progress)
    return atlas.summarize(index, stats, organs)


@dataset_app.command("info")
def dataset_info(
    path: Annotated[Path, typer.Argument(help="AbdomenAtlas 2.0 folder (either layout).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")] = False,
    organ: Organs = None,
    workers: Workers = 0,
    quiet: Quiet = False,
) -> None:
    """Per-organ table of cases, tumor status and tumor instances by size.

    Columns: cases with the organ, tumor-positive, controls (lesion file present and empty),
    unknown (no lesion file), tumor instances (26-connected) and instances by equivalent diameter
    (<20, 20-50, >50 mm), plus totals. Tumor measurements are cached outside the dataset.
    """
    try:
        summary = dataset_summary(path, _selected_organs(organ), workers or None, quiet or as_json)
    except (TumorscaleError, ValueError) as error:
        raise _fail(error) from error
    if as_json:
        print(json.dumps(summary.to_json(), indent=2))
        return
    stdout.print(summary_table(summary))
    if summary.problems:
        stderr.print(f"{len(summary.problems)} problem(s); run `tumorscale dataset check` for all:")
        print_problems(summary.problems)


@dataset_app.command("check")
def dataset_check(
    path: Annotated[Path, typer.Argument(help="AbdomenAtlas 2.0 folder (either layout).")],
    strict: Annotated[
        bool, typer.Option(help="Also fail on warnings (unknown file names).")
    ] = False,
    workers: Workers = 0,
    quiet: Quiet = False,
) -> None:
    """Validate every file and list every problem with its path.

    Checks: readable (not truncated), 3-D, no NaN/Inf, sane header, masks binary and on the CT's
    grid. Unknown file names are warnings. Exit 1 if any error (or warning with --strict), else 0.
    """
    try:
        with progress_bar("indexing", quiet) as progress:
            index = atlas.index_dataset(path, progress=progress)
        with progress_bar("checking files", quiet) as progress:
            problems = atlas.check_dataset(index, workers=workers or None, progress=progress)
    except (TumorscaleError, ValueError) as error:
        raise _fail(error) from error
    print_problems(problems, stdout)
    errors = sum(problem.severity == atlas.Severity.ERROR for problem in problems)
    warnings = len(problems) - errors
    stdout.print(f"checked {len(index.cases)} cases: {errors} error(s), {warnings} warning(s)")
    if errors or (strict and warnings):
        raise typer.Exit(code=1)
