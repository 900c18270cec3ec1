"""`tumorscale dataset info|check|example`: a Typer sub-app that `tumorscale.cli` registers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tumorscale import atlas
from tumorscale.cli.common import Organs, Quiet, Workers, fail, selected_organs
from tumorscale.cli.output import print_problems, progress_bar, stderr, stdout, summary_table
from tumorscale.errors import TumorscaleError

dataset_app = typer.Typer(
    help="Inspect, validate and fetch AbdomenAtlas 2.0 datasets.", no_args_is_help=True
)


def dataset_summary(
    path: Path, organs: list[str], workers: int | None, quiet: bool
) -> atlas.DatasetSummary:
    """Index a dataset, measure its lesions (cached) and summarize it."""
    with progress_bar("indexing", quiet) as progress:
        index = atlas.index_dataset(path, progress=progress)
    with progress_bar("measuring tumors", quiet) as progress:
        stats = atlas.dataset_lesion_stats(
            index.cases, organs, workers=workers, progress=progress, with_organ=True
        )
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
        summary = dataset_summary(path, selected_organs(organ), workers or None, quiet or as_json)
    except (TumorscaleError, ValueError) as error:
        raise fail(error) from error
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
        raise fail(error) from error
    print_problems(problems, stdout)
    errors = sum(problem.severity == atlas.Severity.ERROR for problem in problems)
    warnings = len(problems) - errors
    stdout.print(f"checked {len(index.cases)} cases: {errors} error(s), {warnings} warning(s)")
    if errors or (strict and warnings):
        raise typer.Exit(code=1)


@dataset_app.command("example")
def dataset_example(
    out: Annotated[Path, typer.Argument(help="Folder to write the case into.")],
    cache: Annotated[
        Path | None, typer.Option(help="Download cache (default: the tumorscale cache folder).")
    ] = None,
    case_id: Annotated[str, typer.Option(help="Case folder name.")] = "BDMAP_00000001",
    quiet: Quiet = False,
) -> None:
    """Write a real abdomen+pelvis CT with organ masks, from the TotalSegmentator source on PyPI.

    Downloads the totalsegmentator 2.18.0 source archive once (38 MB, sha256-checked, cached),
    extracts its example CT and label map, and writes one case with masks named per the organ
    registry. No lesion files: tumor status stays unknown.
    """
    from tumorscale.datasets import fetch_example_ct

    log = None if quiet else (lambda line: stderr.print(line, highlight=False))
    try:
        case = fetch_example_ct(out, cache=cache, case_id=case_id, log=log)
    except (TumorscaleError, ValueError) as error:
        raise fail(error) from error
    stdout.print(f"wrote {case}")
