"""The `tumorscale` command. Thin: parses arguments, calls the library, prints."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from tumorscale import atlas
from tumorscale.cli_output import (
    print_problems,
    progress_bar,
    stderr,
    stdout,
    styled,
    summary_table,
    tagged,
)
from tumorscale.cli_study import study_app
from tumorscale.errors import TumorscaleError, describe_os_error
from tumorscale.organs import TUMOR_ORGANS, get_organ


class _Commands(TyperGroup):
    """Every command: a filesystem error (output path is a file, read-only folder, name too
    long, symlink loop) becomes one line naming the path and exit code 2, not a traceback."""

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except OSError as error:
            stderr.print(tagged("error", "red", describe_os_error(error)), soft_wrap=True)
            raise typer.Exit(code=2) from error


app = typer.Typer(
    cls=_Commands,
    help="Scale CT tumor segmentation with real and synthetic data (AbdomenAtlas 2.0).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
dataset_app = typer.Typer(
    help="Inspect, validate and fetch AbdomenAtlas 2.0 datasets.", no_args_is_help=True
)
app.add_typer(dataset_app, name="dataset")
app.add_typer(study_app, name="study")

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
    stderr.print(tagged("error", "red", error), soft_wrap=True)
    return typer.Exit(code=2)


def changed_inputs(case_ids: list[str]) -> str:
    """The line that says which finished cases were redone because their inputs changed."""
    more = f" and {len(case_ids) - 5} more" if len(case_ids) > 5 else ""
    shown = ", ".join(case_ids[:5]) + more
    return f"{len(case_ids)} case(s) whose input changed since the last run: {shown}"


def _selected_organs(organs: list[str] | None) -> list[str]:
    return [get_organ(name).name for name in organs] if organs else list(TUMOR_ORGANS)


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
        Path | None,
        typer.Option(help="Demo folder (default: ./tumorscale-demo, or ./tumorscale-demo-quick)."),
    ] = None,
    quick: Annotated[bool, typer.Option(help="Smoke version: sizes 0, 2, 4, few cases.")] = False,
    quiet: Quiet = False,
) -> None:
    """A miniature scaling study on phantoms, end to end (what `make demo` runs).

    Phantom cohorts (annotated cases with tumors and controls, and an out-of-distribution cohort
    in a second scanner style) → real-subset sizes 0, 2, 6, 24 × {real only, real + 3× synthetic}
    (0: synthetic tumors only) with the `tiny` network at 3 mm → predict → evaluate → fit → HTML
    report. About 8 minutes on a 2-core CPU; rerun to resume. Reported as measured.
    """
    from tumorscale.cli_study import study_progress
    from tumorscale.study.demo import run_demo

    # In the working folder, not a hidden cache: the report is something to open and keep.
    folder = out or Path("tumorscale-demo-quick" if quick else "tumorscale-demo")
    log = (lambda text: None) if quiet else (lambda text: stderr.print(styled(text, "dim")))
    try:
        with study_progress(quiet) as progress:
            result = run_demo(folder, quick=quick, progress=progress, log=log)
    except (TumorscaleError, ValueError, RuntimeError) as error:
        raise _fail(error) from error
    stdout.print(styled("Headline numbers", "bold"))
    for line in result.headline:
        stdout.print(f"  {line}", highlight=False, soft_wrap=True)
    stdout.print(f"report: {result.report_html}", highlight=False, soft_wrap=True)


def _parse_size_mix(text: str) -> tuple[float, float, float]:
    """'4:2:1' -> (4.0, 2.0, 1.0): relative weights of small, medium and large tumors."""
    parts = text.split(":")
    try:
        weights = tuple(float(part) for part in parts)
    except ValueError:
        weights = ()
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"--size-mix must be three non-negative weights like 4:2:1; got {text!r}")
    return weights  # type: ignore[return-value]


def _parse_organs(text: str) -> list[str]:
    return [get_organ(name.strip()).name for name in text.split(",") if name.strip()]


@app.command()
def synth(
    source: Annotated[Path, typer.Argument(help="AbdomenAtlas folder with healthy cases.")],
    out: Annotated[Path, typer.Argument(help="Output folder for the synthetic cases.")],
    organs: Annotated[
        str, typer.Option(help="Comma-separated organs to put tumors in.")
    ] = "pancreas,liver,kidney",
    per_case: Annotated[int, typer.Option(min=1, help="Synthetic cases per healthy case.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives identical output.")] = 0,
    size_mix: Annotated[
        str, typer.Option(help="Relative weights of small:medium:large tumors.")
    ] = "4:2:1",
    workers: Annotated[int, typer.Option(min=1, help="Parallel worker processes.")] = 1,
    preview: Annotated[bool, typer.Option(help="Write a PNG per tumor (3 planes).")] = False,
    allow_unknown: Annotated[
        bool, typer.Option(help="Also use cases whose tumor status is unknown (no lesion file).")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Insert synthetic tumors into the healthy cases of a dataset.

    Healthy = the organ's mask is present and its lesion file is all zero (control). Writes
    `--per-case` new AbdomenAtlas cases per healthy case (CT, organ masks pushed by the tumor's
    mass effect, `<organ>_lesion.nii.gz`) and `synthesis.csv` with one row per tumor. Reruns skip
    finished cases; bad cases are reported and skipped.
    """
    from tumorscale.synth.batch import synthesize_dataset

    try:
        with progress_bar(f"synthesizing -> {out}", quiet) as progress:
            report = synthesize_dataset(
                source,
                out,
                _parse_organs(organs),
                per_case,
                seed,
                size_mix=_parse_size_mix(size_mix),
                workers=workers,
                preview=preview,
                allow_unknown=allow_unknown,
                progress=progress,
            )
    except (TumorscaleError, ValueError) as error:
        raise _fail(error) from error
    stdout.print(
        f"{len(report.written)} synthetic cases written, {len(report.skipped)} already complete, "
        f"{report.tumors} tumors in total, {len(report.excluded)} source cases not healthy, "
        f"{len(report.failed)} failed -> {out / 'synthesis.csv'}"
    )
    if report.changed:
        stderr.print(tagged("redone", "yellow", changed_inputs(report.changed)), soft_wrap=True)
    for case_id, reason in report.failed:
        stderr.print(tagged("failed", "red", f"{case_id}: {reason}"), soft_wrap=True)
    if not report.ok:
        raise typer.Exit(code=1)


