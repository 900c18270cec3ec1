"""Batch prediction over a NIfTI file, a DICOM series folder or an AbdomenAtlas tree; resumable.

    OUT/<case>/segmentations/<organ>_lesion.nii.gz   uint8 lesion mask per model organ, written
                                                     in the input's own geometry and header
    OUT/<case>/probabilities/<organ>_lesion_probability.nii.gz   float32, with save_probabilities
    OUT/<case>/.prediction.json                      written last: the case's record (numbers,
                                                     settings id, files); a rerun skips the case
    OUT/predictions.csv                              one row per case x organ, rebuilt every run
    OUT/prediction_settings.json                     model, spec, TTA, overlap, post-processing

Probability maps live outside `segmentations/` so OUT stays a clean AbdomenAtlas tree that
`tumorscale evaluate` and `tumorscale dataset check` read without unknown-file warnings.

A case is finished when its record (a `tumorscale.jobs` completion marker) exists, its output
files are all there, and it carries this run's inputs and settings id (model weights + every
result-changing option); anything else is predicted again.
`predictions.csv` lists every finished case under OUT with this run's settings id, so a rerun
(or a later run on other inputs into the same OUT) still lists every case.

Reading the next case, predicting the current one and writing the previous one overlap: reads
and writes run in background threads (`workers` each, bounded look-ahead), inference in the
calling thread. A case that cannot be read, predicted or written is reported with its path and
the others go on.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tumorscale import __version__
from tumorscale.errors import DatasetError, InputFileError, TumorscaleError
from tumorscale.infer.inputs import (  # re-exported: where callers found them before
    DEFAULT_DICOM,
    DicomOptions,
    InputCase,
    InputKind,
    LoadedCase,
    discover_inputs,
    load_case,
    read_ct,
)
from tumorscale.infer.predictor import CasePrediction, Predictor, tumor_organs
from tumorscale.io import write_csv_atomic, write_nifti, write_text_atomic
from tumorscale.io.fingerprint import Fingerprint
from tumorscale.jobs import (
    JobReport,
    Progress,
    State,
    Tally,
    clear_marker,
    marker_state,
    outputs_intact,
    read_marker,
    write_marker,
)
from tumorscale.models.compute import bf16_runs_on
from tumorscale.organs import ORGANS

FORMAT_VERSION = 1
RECORD_NAME = ".prediction.json"
CSV_NAME = "predictions.csv"
SETTINGS_NAME = "prediction_settings.json"
SEGMENTATION_FOLDER = "segmentations"
PROBABILITY_FOLDER = "probabilities"
CSV_COLUMNS = (
    "case_id",
    "organ",
    "volume_mm3",
    "n_lesions",
    "largest_diameter_mm",
    "max_probability",
)


# What a bad input, a failed prediction or a failed write raises; anything else is a bug.
_CASE_ERRORS = (TumorscaleError, ValueError, OSError, RuntimeError, MemoryError)


# What `predict_folder` returns (case ids in input order): `done` predicted and written by this
# run; `skipped` already finished with the same settings from the same inputs; `changed`
# finished earlier from inputs that have changed since, so predicted again (also in `done` once
# written); `failed` (case id, reason naming the file); `warnings` (e.g. DICOM slices
# resampled); `details["other_settings"]`: finished cases under OUT made with other settings and
# not predicted again here (left out of predictions.csv).


# ----------------------------------------------------------------------------- settings


def weights_sha256(network: torch.nn.Module) -> str:
    """A digest of the network's weights (names, dtypes, shapes, bytes), wherever they live."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def run_settings(
    predictor: Predictor, organ_masks: bool, model_path: str | Path | None = None
) -> dict[str, Any]:
    """Everything that shapes the outputs, plus `settings_id`: the digest of the parts that
    change results (the device and the window batch size do not, so they are left out of it)."""
    postprocess = predictor.postprocess
    deciding = {
        "format": FORMAT_VERSION,
        "weights_sha256": weights_sha256(predictor.network),
        "spec": predictor.spec.to_dict(),
        "tta": predictor.tta,
        "mirror_axes": list(predictor.mirror_axes),
        "overlap": predictor.overlap,
        "window_size_vox": list(predictor.window_size),
        "bf16": predictor.bf16 and bf16_runs_on(predictor.device),  # whether it really ran
        "postprocess": {
            "min_radius_mm": postprocess.min_radius_mm,
            "restrict_to_organ": postprocess.restrict_to_organ,
        },
        "organ_masks": "input" if organ_masks else "none",
        "save_probabilities": predictor.save_probabilities,
    }
    settings_id = hashlib.sha256(json.dumps(deciding, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "settings_id": settings_id,
        "model": str(model_path) if model_path is not None else None,
        **deciding,
        "device": str(predictor.device),
        "window_batch_size": predictor.window_batch_size,
        "tumorscale_version": __version__,
    }


# ----------------------------------------------------------------------------- records


def case_folder(out: Path, case_id: str) -> Path:
    return out / case_id


def output_files(case_id: str, organs: Iterable[str], probabilities: bool) -> list[str]:
    """Paths (relative to OUT) of a case's outputs, in writing order."""
    files = []
    for organ in organs:
        name = ORGANS[organ].lesion_file
        files.append(f"{case_id}/{SEGMENTATION_FOLDER}/{name}.nii.gz")
        if probabilities:
            files.append(f"{case_id}/{PROBABILITY_FOLDER}/{name}_probability.nii.gz")
    return files


def read_record(out: Path, case_id: str) -> dict[str, Any] | None:
    """A case's completion record, or None when it is missing, unreadable, of an older format,
    or its files are not all there (a crash between files and record, or a file removed)."""
    path = case_folder(out, case_id) / RECORD_NAME
    record = read_marker(path)
    if record is None or not outputs_intact(path, record):
        return None
    return record


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, NaN -> None, so records are strict JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def case_record(
    case: InputCase, prediction: CasePrediction, settings_id: str, files: Sequence[str]
) -> dict[str, Any]:
    """The job's own part of a case's record (rows, files, per-organ post-processing)."""
    return _plain(
        {
            "format": FORMAT_VERSION,
            "case_id": case.case_id,
            "input": str(case.path),
            "settings_id": settings_id,
            "files": list(files),
            "rows": [{"case_id": case.case_id, **row} for row in prediction.organ_rows()],
            "settings": prediction.settings,
        }
    )


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # full precision: the CSV reproduces the records exactly
    return str(value)


def finished_records(out: Path) -> list[dict[str, Any]]:
    """Every finished case's record under OUT, by case id."""
    if not out.is_dir():
        return []
    ids = sorted(p.parent.name for p in out.glob(f"*/{RECORD_NAME}"))
    return [record for case_id in ids if (record := read_record(out, case_id)) is not None]


def write_predictions_csv(out: Path, settings_id: str) -> list[str]:
    """Rebuild OUT/predictions.csv from the records made with `settings_id` (atomically).

    Returns the ids of finished cases made with other settings (left out)."""
    records = finished_records(out)
    current = [r for r in records if r.get("settings_id") == settings_id]
    rows = [row for record in current for row in record["rows"]]
    write_csv_atomic(out / CSV_NAME, CSV_COLUMNS, rows, _csv_value)
    return [r["case_id"] for r in records if r.get("settings_id") != settings_id]


# ----------------------------------------------------------------------------- one case


def write_case(
    out: Path, case: InputCase, prediction: CasePrediction, settings_id: str, inputs: Fingerprint
) -> None:
    """Write every output file, then the record (last: its presence means 'finished')."""
    probabilities = prediction.probabilities is not None
    files = output_files(case.case_id, prediction.organs, probabilities)
    for organ in prediction.organs:
        name = ORGANS[organ].lesion_file
        folder = case_folder(out, case.case_id)
        write_nifti(
            prediction.lesion_volume(organ),
            folder / SEGMENTATION_FOLDER / f"{name}.nii.gz",
            dtype=np.uint8,
        )
        if probabilities:
            write_nifti(
                prediction.probability_volume(organ),
                folder / PROBABILITY_FOLDER / f"{name}_probability.nii.gz",
                dtype=np.float32,
            )
    record = case_record(case, prediction, settings_id, files)
    outputs = [out / name for name in files]
    write_marker(case_folder(out, case.case_id) / RECORD_NAME, inputs,
                 _marker_settings(settings_id), outputs, payload=record)  # fmt: skip


def _marker_settings(settings_id: str) -> dict[str, str]:
    return {"settings_id": settings_id}


def _reason(case: InputCase, error: BaseException, action: str) -> str:
    """A failure message that names a file: the error's own path, else the case's input."""
    if isinstance(error, InputFileError):
        return str(error)
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"{case.path}: {action} ({text})"


# ----------------------------------------------------------------------------- pipeline


class _Pipeline:
    """Reads ahead and writes behind in threads while the caller predicts, in input order."""

    def __init__(
        self,
        out: Path,
        predictor: Predictor,
        organ_masks: bool,
        workers: int,
        settings_id: str,
        report: JobReport,
        tally: Tally,
        fingerprints: dict[str, Fingerprint],
        dicom: DicomOptions,
    ) -> None:
        self.out, self.predictor, self.organ_masks = out, predictor, organ_masks
        self.fingerprints, self.dicom = fingerprints, dicom
        self.workers, self.settings_id = workers, settings_id
        self.report, self.tally = report, tally
        self.organs = tuple(tumor_organs(predictor.spec))
        self.readers = ThreadPoolExecutor(workers, thread_name_prefix="tumorscale-read")
        self.writers = ThreadPoolExecutor(workers, thread_name_prefix="tumorscale-write")
        self.writes: deque[tuple[InputCase, Future[None]]] = deque()

    def run(self, cases: Sequence[InputCase]) -> None:
        try:
            reads: deque[tuple[InputCase, Future[LoadedCase]]] = deque()
            upcoming = iter(cases)
            self._read_ahead(reads, upcoming)
            while reads:
                case, loading = reads.popleft()
                self._read_ahead(reads, upcoming)  # the next case loads while this one runs
                self._predict(case, loading)
            while self.writes:
                self._finish_oldest_write()
        finally:
            self.readers.shutdown(wait=True, cancel_futures=True)
            self.writers.shutdown(wait=True, cancel_futures=True)

    def _read_ahead(
        self, reads: deque[tuple[InputCase, Future[LoadedCase]]], upcoming: Iterator[InputCase]
    ) -> None:
        while len(reads) < self.workers:
            case = next(upcoming, None)
            if case is None:
                return
            reads.append(
                (case, self.readers.submit(load_case, case, self.organs, self.organ_masks,
                                           self.dicom, self.report.warnings.append))
            )

    def _predict(self, case: InputCase, loading: Future[LoadedCase]) -> None:
        try:
            loaded = loading.result()
        except _CASE_ERRORS as error:
            return self._failed(case, _reason(case, error, "cannot read"))
        try:
            prediction = self.predictor.predict(loaded.ct, loaded.organ_masks)
        except _CASE_ERRORS as error:
            return self._failed(case, _reason(case, error, "prediction failed"))
        del loaded  # the CT is not needed while the outputs are written
        # Bounded write queue: at most `workers` cases' outputs wait in memory.
        while len(self.writes) >= self.workers:
            self._finish_oldest_write()
        write = self.writers.submit(
            write_case, self.out, case, prediction, self.settings_id,
            self.fingerprints[case.case_id],
        )
        self.writes.append((case, write))

    def _finish_oldest_write(self) -> None:
        case, write = self.writes.popleft()
        try:
            write.result()
        except _CASE_ERRORS as error:
            folder = case_folder(self.out, case.case_id)
            return self._failed(case, _reason(case, error, f"cannot write {folder}"))
        self.report.done.append(case.case_id)
        self.tally.tick()

    def _failed(self, case: InputCase, reason: str) -> None:
        self.report.failed.append((case.case_id, reason))
        self.tally.tick()


def _check_ids(cases: Sequence[InputCase]) -> None:
    seen: dict[str, Path] = {}
    for case in cases:
        if case.case_id in seen:
            raise DatasetError(
                case.path, f"case id {case.case_id} is also the id of {seen[case.case_id]}"
            )
        seen[case.case_id] = case.path


def _check_out(input_path: Path, out: Path) -> None:
    if input_path.is_dir() and input_path.resolve() == out.resolve():
        raise DatasetError(out, "OUT must differ from IN (predictions would replace lesion files)")


def predict_folder(
    input_path: str | Path,
    out: str | Path,
    predictor: Predictor,
    organ_masks: bool = False,
    workers: int = 1,
    progress: Progress | None = None,
    model_path: str | Path | None = None,
    dicom: DicomOptions = DEFAULT_DICOM,
) -> JobReport:
    """Predict every case of IN into the AbdomenAtlas tree OUT (see the module docstring).

    organ_masks: pass each case's organ masks from IN (union of a organ's mask files, on the CT's
    grid) to the predictor. workers: threads reading ahead and threads writing behind (inference
    runs one case at a time in this thread). progress(done, total) counts finished, skipped and
    failed cases. model_path: recorded in prediction_settings.json. dicom: series choice and
    uneven-slice handling for DICOM inputs.
    """
    input_path, out = Path(input_path), Path(out)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cases = discover_inputs(input_path)
    _check_ids(cases)
    _check_out(input_path, out)
    settings = run_settings(predictor, organ_masks, model_path)
    settings_id = settings["settings_id"]
    write_text_atomic(out / SETTINGS_NAME, json.dumps(_plain(settings), indent=2) + "\n")
    report = JobReport(out)
    pending, fingerprints = [], {}
    for case in cases:
        try:
            fingerprints[case.case_id] = case.fingerprint(organ_masks)
        except (InputFileError, OSError) as error:
            report.failed.append((case.case_id, _reason(case, error, "cannot read")))
            continue
        marker = case_folder(out, case.case_id) / RECORD_NAME
        state = marker_state(marker, fingerprints[case.case_id], _marker_settings(settings_id))
        if state is State.COMPLETE:
            report.skipped.append(case.case_id)
            continue
        if state is State.CHANGED:
            report.changed.append(case.case_id)
        clear_marker(marker)  # unfinished until the new record lands
        pending.append(case)
    tally = Tally(len(cases), progress)
    tally.start(len(report.skipped) + len(report.failed))
    pipeline = _Pipeline(
        out, predictor, organ_masks, workers, settings_id, report, tally, fingerprints, dicom
    )
    try:
        pipeline.run(pending)
    finally:
        others = report.details["other_settings"] = write_predictions_csv(out, settings_id)
    if others:
        report.warnings.append(f"{len(others)} case(s) in {out} were predicted with other "
                               "settings; they are not in predictions.csv")  # fmt: skip
    return report.finish(sort=False)


__all__ = [
    "CSV_NAME",
    "DEFAULT_DICOM",
    "RECORD_NAME",
    "SETTINGS_NAME",
    "DicomOptions",
    "InputCase",
    "InputKind",
    "LoadedCase",
    "case_record",
    "discover_inputs",
    "finished_records",
    "load_case",
    "predict_folder",
    "read_ct",
    "read_record",
    "run_settings",
    "weights_sha256",
    "write_case",
    "write_predictions_csv",
]
