"""Aggregate per-case rows into per-organ and overall results: summary.json and summary.md.

Segmentation scores (DSC, NSD, HD95, MSD) are averaged over tumor-positive cases, the paper's
per-tumor convention; `dsc_all` / `nsd_all` add the control cases under the empty-case policy.
Detection numbers pool the cases: T-Sen over all truth lesions, P-Sen over positive cases, Spe
over control cases, AUC over both. Every figure carries a seeded bootstrap 95% interval that
resamples cases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tumorscale.atlas import TumorStatus
from tumorscale.metrics.aggregate import bootstrap_ci, summarize
from tumorscale.metrics.detection import patient_detection, roc_curve
from tumorscale.sizes import SIZE_CLASS_LABELS

ALL_ORGANS = "all organs"  # the pooled selection: its name in summaries, study fits, reports
Row = dict[str, object]


@dataclass(frozen=True)
class _Columns:
    """The numeric columns of a set of rows as arrays (None → NaN)."""

    status: np.ndarray
    scored: np.ndarray
    volume: np.ndarray
    truth_lesions: np.ndarray
    detected_lesions: np.ndarray
    pred_lesions: np.ndarray
    matched_pred_lesions: np.ndarray

    @classmethod
    def of(cls, rows: Sequence[Row]) -> _Columns:
        def numbers(key: str) -> np.ndarray:
            return np.array([_number(row.get(key)) for row in rows], dtype=float)

        return cls(
            status=np.array([row["tumor_status"] for row in rows], dtype=object),
            scored=np.array([not row.get("error") for row in rows], dtype=bool),
            volume=numbers("pred_volume_post_mm3"),
            truth_lesions=numbers("truth_lesions"),
            detected_lesions=numbers("detected_lesions"),
            pred_lesions=numbers("pred_lesions"),
            matched_pred_lesions=numbers("matched_pred_lesions"),
        )


def _number(value: object) -> float:
    if value is None or value == "":
        return np.nan
    return float(value)  # type: ignore[arg-type]


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator > 0 else None


def _with_ci(
    value: float | None,
    statistic: Callable[[np.ndarray], float | None],
    n: int,
    seed: int,
    resamples: int,
) -> dict[str, object]:
    interval = bootstrap_ci(statistic, n, seed, resamples) if value is not None else None
    return {
        "value": value,
        "ci_low": interval[0] if interval else None,
        "ci_high": interval[1] if interval else None,
    }


def _score_summary(rows: Sequence[Row], key: str, statuses: set[str], seed: int, resamples: int):
    values = [
        float(row[key])  # type: ignore[arg-type]
        for row in rows
        if row["tumor_status"] in statuses and row.get(key) not in (None, "")
    ]
    return summarize(values, seed, resamples).to_dict()


def _lesion_summary(columns: _Columns, seed: int, resamples: int) -> dict[str, object]:
    known = columns.scored & (columns.status != TumorStatus.UNKNOWN.value)
    truth, detected = columns.truth_lesions[known], columns.detected_lesions[known]
    pred, matched = columns.pred_lesions[known], columns.matched_pred_lesions[known]
    n = int(known.sum())

    def recall(i: np.ndarray) -> float | None:
        return _ratio(detected[i].sum(), truth[i].sum())

    def precision(i: np.ndarray) -> float | None:
        return _ratio(matched[i].sum(), pred[i].sum())

    everything = np.arange(n)
    return {
        "truth_lesions": int(truth.sum()),
        "detected_lesions": int(detected.sum()),
        "pred_lesions": int(pred.sum()),
        "matched_pred_lesions": int(matched.sum()),
        "t_sen": _with_ci(recall(everything), recall, n, seed, resamples),
        "lesion_precision": _with_ci(precision(everything), precision, n, seed, resamples),
    }


def _t_sen_by_size(rows: Sequence[Row]) -> dict[str, dict[str, object]]:
    by_size = {}
    for label in SIZE_CLASS_LABELS:
        total = sum(_count(row, f"truth_lesions_{label}") for row in rows)
        detected = sum(_count(row, f"detected_lesions_{label}") for row in rows)
        by_size[label] = {"detected": detected, "total": total, "t_sen": _ratio(detected, total)}
    return by_size


def _count(row: Row, key: str) -> int:
    value = row.get(key)
    return 0 if value in (None, "") else int(value)  # type: ignore[arg-type]


def _patient_summary(
    columns: _Columns, threshold_mm3: float, seed: int, resamples: int
) -> dict[str, object]:
    known = columns.scored & (columns.status != TumorStatus.UNKNOWN.value)
    volumes, statuses = columns.volume[known], columns.status[known]
    n = volumes.size
    point = patient_detection(volumes, statuses, threshold_mm3)

    def sensitivity(i: np.ndarray) -> float | None:
        return patient_detection(volumes[i], statuses[i], threshold_mm3).sensitivity

    def specificity(i: np.ndarray) -> float | None:
        return patient_detection(volumes[i], statuses[i], threshold_mm3).specificity

    def auc(i: np.ndarray) -> float | None:
        return roc_curve(volumes[i], statuses[i]).auc

    return {
        "threshold_mm3": threshold_mm3,
        "positive_cases": point.n_positive,
        "control_cases": point.n_control,
        "true_positives": point.true_positives,
        "true_negatives": point.true_negatives,
        "p_sen": _with_ci(point.sensitivity, sensitivity, n, seed, resamples),
        "spe": _with_ci(point.specificity, specificity, n, seed, resamples),
        "auc": _with_ci(roc_curve(volumes, statuses).auc, auc, n, seed, resamples),
    }


def summarize_rows(
    rows: Sequence[Row], threshold_mm3: float, seed: int, resamples: int
) -> dict[str, object]:
    """Every aggregate of one set of case × organ rows (one organ, or all organs pooled)."""
    columns = _Columns.of(rows)
    positive, known = {TumorStatus.POSITIVE.value}, {"positive", "control"}
    scored = [row for row in rows if not row.get("error")]
    return {
        "rows": len(rows),
        "positive": int(np.sum(columns.status == "positive")),
        "control": int(np.sum(columns.status == "control")),
        "unknown": int(np.sum(columns.status == "unknown")),
        "errors": int(np.sum(~columns.scored)),
        "missing_predictions": sum(1 for row in rows if row.get("prediction_missing") is True),
        "dsc": _score_summary(scored, "dsc", positive, seed, resamples),
        "nsd": _score_summary(scored, "nsd", positive, seed, resamples),
        "hd95_mm": _score_summary(scored, "hd95_mm", positive, seed, resamples),
        "msd_mm": _score_summary(scored, "msd_mm", positive, seed, resamples),
        "dsc_all": _score_summary(scored, "dsc", known, seed, resamples),
        "nsd_all": _score_summary(scored, "nsd", known, seed, resamples),
        "lesions": _lesion_summary(columns, seed, resamples),
        "t_sen_by_size": _t_sen_by_size(scored),
        "patients": _patient_summary(columns, threshold_mm3, seed, resamples),
    }


def summarize_evaluation(
    rows: Sequence[Row], organs: Sequence[str], threshold_mm3: float, seed: int, resamples: int
) -> dict[str, dict[str, object]]:
    """group → organ (and 'all organs') → aggregates; group 'all' holds every case."""
    groups = {"all": list(rows)}
    for row in rows:
        if row["group"] != "all":
            groups.setdefault(str(row["group"]), []).append(row)
    result: dict[str, dict[str, object]] = {}
    for group, group_rows in groups.items():
        per_organ = {
            organ: summarize_rows(
                [r for r in group_rows if r["organ"] == organ], threshold_mm3, seed, resamples
            )
            for organ in organs
        }
        if len(organs) > 1:
            per_organ[ALL_ORGANS] = summarize_rows(group_rows, threshold_mm3, seed, resamples)
        result[group] = per_organ
    return result


def _percent(value: object) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}"  # type: ignore[arg-type]


def _with_interval(entry: dict[str, object], key: str) -> str:
    """`entry[key]` as a percentage with its [ci_low, ci_high] interval when there is one."""
    if entry.get(key) is None:
        return "–"
    low, high = entry["ci_low"], entry["ci_high"]
    interval = f" [{_percent(low)}, {_percent(high)}]" if low is not None else ""
    return f"{_percent(entry[key])}{interval}"


def _mean_ci(summary: dict[str, object]) -> str:
    return _with_interval(summary, "mean")


def _value_ci(entry: dict[str, object]) -> str:
    return _with_interval(entry, "value")


def _mm(summary: dict[str, object]) -> str:
    median = summary.get("median")
    return "–" if median is None else f"{float(median):.2f}"  # type: ignore[arg-type]


def markdown_summary(summary: dict[str, dict[str, object]], settings: dict[str, object]) -> str:
    """Tables per group: one row per organ, values in % with 95% bootstrap intervals."""
    lines = [
        "# Evaluation summary",
        "",
        f"NSD tolerance {settings['tolerance_mm']} mm; both-empty cases: "
        f"{settings['empty_policy']}; lesion match: {settings['match_rule']}; patient-level: "
        f"components under {settings['min_lesion_radius_mm']} mm radius dropped, positive at "
        f"≥ {settings['detection_threshold_mm3']} mm³. DSC, NSD, HD95 over tumor-positive cases; "
        "values in % with 95% bootstrap intervals over cases.",
    ]
    header = (
        "| organ | cases (+/ctrl/?) | DSC | NSD | HD95 mm (median) | T-Sen | P-Sen | Spe | AUC "
        "| missing preds | errors |"
    )
    for group, organs in summary.items():
        lines += ["", f"## {group}", "", header, "|" + "---|" * 11]
        for organ, s in organs.items():
            lesions, patients = s["lesions"], s["patients"]  # type: ignore[index]
            lines.append(
                f"| {organ} | {s['rows']} ({s['positive']}/{s['control']}/{s['unknown']}) "
                f"| {_mean_ci(s['dsc'])} | {_mean_ci(s['nsd'])} | {_mm(s['hd95_mm'])} "
                f"| {_value_ci(lesions['t_sen'])} | {_value_ci(patients['p_sen'])} "
                f"| {_value_ci(patients['spe'])} | {_value_ci(patients['auc'])} "
                f"| {s['missing_predictions']} | {s['errors']} |"
            )
    return "\n".join(lines) + "\n"
