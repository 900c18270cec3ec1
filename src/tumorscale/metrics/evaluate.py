"""Evaluate a folder of predicted lesion masks against a folder of truth, case by case.

Both folders are AbdomenAtlas trees; predictions are `<case>/segmentations/<organ>_lesion.nii.gz`
as `tumorscale predict` writes them (any lesion-name variant is accepted). Every case × organ
becomes one row of `per_case.csv`; the rows are then aggregated by `metrics.summary`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from tumorscale.atlas import CaseEntry, TumorStatus, index_dataset
from tumorscale.errors import DatasetError, TumorscaleError
from tumorscale.geometry import spacing_of
from tumorscale.io import read_mask_union, write_csv_atomic, write_text_atomic
from tumorscale.io.volume import Volume
from tumorscale.metrics.detection import predicted_tumor_volume_mm3
from tumorscale.metrics.lesions import MatchRule, match_lesions
from tumorscale.metrics.segmentation import (
    DEFAULT_TOLERANCE_MM,
    EmptyPolicy,
    SegmentationScores,
    segmentation_scores,
)
from tumorscale.metrics.summary import markdown_summary, summarize_evaluation
from tumorscale.organs import TUMOR_ORGANS
from tumorscale.sizes import SIZE_CLASS_LABELS
from tumorscale.workers import process_pool

UNGROUPED = "all"


@dataclass(frozen=True)
class EvaluationSettings:
    """Every choice that changes a number; written into summary.json."""

    tolerance_mm: float = DEFAULT_TOLERANCE_MM
    empty_policy: EmptyPolicy = EmptyPolicy.SCORE_ONE
    match_rule: MatchRule = MatchRule.ANY
    min_lesion_radius_mm: float = 3.0
    detection_threshold_mm3: float = 0.0
    bootstrap_resamples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        # Accept the enums' string values (from YAML, JSON or the command line).
        object.__setattr__(self, "empty_policy", EmptyPolicy(self.empty_policy))
        object.__setattr__(self, "match_rule", MatchRule(self.match_rule))

    def to_dict(self) -> dict[str, object]:
        values = asdict(self)
        values["empty_policy"] = self.empty_policy.value
        values["match_rule"] = self.match_rule.value
        return values


@dataclass(frozen=True)
class CaseJob:
    case_id: str
    group: str
    truth: CaseEntry
    pred: CaseEntry | None
    organs: tuple[str, ...]
    settings: EvaluationSettings = field(default_factory=EvaluationSettings)


def _size_columns() -> list[str]:
    labels = list(SIZE_CLASS_LABELS)
    return [f"{kind}_lesions_{label}" for label in labels for kind in ("truth", "detected")]


PER_CASE_COLUMNS = [
    "case_id", "organ", "group", "tumor_status", "prediction_missing", "error",
    "dsc", "nsd", "hd95_mm", "msd_mm", "empty_case",
    "truth_volume_mm3", "pred_volume_mm3", "pred_volume_post_mm3", "predicted_positive",
    "truth_lesions", "detected_lesions", "pred_lesions", "matched_pred_lesions",
    *_size_columns(),
    "spacing_mm",
]  # fmt: skip


def _blank_row(job: CaseJob, organ: str, status: TumorStatus) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(PER_CASE_COLUMNS, "")
    row.update(case_id=job.case_id, organ=organ, group=job.group, tumor_status=status.value)
    row["prediction_missing"] = False
    return row


def _prediction(job: CaseJob, organ: str, truth: Volume) -> tuple[np.ndarray, bool]:
    """The predicted lesion mask on the truth's grid; an absent file is an empty prediction."""
    files = job.pred.organ(organ).lesions if job.pred is not None else ()
    if not files:
        return np.zeros(truth.array.shape, bool), True
    truth_file = job.truth.organ(organ).lesions[0]
    return read_mask_union(files, truth_file, truth.geometry).array, False


def _scored_row(job: CaseJob, organ: str) -> dict[str, object]:
    files = job.truth.organ(organ).lesions
    truth_volume = read_mask_union(files)
    truth = truth_volume.array > 0
    status = TumorStatus.POSITIVE if truth.any() else TumorStatus.CONTROL
    row = _blank_row(job, organ, status)
    pred, missing = _prediction(job, organ, truth_volume)
    spacing = spacing_of(truth_volume.affine)
    settings = job.settings
    scores: SegmentationScores = segmentation_scores(
        truth, pred, spacing, settings.tolerance_mm, settings.empty_policy
    )
    row.update({key: value for key, value in scores.to_dict().items() if key in PER_CASE_COLUMNS})
    post_volume = predicted_tumor_volume_mm3(pred, spacing, settings.min_lesion_radius_mm)
    match = match_lesions(truth, pred, spacing, settings.match_rule)
    row.update(
        prediction_missing=missing,
        pred_volume_post_mm3=post_volume,
        predicted_positive=bool(
            post_volume > 0 and post_volume >= settings.detection_threshold_mm3
        ),
        truth_lesions=match.n_truth,
        detected_lesions=int(np.count_nonzero(match.truth_detected)),
        pred_lesions=match.n_pred,
        matched_pred_lesions=int(np.count_nonzero(match.pred_matched)),
        spacing_mm=" ".join(f"{s:.4g}" for s in spacing),
    )
    for label, (detected, total) in match.detected_by_size().items():
        row[f"truth_lesions_{label}"] = total
        row[f"detected_lesions_{label}"] = detected
    return row


