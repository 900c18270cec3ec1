"""The AbdomenAtlas 2.0 index: which files each case has and what they mean, from headers only.

Tumor status and tumor instances need voxel data; they come from `tumorscale.atlas.lesions`,
on demand and cached outside the dataset.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tumorscale.atlas.layout import CaseFiles, discover_cases
from tumorscale.atlas.problems import Problem, Severity
from tumorscale.errors import InputFileError
from tumorscale.io import Geometry, read_geometry
from tumorscale.organs import ORGANS, TUMOR_ORGANS, FileRole, classify_segmentation, nifti_stem


@dataclass(frozen=True)
class OrganFiles:
    """One organ's files in one case: mask file(s) whose union is the organ, and lesion files."""

    organ: str
    masks: tuple[Path, ...] = ()
    lesions: tuple[Path, ...] = ()
    # Part masks (kidney_left, kidney_right) present beside the whole organ's mask, which wins:
    # still listed, read and checked (`dataset check` compares them with the whole).
    superseded: tuple[Path, ...] = ()

    @property
    def has_mask(self) -> bool:
        return bool(self.masks)

    @property
    def has_lesion_file(self) -> bool:
        return bool(self.lesions)


@dataclass(frozen=True)
class CaseEntry:
    """One indexed case; `geometry` is the CT on-disk grid (None if missing or unreadable)."""

    case_id: str
    folder: Path
    ct: Path | None
    geometry: Geometry | None
    organs: dict[str, OrganFiles]
    structures: dict[str, Path] = field(default_factory=dict)
    unknown_files: tuple[Path, ...] = ()

    def organ(self, name: str) -> OrganFiles:
        return self.organs.get(name, OrganFiles(name))

    def ct_problem(self) -> InputFileError | None:
        """Why the CT cannot be used (the reader's own error, naming the file), or None."""
        if self.ct is None:
            return InputFileError(self.folder, "case folder has no ct.nii.gz")
        if self.geometry is not None:
            return None
        try:
            read_geometry(self.ct)
        except InputFileError as error:
            return error
        return None  # fine: indexed without reading headers

    @property
    def segmentation_files(self) -> list[Path]:
        """Every recognised mask file of the case (organs, lesions, other structures)."""
        files = [
            path
            for entry in self.organs.values()
            for path in (*entry.masks, *entry.lesions, *entry.superseded)
        ]
        return sorted({*files, *self.structures.values()})


@dataclass
class DatasetIndex:
    root: Path
    layout: str
    cases: list[CaseEntry]
    problems: list[Problem]

    def __len__(self) -> int:
        return len(self.cases)

    def case(self, case_id: str) -> CaseEntry:
        for entry in self.cases:
            if entry.case_id == case_id:
                return entry
        raise KeyError(case_id)


def _segmentation_files(folder: Path | None) -> list[Path]:
    if folder is None:
        return []
    with os.scandir(folder) as entries:
        return sorted(folder / entry.name for entry in entries if _is_file(entry))


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:  # a symlink loop: listed, so that reading it reports the case's problem
        return True


def _group_files(files: list[Path]) -> tuple[dict[str, OrganFiles], dict[str, Path], list[Path]]:
    masks: dict[str, dict[str, Path]] = {organ: {} for organ in TUMOR_ORGANS}
    lesions: dict[str, list[Path]] = {organ: [] for organ in TUMOR_ORGANS}
    structures: dict[str, Path] = {}
    unknown: list[Path] = []
    for path in files:
        stem = nifti_stem(path.name)
        if stem is None:
            if not path.name.startswith((".", "_")):
                unknown.append(path)
            continue
        meaning = classify_segmentation(stem)
        if meaning.role in (FileRole.ORGAN_MASK, FileRole.ORGAN_PART):
            masks[meaning.organ][stem] = path
        elif meaning.role == FileRole.LESION:
            lesions[meaning.organ].append(path)
        elif meaning.role == FileRole.OTHER_STRUCTURE:
            structures[stem] = path
        elif meaning.role == FileRole.UNKNOWN:
            unknown.append(path)
    organs = {}
    for organ in TUMOR_ORGANS:
        entry = ORGANS[organ]
        whole = [masks[organ][name] for name in entry.mask_files if name in masks[organ]]
        parts = [masks[organ][name] for name in entry.mask_part_files if name in masks[organ]]
        organs[organ] = OrganFiles(
            organ, tuple(whole or parts), tuple(lesions[organ]), tuple(parts) if whole else ()
        )
    return organs, structures, unknown


def _index_case(files: CaseFiles, read_headers: bool) -> tuple[CaseEntry, list[Problem]]:
    problems: list[Problem] = []
    geometry = None
    if files.ct is None:
        problems.append(Problem(files.folder, "case folder has no ct.nii.gz"))
    elif read_headers:
        try:
            geometry = read_geometry(files.ct)
        except InputFileError as error:
            problems.append(Problem(error.path, error.reason))
    organs, structures, unknown = _group_files(_segmentation_files(files.segmentations))
    problems.extend(
        Problem(path, "unknown segmentation file name (ignored)", Severity.WARNING)
        for path in unknown
    )
    entry = CaseEntry(
        files.case_id, files.folder, files.ct, geometry, organs, structures, tuple(unknown)
    )
    return entry, problems


def index_dataset(
    root: str | Path,
    read_headers: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetIndex:
    """Index an AbdomenAtlas 2.0 folder (either layout) reading file names and CT headers only.

    Never writes inside `root`. Problems (missing CT, unreadable header, unknown file names) are
    collected in `DatasetIndex.problems`; the other cases stay usable.
    """
    root = Path(root)
    layout, found = discover_cases(root)
    cases: list[CaseEntry] = []
    problems: list[Problem] = []
    # One thread: a header read is ~0.3 ms of Python work; threads only add GIL contention
    # (benchmarks/bench_index.py measured 1.4x slower with 2-8 threads).
    for done, files in enumerate(found, start=1):
        entry, case_problems = _index_case(files, read_headers)
        cases.append(entry)
        problems.extend(case_problems)
        if progress is not None and (done % 100 == 0 or done == len(found)):
            progress(done, len(found))
    return DatasetIndex(root, layout, cases, problems)
