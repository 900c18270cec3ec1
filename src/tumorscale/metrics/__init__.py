"""Evaluation metrics: DSC, NSD, HD95, lesion matching, patient-level detection, aggregation."""

from tumorscale.metrics.aggregate import MetricSummary, bootstrap_ci, summarize
from tumorscale.metrics.detection import (
    PatientDetection,
    RocCurve,
    patient_detection,
    predicted_tumor_volume_mm3,
    remove_small_components,
    roc_curve,
)
from tumorscale.metrics.evaluate import Evaluation, EvaluationSettings, evaluate_folders
from tumorscale.metrics.lesions import LesionCounts, LesionMatch, MatchRule, match_lesions
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
    "EmptyCase",
    "EmptyPolicy",
    "Evaluation",
    "EvaluationSettings",
    "LesionCounts",
    "LesionMatch",
    "MatchRule",
    "MetricSummary",
    "PatientDetection",
    "RocCurve",
    "SegmentationScores",
    "SurfaceDistances",
    "bootstrap_ci",
    "evaluate_folders",
    "match_lesions",
    "mean_surface_distance_mm",
    "patient_detection",
    "predicted_tumor_volume_mm3",
    "remove_small_components",
    "robust_hausdorff_mm",
    "roc_curve",
    "segmentation_scores",
    "summarize",
    "surface_dice",
    "surface_distances",
]