@app.command("synth-qa")
def synth_qa(
    synthetic: Annotated[Path, typer.Argument(help="AbdomenAtlas folder with synthetic tumors.")],
    reference: Annotated[Path, typer.Option(help="AbdomenAtlas folder with annotated tumors.")],
    out: Annotated[Path, typer.Option(help="Folder for the report (CSV, Markdown, PNG).")],
    organ: Organs = None,
    quiet: Quiet = False,
) -> None:
    """Realism report: synthetic vs reference tumors, per organ.

    Distributions of contrast vs organ median, tumor/background noise-SD ratio, edge sharpness
    (10-90% rise distance, mm), equivalent diameter, sphericity and count per case, with the
    Wasserstein distance for each; writes CSVs, a Markdown summary and PNG histograms. Says why
    when a distance cannot be computed (an organ with tumors on one side only), and exits 1 when
    none can (no tumors on one side at all, or nothing readable).
    """
    from tumorscale.synth.qa import run_synth_qa

    try:
        with progress_bar("measuring tumors", quiet) as progress:
            report = run_synth_qa(
                synthetic, reference, out, organs=organ or None, progress=progress
            )
    except (TumorscaleError, ValueError) as error:
        raise _fail(error) from error
    synthetic_count = sum(row["source"] == "synth" for row in report.features)
    stdout.print(
        f"{synthetic_count} synthetic and {len(report.features) - synthetic_count} reference "
        f"tumors measured in {', '.join(report.organs) or 'no organ'}"
    )
    for source_name, case_id, reason in report.failed:
        stderr.print(tagged("skipped", "yellow", f"{source_name} {case_id}: {reason}"))
    stdout.print(f"report written to {out}")
    label, style = ("warning", "yellow") if report.compared else ("error", "red")
    for gap in report.gaps:
        stderr.print(tagged(label, style, gap), soft_wrap=True)
    if not report.compared:
        raise typer.Exit(code=1)


