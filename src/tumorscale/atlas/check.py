"""`dataset check`: read every file of every case and list every problem, never stopping early."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tumorscale.atlas.index import CaseEntry, DatasetIndex
from tumorscale.atlas.problems import Problem, Severity
from tumorscale.errors import InputFileError
from tumorscale.io import check_same_grid, read_nifti
from tumorscale.workers import process_pool

# A CT whose values all lie in 0..4095 with air above this is raw scanner values, not HU.
_RAW_VALUES_MIN_MAX = 1000.0
# Share of a lesion's voxels outside its organ above which the lesion is reported.
_OUTSIDE_ORGAN_SHARE = 0.5
# Dice between kidney.nii.gz and kidney_left ∪ kidney_right below which they disagree.
_KIDNEY_AGREEMENT = 0.9
_KIDNEY_NAMES = {"kidney", "kidney_left", "kidney_right"}


def check_case(case: CaseEntry) -> list[Problem]:
    """Problems of one case's files: unreadable, not 3-D, NaN/Inf, non-binary masks, grid
    mismatch (errors); CT values that look unrescaled, lesions outside their organ, a kidney
    mask that disagrees with its left and right parts (warnings).

    The CT itself is read only when its header was readable (the index already reported it if not).
    """
    problems: list[Problem] = []
    if case.ct is not None and case.geometry is not None:
        try:
            ct = read_nifti(case.ct, kind="image", canonical=False)
            problems.extend(_raw_values(case.ct, ct.array))
        except InputFileError as error:
            problems.append(Problem(error.path, error.reason))
    masks: dict[Path, np.ndarray] = {}  # only those the cross-checks need (memory)
    needed = _cross_checked(case)
    for path in case.segmentation_files:
        try:
            mask = read_nifti(path, kind="mask", canonical=False)
            if case.geometry is not None and case.ct is not None:
                check_same_grid(path, mask.geometry, case.ct, case.geometry)
            if path in needed:
                masks[path] = mask.array.astype(bool, copy=False)
        except InputFileError as error:
            problems.append(Problem(error.path, error.reason))
    return problems + _lesions_outside_organs(case, masks) + _kidney_disagreement(case, masks)


def _cross_checked(case: CaseEntry) -> set[Path]:
    """Lesion files with their organ's masks, and the kidney files."""
    paths = {p for p in case.segmentation_files if p.name.split(".")[0] in _KIDNEY_NAMES}
    for files in case.organs.values():
        if files.lesions:
            paths.update(files.lesions + files.masks)
    return paths


def _raw_values(path: Path, array: np.ndarray) -> list[Problem]:
    low, high = float(array.min()), float(array.max())
    if low >= 0 and high > _RAW_VALUES_MIN_MAX:
        return [Problem(path, f"values {low:g}..{high:g} look like raw scanner values, not HU "
                              "(air should be near -1000; rescale slope/intercept missing?)",
                        Severity.WARNING)]  # fmt: skip
    return []


def _union(paths: tuple[Path, ...], masks: dict[Path, np.ndarray]) -> np.ndarray | None:
    """The union of `paths`' masks, or None when one is missing or unreadable."""
    if not paths or any(path not in masks for path in paths):
        return None
    union = masks[paths[0]].copy()
    for path in paths[1:]:
        if masks[path].shape != union.shape:
            return None
        union |= masks[path]
    return union


def _lesions_outside_organs(case: CaseEntry, masks: dict[Path, np.ndarray]) -> list[Problem]:
    problems = []
    for organ, files in case.organs.items():
        organ_mask = _union(files.masks, masks)
        if organ_mask is None:
            continue
        for path in files.lesions:
            lesion = masks.get(path)
            if lesion is None or lesion.shape != organ_mask.shape or not lesion.any():
                continue
            outside = float(np.count_nonzero(lesion & ~organ_mask)) / np.count_nonzero(lesion)
            if outside > _OUTSIDE_ORGAN_SHARE:
                problems.append(Problem(path, f"{outside:.0%} of the lesion lies outside the "
                                              f"{organ} mask", Severity.WARNING))  # fmt: skip
    return problems


def _kidney_disagreement(case: CaseEntry, masks: dict[Path, np.ndarray]) -> list[Problem]:
    by_name = {path.name.split(".")[0]: path for path in masks}
    if not set(by_name) >= _KIDNEY_NAMES:
        return []
    whole = masks[by_name["kidney"]]
    parts = _union((by_name["kidney_left"], by_name["kidney_right"]), masks)
    if parts is None or parts.shape != whole.shape:
        return []
    total = np.count_nonzero(whole) + np.count_nonzero(parts)
    dice = 2 * np.count_nonzero(whole & parts) / total if total else 1.0
    if dice >= _KIDNEY_AGREEMENT:
        return []
    return [Problem(by_name["kidney"], f"disagrees with kidney_left ∪ kidney_right "
                                       f"(Dice {dice:.2f})", Severity.WARNING)]  # fmt: skip


def check_dataset(
    index: DatasetIndex,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Problem]:
    """Every problem in the dataset (index problems first, then per case, in case order)."""
    problems = list(index.problems)
    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(index.cases) < 2:
        results = map(check_case, index.cases)
        pool = None
    else:
        pool = process_pool(workers)
        results = pool.map(check_case, index.cases)
    try:
        for done, case_problems in enumerate(results, start=1):
            problems.extend(case_problems)
            if progress is not None:
                progress(done, len(index.cases))
    finally:
        if pool is not None:
            pool.shutdown()
    return problems


def has_errors(problems: list[Problem]) -> bool:
    return any(problem.severity == Severity.ERROR for problem in problems)
