"""The per-organ picture of a dataset that `tumorscale dataset info` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tumorscale.atlas.index import DatasetIndex
from tumorscale.atlas.lesions import LesionStats, TumorStatus
from tumorscale.atlas.problems import Problem
from tumorscale.sizes import SIZE_CLASS_LABELS, size_class_of


def _empty_bins() -> dict[str, int]:
    return {label: 0 for label in SIZE_CLASS_LABELS}


@dataclass
class OrganSummary:
    """Counts for one organ (or, with organ='all', summed over organs)."""

    organ: str
    cases_with_organ: int = 0
    positive: int = 0
    control: int = 0
    unknown: int = 0
    instances: int = 0
    instances_by_size: dict[str, int] = field(default_factory=_empty_bins)

    def add(self, stats: LesionStats, has_mask: bool) -> None:
        self.cases_with_organ += int(has_mask)
        self.positive += int(stats.status == TumorStatus.POSITIVE)
        self.control += int(stats.status == TumorStatus.CONTROL)
        self.unknown += int(stats.status == TumorStatus.UNKNOWN)
        self.instances += stats.instances
        for diameter in stats.diameters_mm:
            self.instances_by_size[size_class_of(diameter).label] += 1

    def to_json(self) -> dict[str, object]:
        return {
            "organ": self.organ,
            "cases_with_organ": self.cases_with_organ,
            "tumor_positive": self.positive,
            "controls": self.control,
            "unknown": self.unknown,
            "tumor_instances": self.instances,
            "instances_by_size_mm": dict(self.instances_by_size),
        }


@dataclass
class DatasetSummary:
    root: Path
    layout: str
    cases: int
    cases_with_any_tumor: int
    organs: list[OrganSummary]
    total: OrganSummary
    problems: list[Problem]

    def to_json(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "layout": self.layout,
            "cases": self.cases,
            "cases_with_any_tumor": self.cases_with_any_tumor,
            "organs": {summary.organ: summary.to_json() for summary in self.organs},
            "total": self.total.to_json(),
            "problems": [problem.to_json() for problem in self.problems],
        }


def summarize(index: DatasetIndex, stats: list[LesionStats], organs: list[str]) -> DatasetSummary:
    """Per-organ counts of cases, tumor status and tumor instances by size (<20, 20-50, >50 mm).

    `stats` from `dataset_lesion_stats(..., with_organ=True)` count an organ only where its mask
    has voxels."""
    per_organ = {organ: OrganSummary(organ) for organ in organs}
    total = OrganSummary("all")
    positive_cases: set[str] = set()
    cases = {case.case_id: case for case in index.cases}
    problems = list(index.problems)
    for item in stats:
        # Counted from the voxels when known (an all-zero mask is no organ), else from the file.
        if item.organ_voxels is not None:
            has_mask = item.organ_voxels > 0
        else:
            has_mask = cases[item.case_id].organ(item.organ).has_mask
        per_organ[item.organ].add(item, has_mask)
        total.add(item, has_mask)
        if item.status == TumorStatus.POSITIVE:
            positive_cases.add(item.case_id)
        if item.error is not None:
            path, _, reason = item.error.partition(": ")
            problems.append(Problem(Path(path), reason or item.error))
    return DatasetSummary(
        index.root,
        index.layout,
        len(index.cases),
        len(positive_cases),
        list(per_organ.values()),
        total,
        problems,
    )