@app.command()
def evaluate(
    pred: Annotated[Path, typer.Option(help="Predictions: AbdomenAtlas folder of lesion masks.")],
    gt: Annotated[Path, typer.Option(help="Ground truth: AbdomenAtlas folder.")],
    out: Annotated[Path, typer.Option(help="Folder for per_case.csv, summary.json, summary.md.")],
    organ: Organs = None,
    tolerance_mm: Annotated[float, typer.Option(min=0.0, help="NSD tolerance in mm.")] = 2.0,
    split: Annotated[
        Path | None,
        typer.Option(help='JSON {"group": [case ids]}, e.g. in- and out-of-distribution.'),
    ] = None,
    both_empty: Annotated[
        str,
        typer.Option(help="Cases with empty truth and prediction: 'one' (score 1) or 'exclude'."),
    ] = "one",
    match: Annotated[
        str, typer.Option(help="Lesion match rule: 'any' overlap, 'iou>=0.1' or 'iou>0.5'.")
    ] = "any",
    min_radius_mm: Annotated[
        float, typer.Option(min=0.0, help="Patient level: drop components under this radius (mm).")
    ] = 3.0,
    threshold_mm3: Annotated[
        float, typer.Option(min=0.0, help="Patient level: positive at this tumor volume (mm³).")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    bootstrap: Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")] = 1000,
    workers: Workers = 0,
    quiet: Quiet = False,
) -> None:
    """Score predicted tumors against the truth: DSC, NSD, HD95, T-Sen, P-Sen, Spe and AUC.

    Both folders in AbdomenAtlas layout, matched by case id. A missing prediction counts as empty
    and is flagged; a case whose masks cannot be read or are on another grid is reported and the
    others go on (exit code 1 at the end). Writes per_case.csv (one row per case × organ),
    summary.json and summary.md (per organ and per split group, 95% bootstrap intervals).
    """
    from tumorscale.cli_output import evaluation_table
    from tumorscale.metrics import EmptyPolicy, EvaluationSettings, MatchRule, evaluate_folders

    try:
        settings = EvaluationSettings(
            tolerance_mm=tolerance_mm,
            empty_policy=EmptyPolicy(both_empty),
            match_rule=MatchRule(match),
            min_lesion_radius_mm=min_radius_mm,
            detection_threshold_mm3=threshold_mm3,
            bootstrap_resamples=bootstrap,
            seed=seed,
        )
        organs = _selected_organs(organ) if organ else None
        with progress_bar("evaluating cases", quiet) as progress:
            result = evaluate_folders(
                pred, gt, out, organs, settings, split, workers or None, progress
            )
    except (TumorscaleError, ValueError) as error:
        raise _fail(error) from error
    for group, organs in result.summary["groups"].items():
        stdout.print(evaluation_table(group, organs))
    missing = result.summary["missing_predictions"]
    if missing:
        stderr.print(
            styled(f"{len(missing)} case(s) without prediction, scored as empty", "yellow")
        )
    extra = result.summary["predictions_without_truth"]
    if extra:
        stderr.print(
            styled(f"{len(extra)} predicted case(s) have no truth and are not scored: "
                   f"{', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}", "yellow"),
            soft_wrap=True,
        )  # fmt: skip
    for row in result.errors:
        stderr.print(tagged("error", "red", f"{row['case_id']} {row['organ']}: {row['error']}"))
    stdout.print(f"results written to {out}")
    if result.errors:
        raise typer.Exit(code=1)


@app.command()
def preprocess(
    data: Annotated[Path, typer.Argument(help="AbdomenAtlas 2.0 folder (either layout).")],
    cache: Annotated[Path, typer.Argument(help="Cache folder to create or extend.")],
    spacing_mm: Annotated[
        float, typer.Option(min=0.1, help="Isotropic target spacing (mm).")
    ] = 1.5,
    hu_min: Annotated[
        float, typer.Option(help="Lower HU clip (applied when patches are read).")
    ] = -175.0,
    hu_max: Annotated[float, typer.Option(help="Upper HU clip.")] = 250.0,
    workers: Workers = 0,
    quiet: Quiet = False,
) -> None:
    """Resample every case to RAS at the target spacing into a chunked, compressed cache.

    CT in HU (int16) and every mask as one bit-packed volume (blosc2, memory-mappable), plus a
    foreground-location index per organ and lesion, so training reads 96³ patches in a few ms.
    Incremental and resumable; a cache refuses other settings than the ones it was made with.
    """
    from tumorscale.data import PreprocessSettings, preprocess_dataset

    settings = PreprocessSettings(spacing_mm=(spacing_mm,) * 3, hu_clip=(hu_min, hu_max))
    try:
        with progress_bar(f"preprocessing -> {cache}", quiet) as progress:
            counter = {"done": 0}

            def tick(_case_id: str) -> None:
                counter["done"] += 1
                progress(counter["done"], 0)

            report = preprocess_dataset(data, cache, settings, workers or 1, progress=tick)
    except (TumorscaleError, ValueError) as error:
        raise _fail(error) from error
    stdout.print(
        f"{len(report.done)} preprocessed, {len(report.skipped)} already done, "
        f"{len(report.failed)} failed -> {cache}"
    )
    for case_id, reason in report.failed:
        stderr.print(tagged("failed", "red", f"{case_id}: {reason}"))
    if report.failed:
        raise typer.Exit(code=1)


@app.command(context_settings={"allow_extra_args": False})
def train(
    config: Annotated[Path, typer.Argument(help="Training config (YAML); see examples/.")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Config overrides such as optim.lr=0.001 model.network=S."),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.pt.")] = False,
    quiet: Quiet = False,
) -> None:
    """Train a tumor model on real scans plus tumors synthesized on the fly in healthy scans.

    The paper's recipe by default (residual-encoder U-Net, Dice + CE with deep supervision, SGD
    0.01 Nesterov, poly decay, 96³ patches, batch 2, synthetic:real = 3). Every config key can be
    overridden as `section.key=value`. Checkpoints every `checkpoint_every` iterations; `--resume`
    continues bit-identically. Under `torchrun`, trains with DDP (see README).
    """
    from tumorscale.cli_output import training_bar
    from tumorscale.train import load_config
    from tumorscale.train import train as run_training

    try:
        settings = load_config(config, overrides or [])
        with training_bar(quiet) as report:
            result = run_training(settings, resume=resume, report=report)
    except (TumorscaleError, ValueError, FloatingPointError) as error:
        raise _fail(error) from error
    if int(os.environ.get("RANK", "0")) == 0:
        final = f"{result.losses[-1]:.4f}" if result.losses else "–"
        stdout.print(f"{result.iterations} iterations, last loss {final}; model: {result.model}")


