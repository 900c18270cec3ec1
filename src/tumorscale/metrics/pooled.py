"""Pooled metrics of one set of per-case rows as (numerator, denominator) sums, so they add up.

The definitions of `metrics.summary`: DSC/NSD are means over tumor-positive rows; T-Sen is
detected / truth lesions over rows of known status; P-Sen is positives called positive /
positives; Spe is controls called negative / controls. A row is called positive by its
`predicted_positive` column, which `metrics.evaluate` writes with the evaluation's detection
threshold (post-processed volume > 0 and >= threshold, the rule of `patient_detection`); rows
without that column (older CSVs) fall back to that rule at threshold 0 on `pred_volume_post_mm3`.
Rows with an error or of unknown status add nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from tumorscale.metrics.detection import patient_detection

POOLED_METRICS = ("dsc", "nsd", "p_sen", "t_sen", "spe")
Row = Mapping[str, object]
Terms = dict[str, tuple[float, float]]


def cell_text(value: object) -> str:
    """A CSV cell (or a Python value) as stripped text; '' for None."""
    return "" if value is None else str(value).strip()


def cell_number(value: object) -> float:
    """A CSV cell as a float; NaN for '', 'none' or 'nan'."""
    text = cell_text(value)
    return math.nan if text.lower() in ("", "none", "nan") else float(text)


def _flag(value: object) -> bool | None:
    text = cell_text(value).lower()
    if text in ("true", "1", "1.0", "yes"):
        return True
    if text in ("false", "0", "0.0", "no"):
        return False
    return None


def _finite_or_zero(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def called_positive(row: Row) -> bool:
    """Whether the row's case is called tumor-positive (see the module docstring)."""
    called = _flag(row.get("predicted_positive"))
    if called is not None:
        return called
    volume = max(_finite_or_zero(cell_number(row.get("pred_volume_post_mm3"))), 0.0)
    return patient_detection([volume], ["positive"], 0.0).true_positives == 1


def pooled_terms(row: Row) -> Terms:
    """One case × organ row's (numerator, denominator) for each of POOLED_METRICS."""
    terms = dict.fromkeys(POOLED_METRICS, (0.0, 0.0))
    status = cell_text(row.get("tumor_status"))
    if cell_text(row.get("error")) or status not in ("positive", "control"):
        return terms
    terms["t_sen"] = (
        _finite_or_zero(cell_number(row.get("detected_lesions"))),
        _finite_or_zero(cell_number(row.get("truth_lesions"))),
    )
    called = called_positive(row)
    if status == "control":
        terms["spe"] = (float(not called), 1.0)
        return terms
    terms["p_sen"] = (float(called), 1.0)
    for key in ("dsc", "nsd"):
        score = cell_number(row.get(key))
        if math.isfinite(score):
            terms[key] = (score, 1.0)
    return terms


def pooled_metrics(rows: Iterable[Row]) -> dict[str, float | None]:
    """Pooled DSC, NSD, P-Sen, T-Sen, Spe of a set of rows (None: undefined, no denominator)."""
    sums = {metric: [0.0, 0.0] for metric in POOLED_METRICS}
    for row in rows:
        for metric, (num, den) in pooled_terms(row).items():
            sums[metric][0] += num
            sums[metric][1] += den
    return {m: (num / den if den > 0 else None) for m, (num, den) in sums.items()}
