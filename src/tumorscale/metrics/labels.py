"""One table of metric names: the short label of tables and headlines, the long one of plots."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricLabel:
    """How a metric key is written: `short` in table cells and headlines (fit.md), `long` on
    figure axes and captions (the report), where there is room to spell it out."""

    short: str
    long: str


# Order matters: the report shows metrics in this order.
METRIC_LABELS: dict[str, MetricLabel] = {
    "dsc": MetricLabel("DSC", "DSC"),
    "nsd": MetricLabel("NSD", "NSD (2 mm)"),
    "p_sen": MetricLabel("P-Sen", "Patient-wise sensitivity"),
    "t_sen": MetricLabel("T-Sen", "Tumor-wise sensitivity"),
    "spe": MetricLabel("Spe", "Specificity"),
    "auc": MetricLabel("AUC", "AUC"),
}


def short_label(metric: str) -> str:
    """'P-Sen' for 'p_sen'; an unknown key is returned as is."""
    label = METRIC_LABELS.get(metric)
    return label.short if label is not None else metric


def long_label(metric: str) -> str:
    """'Patient-wise sensitivity' for 'p_sen'; an unknown key is returned as is."""
    label = METRIC_LABELS.get(metric)
    return label.long if label is not None else metric
