"""The `tumorscale` command. Thin: parses arguments, calls the library, prints.

This module holds the app and the study-level commands (demo, synth-qa, evaluate, preprocess,
train); `cli.dataset` the `dataset` sub-app, `cli.batch` the batch-job commands, `cli.common`
the option types and error exit they share; `cli.output` prints, `cli.study` is `study`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from tumorscale.cli.batch import jobs_app
from tumorscale.cli.common import Organs, Quiet, Workers, fail, finish_job, selected_organs
from tumorscale.cli.dataset import dataset_app
from tumorscale.cli.output import progress_bar, stderr, stdout, styled, tagged
from tumorscale.cli.study import study_app
from tumorscale.errors import TumorscaleError, describe_os_error


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
app.add_typer(dataset_app, name="dataset")
app.add_typer(study_app, name="study")
app.registered_commands += jobs_app.registered_commands  # phantom, synth, predict, export-nnunet


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
    from tumorscale.cli.study import study_progress
    from tumorscale.study.demo import make_demo

    # In the working folder, not a hidden cache: the report is something to open and keep.
    folder = out or Path("tumorscale-demo-quick" if quick else "tumorscale-demo")
    log = (lambda text: None) if quiet else (lambda text: stderr.print(styled(text, "dim")))
    try:
        with study_progress(quiet) as progress:
            result = make_demo(folder, quick=quick, progress=progress, log=log)
    except (TumorscaleError, ValueError, RuntimeError) as error:
        raise fail(error) from error
    stdout.print(styled("Headline numbers", "bold"))
    for line in result.headline:
        stdout.print(f"  {line}", highlight=False, soft_wrap=True)
    stdout.print(f"report: {result.report_html}", highlight=False, soft_wrap=True)


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
    from tumorscale.synth.qa import synth_qa

    try:
        with progress_bar("measuring tumors", quiet) as progress:
            report = synth_qa(
                synthetic, reference, out, organs=organ or None, progress=progress
            )
    except (TumorscaleError, ValueError) as error:
        raise fail(error) from error
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
    from tumorscale.cli.output import evaluation_table
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
        organs = selected_organs(organ) if organ else None
        with progress_bar("evaluating cases", quiet) as progress:
            result = evaluate_folders(
                pred, gt, out, organs, settings, split, workers or None, progress
            )
    except (TumorscaleError, ValueError) as error:
        raise fail(error) from error
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
    from tumorscale.preprocessing import Preprocessing

    settings = PreprocessSettings(Preprocessing(spacing_mm=spacing_mm, hu_window=(hu_min, hu_max)))
    try:
        with progress_bar(f"preprocessing -> {cache}", quiet) as progress:
            report = preprocess_dataset(data, cache, settings, workers or 1, progress=progress)
    except (TumorscaleError, ValueError) as error:
        raise fail(error) from error
    finish_job(
        report,
        f"{len(report.done)} preprocessed, {len(report.skipped)} already done, "
        f"{len(report.failed)} failed -> {cache}",
    )


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
    from tumorscale.cli.output import training_bar
    from tumorscale.train import load_config
    from tumorscale.train import train as run_training

    try:
        settings = load_config(config, overrides or [])
        with training_bar(quiet) as report:
            result = run_training(settings, resume=resume, report=report)
    except (TumorscaleError, ValueError, FloatingPointError) as error:
        raise fail(error) from error
    if int(os.environ.get("RANK", "0")) == 0:
        final = f"{result.losses[-1]:.4f}" if result.losses else "–"
        stdout.print(f"{result.iterations} iterations, last loss {final}; model: {result.model}")
