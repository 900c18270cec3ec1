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
    rich_markup_mode="markdown",
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
        raise _fail(error) from error
    stdout.print(f"wrote {case}")


SpacingRange = tuple[float, float]


def _phantom_options(
    tumor_fraction: float, style: str, inplane_mm: SpacingRange, slice_mm: SpacingRange
):  # -> PhantomOptions; imported lazily to keep `tumorscale --help` fast
    from tumorscale.phantom import PhantomOptions

    return PhantomOptions(
        inplane_spacing_mm=tuple(inplane_mm),
        slice_spacing_mm=tuple(slice_mm),
        tumor_fraction=tumor_fraction,
        style=style,
    )


def write_phantoms(out: Path, cases: int, seed: int, options, quiet: bool) -> list[str]:
    from tumorscale.phantom import write_cohort

    with progress_bar(f"phantoms -> {out}", quiet) as progress:
        return write_cohort(out, cases, seed, options, progress=progress)


@app.command()
def phantom(
    out: Annotated[Path, typer.Argument(help="Output folder (AbdomenAtlas layout).")],
    cases: Annotated[int, typer.Option(min=1, help="Number of cases.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives identical files.")] = 0,
    tumor_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of cases with reference tumors.")
    ] = 0.5,
    style: Annotated[
        str, typer.Option(help="Scanner style: 'standard' (portal-venous) or 'ood' (shifted).")
    ] = "standard",
    inplane_mm: Annotated[
        SpacingRange, typer.Option(help="In-plane spacing range in mm (low high).")
    ] = (0.6, 1.0),
    slice_mm: Annotated[SpacingRange, typer.Option(help="Slice spacing range in mm.")] = (1.0, 5.0),
    quiet: Quiet = False,
) -> None:
    """Write procedural abdominal CT phantoms with organ masks and reference tumors.

    Every organ of AbdomenAtlas (uterus in female phantoms), realistic portal-venous HU,
    correlated noise, varying anatomy, spacing and orientation. A share of cases carries reference
    tumors in any of the six tumor organs; the others have all-zero lesion files (controls).
    Reruns skip complete cases.
    """
    try:
        options = _phantom_options(tumor_fraction, style, inplane_mm, slice_mm)
        written = write_phantoms(out, cases, seed, options, quiet)
    except (TumorscaleError, ValueError) as error:
        raise _fail(error) from error
    stdout.print(f"{len(written)} phantom cases in {out}")


@app.command()
def demo(
    out: Annotated[
        Path | None, typer.Option(help="Where to write the cohort (default: the tumorscale cache).")
    ] = None,
    cases: Annotated[int, typer.Option(min=1, help="Number of phantom cases.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    quiet: Quiet = False,
) -> None:
    """Generate a small phantom cohort and print its dataset summary (what `make demo` runs).

    Uses coarser spacing than `tumorscale phantom` so it finishes in about a minute on a laptop.
    """
    from tumorscale.cache import cache_dir

    folder = out or cache_dir("demo") / f"phantoms-seed{seed}-n{cases}"
    try:
        options = _phantom_options(0.5, "standard", DEMO_INPLANE_MM, DEMO_SLICE_MM)
        write_phantoms(folder, cases, seed, options, quiet)
        summary = dataset_summary(folder, list(TUMOR_ORGANS), None, quiet)
    except (TumorscaleError, ValueError) as error:
        raise _fail(error) from error
    stdout.print(summary_table(summary))
    stdout.print(f"cohort: {folder}  (inspect it with `tumorscale dataset info {folder}`)")


# The demo trades resolution for speed; anatomy and HU are the same as full-resolution phantoms.
DEMO_INPLANE_MM: SpacingRange = (1.4, 1.8)
DEMO_SLICE_MM: SpacingRange = (3.0, 5.0)
