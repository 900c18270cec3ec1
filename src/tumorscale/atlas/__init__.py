"""AbdomenAtlas 2.0 datasets: layouts, case index, tumor status, instances, summary, checks."""

from tumorscale.atlas.case import CaseData, load_case
from tumorscale.atlas.check import check_case, check_dataset, has_errors
from tumorscale.atlas.index import CaseEntry, DatasetIndex, OrganFiles, index_dataset
from tumorscale.atlas.layout import CaseFiles, discover_cases
from tumorscale.atlas.lesions import (
    LesionStats,
    TumorStatus,
    dataset_lesion_stats,
    instance_diameters_mm,
    lesion_stats,
)
from tumorscale.atlas.problems import Problem, Severity
from tumorscale.atlas.summary import DatasetSummary, OrganSummary, summarize
from tumorscale.sizes import SIZE_CLASSES, SizeClass, equivalent_diameter_mm, size_class_of

__all__ = [
    "SIZE_CLASSES",
    "CaseData",
    "CaseEntry",
    "CaseFiles",
    "DatasetIndex",
    "DatasetSummary",
    "LesionStats",
    "OrganFiles",
    "OrganSummary",
    "Problem",
    "Severity",
    "SizeClass",
    "TumorStatus",
    "check_case",
    "check_dataset",
    "dataset_lesion_stats",
    "discover_cases",
    "equivalent_diameter_mm",
    "has_errors",
    "index_dataset",
    "instance_diameters_mm",
    "lesion_stats",
    "load_case",
    "size_class_of",
    "summarize",
]