def evaluate_case(job: CaseJob) -> list[dict[str, object]]:
    """One row per organ; a bad file becomes that row's `error`, the other organs go on."""
    rows = []
    for organ in job.organs:
        if not job.truth.organ(organ).lesions:
            rows.append(_blank_row(job, organ, TumorStatus.UNKNOWN))
            continue
        try:
            rows.append(_scored_row(job, organ))
        except (TumorscaleError, ValueError, OSError) as error:
            row = _blank_row(job, organ, TumorStatus.UNKNOWN)
            row["error"] = str(error)
            rows.append(row)
    return rows


def read_split(path: Path | None) -> dict[str, str]:
    """case id → group name from a split file: {"group name": ["BDMAP_…", …], …}."""
    if path is None:
        return {}
    try:
        groups = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(path, f"cannot read split file: {error}") from error
    if not isinstance(groups, dict) or not all(
        isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in groups.values()
    ):
        raise DatasetError(path, "split file must map group names to lists of case ids")
    membership: dict[str, str] = {}
    for group, case_ids in groups.items():
        for case_id in case_ids:
            if case_id in membership:
                raise DatasetError(path, f"{case_id} is in both {membership[case_id]} and {group}")
            membership[case_id] = group
    return membership


def evaluation_jobs(
    pred_root: Path,
    truth_root: Path,
    organs: Sequence[str],
    settings: EvaluationSettings,
    split: dict[str, str] | None = None,
) -> list[CaseJob]:
    """One job per truth case (limited to the split's cases when a split is given)."""
    truth_index = index_dataset(truth_root, read_headers=False)
    pred_cases = {case.case_id: case for case in index_dataset(pred_root, read_headers=False).cases}
    jobs = []
    for case in truth_index.cases:
        if split and case.case_id not in split:
            continue
        group = split.get(case.case_id, UNGROUPED) if split else UNGROUPED
        pred = pred_cases.get(case.case_id)
        jobs.append(CaseJob(case.case_id, group, case, pred, tuple(organs), settings))
    return jobs


def predictions_without_truth(pred_root: Path, jobs: Sequence[CaseJob]) -> list[str]:
    """Predicted case ids that no truth case (of the split) scores: not in the metrics."""
    scored = {job.case_id for job in jobs}
    try:
        predicted = index_dataset(pred_root, read_headers=False).cases
    except DatasetError:
        return []
    return sorted(case.case_id for case in predicted if case.case_id not in scored)


def run_jobs(
    jobs: Sequence[CaseJob],
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, object]]:
    """Evaluate every job (in parallel processes when workers > 1); rows in case order."""
    workers = workers or min(os.cpu_count() or 1, 8)
    results: list[list[dict[str, object]]] = []
    if workers <= 1 or len(jobs) <= 1:
        for done, job in enumerate(jobs, start=1):
            results.append(evaluate_case(job))
            if progress:
                progress(done, len(jobs))
    else:
        with process_pool(workers) as pool:
            for done, rows in enumerate(pool.map(evaluate_case, jobs, chunksize=1), start=1):
                results.append(rows)
                if progress:
                    progress(done, len(jobs))
    return [row for rows in results for row in rows]


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # every digit: the CSV must reproduce the summary exactly
    return str(value)


def write_per_case(rows: Sequence[dict[str, object]], path: Path) -> None:
    write_csv_atomic(path, PER_CASE_COLUMNS, rows, format_value=_csv_value)


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate_folders` wrote and found."""

    rows: list[dict[str, object]]
    summary: dict[str, object]
    per_case_csv: Path
    summary_json: Path
    summary_md: Path

    @property
    def errors(self) -> list[dict[str, object]]:
        return [row for row in self.rows if row["error"]]

    @property
    def missing_predictions(self) -> list[dict[str, object]]:
        return [row for row in self.rows if row["prediction_missing"] is True]


def organs_with_truth(jobs: Sequence[CaseJob]) -> list[str]:
    """Tumor organs that have a lesion file (positive or control) in at least one truth case."""
    return [o for o in TUMOR_ORGANS if any(job.truth.organ(o).lesions for job in jobs)]


def evaluate_folders(
    pred_root: Path,
    truth_root: Path,
    out: Path,
    organs: Sequence[str] | None = None,
    settings: EvaluationSettings | None = None,
    split_path: Path | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Score every truth case against its prediction; write per_case.csv and the summaries."""
    settings = settings or EvaluationSettings()
    split = read_split(split_path)
    jobs = evaluation_jobs(
        Path(pred_root), Path(truth_root), organs or TUMOR_ORGANS, settings, split
    )
    if not organs:
        organs = organs_with_truth(jobs)
        jobs = [replace(job, organs=tuple(organs)) for job in jobs]
    if not organs:
        raise DatasetError(truth_root, "no lesion files in the truth folder: nothing to evaluate")
    rows = run_jobs(jobs, workers, progress)
    groups = summarize_evaluation(
        rows, organs, settings.detection_threshold_mm3, settings.seed, settings.bootstrap_resamples
    )
    summary = {
        "settings": settings.to_dict(),
        "pred": str(pred_root),
        "truth": str(truth_root),
        "organs": list(organs),
        "groups": groups,
        "missing_predictions": sorted(
            {r["case_id"] for r in rows if r["prediction_missing"] is True}
        ),
        "predictions_without_truth": predictions_without_truth(Path(pred_root), jobs),
        "errors": [{k: r[k] for k in ("case_id", "organ", "error")} for r in rows if r["error"]],
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_per_case(rows, out / "per_case.csv")
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=_json_default))
    write_text_atomic(out / "summary.md", markdown_summary(groups, settings.to_dict()))
    return Evaluation(rows, summary, out / "per_case.csv", out / "summary.json", out / "summary.md")


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