def _check_device(device: str) -> None:
    """Reject a device string torch cannot parse, or CUDA where there is none, before loading."""
    import torch

    if device == "auto":
        return
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"--device {device}: {error}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available here; use cpu or auto")


@app.command()
def predict(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="IN", help="A NIfTI CT, a DICOM series folder or an AbdomenAtlas folder."
        ),
    ],
    out: Annotated[
        Path, typer.Argument(metavar="OUT", help="Output folder (AbdomenAtlas layout).")
    ],
    model: Annotated[Path, typer.Option(help="Model file from `tumorscale train` (model.pt).")],
    tta: Annotated[
        bool, typer.Option("--tta/--no-tta", help="Mirror test-time augmentation (8 flips).")
    ] = True,
    overlap: Annotated[
        float, typer.Option(min=0.0, max=0.95, help="Sliding-window overlap (fraction).")
    ] = 0.5,
    device: Annotated[str, typer.Option(help="'auto' (CUDA if present), 'cpu', 'cuda:0', ...")] = (
        "auto"
    ),
    bf16: Annotated[
        bool,
        typer.Option(
            "--bf16/--fp32",
            help="bfloat16 network on CUDA and on CPUs with native bfloat16 (2-3x faster).",
        ),
    ] = True,
    workers: Annotated[
        int, typer.Option(min=1, help="Threads reading cases ahead and writing outputs behind.")
    ] = 1,
    organ_masks: Annotated[
        bool, typer.Option("--organ-masks", help="Use IN's organ masks to keep lesions in organs.")
    ] = False,
    save_probabilities: Annotated[
        bool, typer.Option("--save-probabilities", help="Also write float32 tumor probabilities.")
    ] = False,
    min_radius_mm: Annotated[
        float, typer.Option(min=0.0, help="Drop lesions under this equivalent radius (mm); 0: off.")
    ] = 3.0,
    restrict_to_organ: Annotated[
        bool,
        typer.Option(help="Keep only lesions touching their organ (when an organ mask is known)."),
    ] = True,
    series: Annotated[
        str | None,
        typer.Option(help="DICOM: the series UID to read when a folder holds several."),
    ] = None,
    uneven_slices: Annotated[
        str,
        typer.Option(
            help="DICOM with missing slices or uneven spacing: 'error', or 'resample' onto a "
            "uniform grid (with a warning)."
        ),
    ] = "error",
    quiet: Quiet = False,
) -> None:
    """Segment tumors in new CT scans with a trained model.

    Writes `OUT/<case>/segmentations/<organ>_lesion.nii.gz` for every organ the model knows, in
    each input's own geometry (affine, shape, orientation, header); `predictions.csv` (one row per
    case × organ: volume mm³, lesions, largest diameter mm, max probability) and
    `prediction_settings.json`. Reruns skip finished cases; a bad case is reported and skipped
    (exit code 1 at the end).
    """
    from tumorscale.infer import PostprocessOptions, Predictor
    from tumorscale.infer.batch import DicomOptions, predict_folder

    try:
        _check_device(device)
        predictor = Predictor(
            model,
            device=device,
            tta=tta,
            overlap=overlap,
            bf16=bf16,
            postprocess=PostprocessOptions(min_radius_mm, restrict_to_organ),
            save_probabilities=save_probabilities,
        )
        with progress_bar(f"predicting -> {out}", quiet) as progress:
            if uneven_slices not in ("error", "resample"):
                raise ValueError(f"--uneven-slices: 'error' or 'resample', not {uneven_slices!r}")
            report = predict_folder(
                input_path,
                out,
                predictor,
                organ_masks,
                workers,
                progress,
                model_path=model,
                dicom=DicomOptions(series, uneven_slices),  # type: ignore[arg-type]
            )
    except (TumorscaleError, ValueError) as error:
        raise _fail(error) from error
    stdout.print(
        f"{len(report.done)} predicted, {len(report.skipped)} already done, "
        f"{len(report.failed)} failed -> {report.csv_path}"
    )
    if report.changed:
        stderr.print(tagged("redone", "yellow", changed_inputs(report.changed)), soft_wrap=True)
    for warning in report.warnings:
        stderr.print(tagged("warning", "yellow", warning), soft_wrap=True)
    if report.other_settings:
        stderr.print(
            styled(
                f"{len(report.other_settings)} case(s) in {out} were predicted with other "
                "settings; they are not in predictions.csv",
                "yellow",
            )
        )
    for case_id, reason in report.failed:
        stderr.print(tagged("failed", "red", f"{case_id}: {reason}"), soft_wrap=True)
    if not report.ok:
        raise typer.Exit(code=1)


