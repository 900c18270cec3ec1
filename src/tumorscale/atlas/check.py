"""`dataset check`: read every file of every case and list every problem, never stopping early."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from tumorscale.atlas.index import CaseEntry, DatasetIndex
from tumorscale.atlas.problems import Problem, Severity
from tumorscale.errors import InputFileError
from tumorscale.io import check_same_grid, read_nifti


def check_case(case: CaseEntry) -> list[Problem]:
    """Problems of one case's files: unreadable, not 3-D, NaN/Inf, non-binary masks, grid mismatch.

    The CT itself is read only when its header was readable (the index already reported it if not).
    """
    problems: list[Problem] = []
    if case.ct is not None and case.geometry is not None:
        try:
            read_nifti(case.ct, kind="image", canonical=False)
        except InputFileError as error:
            problems.append(Problem(error.path, error.reason))
    for path in case.segmentation_files:
        try:
            mask = read_nifti(path, kind="mask", canonical=False)
            if case.geometry is not None and case.ct is not None:
                check_same_grid(path, mask.geometry, case.ct, case.geometry)
        except InputFileError as error:
            problems.append(Problem(error.path, error.reason))
    return problems


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
        pool = ProcessPoolExecutor(max_workers=workers)
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
