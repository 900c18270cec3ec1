"""Evaluation metrics: DSC, NSD, HD95, lesion matching, patient-level detection, aggregation."""

from tumorscale.masks import remove_small_components  # the post-processing detection uses
from tumorscale.metrics.aggregate import MetricSummary, bootstrap_ci, summarize
from tumorscale.metrics.detection import (
    PatientDetection,
    RocCurve,
    patient_detection,
    predicted_tumor_volume_mm3,
    roc_curve,
)
from tumorscale.metrics.evaluate import Evaluation, EvaluationSettings, evaluate_folders
from tumorscale.metrics.labels import METRIC_LABELS, MetricLabel, long_label, short_label
from tumorscale.metrics.lesions import LesionCounts, LesionMatch, MatchRule, match_lesions
from tumorscale.metrics.pooled import POOLED_METRICS, called_positive, pooled_metrics, pooled_terms
from tumorscale.metrics.segmentation import (
    EmptyCase,
    EmptyPolicy,
    SegmentationScores,
    segmentation_scores,
)
from tumorscale.metrics.surface import (
    SurfaceDistances,
    mean_surface_distance_mm,
    robust_hausdorff_mm,
    surface_dice,
    surface_distances,
)

__all__ = [
    "METRIC_LABELS",
    "POOLED_METRICS",
    "EmptyCase",
    "EmptyPolicy",
    "Evaluation",
    "EvaluationSettings",
    "LesionCounts",
    "LesionMatch",
    "MatchRule",
    "MetricLabel",
    "MetricSummary",
    "PatientDetection",
    "RocCurve",
    "SegmentationScores",
    "SurfaceDistances",
    "bootstrap_ci",
    "called_positive",
    "evaluate_folders",
    "long_label",
    "match_lesions",
    "mean_surface_distance_mm",
    "patient_detection",
    "pooled_metrics",
    "pooled_terms",
    "predicted_tumor_volume_mm3",
    "remove_small_components",
    "robust_hausdorff_mm",
    "roc_curve",
    "segmentation_scores",
    "short_label",
    "summarize",
    "surface_dice",
    "surface_distances",
]