@app.command("export-nnunet")
def export_nnunet(
    data: Annotated[Path, typer.Argument(help="AbdomenAtlas 2.0 folder with real cases.")],
    out: Annotated[Path, typer.Argument(help="nnU-Net raw folder (nnUNet_raw) to write into.")],
    dataset_id: Annotated[int, typer.Option(min=1, max=999, help="nnU-Net dataset id.")],
    name: Annotated[str, typer.Option(help="Dataset name (DatasetXXX_Name).")] = "Tumorscale",
    synthetic: Annotated[
        Path | None, typer.Option(help="Offline synthetic cases from `tumorscale synth`.")
    ] = None,
    organ: Organs = None,
    organ_classes: Annotated[bool, typer.Option(help="Also label the organs.")] = False,
    unknown_as_background: Annotated[
        bool, typer.Option(help="Export unknown-status organs as tumor-free (not the default).")
    ] = False,
    workers: Workers = 0,
    quiet: Quiet = False,
) -> None:
    """Write an nnU-Net v2 raw dataset (imagesTr, labelsTr, dataset.json) from real + synthetic.

    Images are the CTs byte for byte; labels are 0 background and one `<organ>_lesion` label per
    organ. Only cases whose tumor status is known for every chosen organ are exported. Reruns skip
    finished cases; the result is checked against nnU-Net's documented format.
    """
    from tumorscale.export import check_nnunet_dataset
    from tumorscale.export import export_nnunet as export

    try:
        with progress_bar(f"exporting -> {out}", quiet) as progress:
            report = export(
                data,
                out,
                dataset_id,
                name,
                organs=organ or None,
                synthetic_root=synthetic,
                organ_classes=organ_classes,
                workers=workers or 1,
                progress=progress,
                unknown_as_background=unknown_as_background,
            )
    except (TumorscaleError, ValueError) as error:
        raise _fail(error) from error
    for case_id, reason in report.excluded:
        stderr.print(tagged("excluded", "yellow", f"{case_id}: {reason}"))
    for case_id, reason in report.failed:
        stderr.print(tagged("failed", "red", f"{case_id}: {reason}"))
    if report.changed:
        stderr.print(tagged("redone", "yellow", changed_inputs(report.changed)), soft_wrap=True)
    problems = check_nnunet_dataset(report.folder)
    for problem in problems:
        stderr.print(tagged("format", "red", problem))
    stdout.print(
        f"{report.num_training} cases ({len(report.written)} written, "
        f"{len(report.skipped)} already done) -> {report.folder}"
    )
    if not report.ok or problems:
        raise typer.Exit(code=1)
