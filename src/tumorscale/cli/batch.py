"""The batch-job commands (`phantom`, `synth`, `predict`, `export-nnunet`): each runs a
resumable job (`tumorscale.jobs`) and ends with `cli.common.finish_job` (the report; exit 1 on a
failed case). `tumorscale.cli` adds them to the `tumorscale` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tumorscale.cli.common import Organs, Quiet, Workers, fail, finish_job
from tumorscale.cli.output import print_report, progress_bar, stderr, tagged
from tumorscale.errors import TumorscaleError
from tumorscale.organs import get_organ

jobs_app = typer.Typer()  # only a holder: its commands are registered on the main app


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


def write_phantoms(out: Path, cases: int, seed: int, options, quiet: bool):  # -> JobReport
    from tumorscale.phantom import write_cohort

    with progress_bar(f"phantoms -> {out}", quiet) as progress:
        return write_cohort(out, cases, seed, options, progress=progress)


@jobs_app.command()
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
        report = write_phantoms(out, cases, seed, options, quiet)
    except (TumorscaleError, ValueError) as error:
        raise fail(error) from error
    finish_job(report, f"{len(report.complete)} phantom cases in {out}")


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


@jobs_app.command()
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
        raise fail(error) from error
    finish_job(
        report,
        f"{len(report.done)} synthetic cases written, {len(report.skipped)} already complete, "
        f"{report.details['tumors']} tumors in total, "
        f"{len(report.excluded)} source cases not healthy, "
        f"{len(report.failed)} failed -> {out / 'synthesis.csv'}",
    )


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


@jobs_app.command()
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
    from tumorscale.infer.batch import CSV_NAME, DicomOptions, predict_folder

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
        raise fail(error) from error
    csv_path = report.out / CSV_NAME
    finish_job(
        report,
        f"{len(report.done)} predicted, {len(report.skipped)} already done, "
        f"{len(report.failed)} failed -> {csv_path}",
    )


@jobs_app.command("export-nnunet")
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
        raise fail(error) from error
    problems = check_nnunet_dataset(report.out)
    print_report(
        report,
        f"{len(report.complete)} cases ({len(report.done)} written, "
        f"{len(report.skipped)} already done) -> {report.out}",
    )
    for problem in problems:
        stderr.print(tagged("format", "red", problem))
    if not report.ok or problems:
        raise typer.Exit(code=1)
