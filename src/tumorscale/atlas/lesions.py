"""Tumor status and tumor instances per case and organ, from the lesion files' voxels.

Computed on demand and cached under the tumorscale cache folder (never inside the dataset), keyed
by each file's path, size and modification time so an edited file is measured again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import cc3d
import numpy as np

from tumorscale.atlas.index import CaseEntry
from tumorscale.cache import cache_dir
from tumorscale.errors import InputFileError
from tumorscale.io import read_mask_union, write_text_atomic
from tumorscale.sizes import equivalent_diameter_mm

CACHE_VERSION = 1


class TumorStatus(str, Enum):
    POSITIVE = "positive"  # a lesion file with at least one tumor voxel
    CONTROL = "control"  # lesion file(s) present and all zero: explicitly tumor-free
    UNKNOWN = "unknown"  # no lesion file: never guessed negative


@dataclass(frozen=True)
class LesionStats:
    """One organ of one case: status, tumor instances (26-connected) and their sizes."""

    case_id: str
    organ: str
    status: TumorStatus
    diameters_mm: tuple[float, ...] = ()  # equivalent-sphere diameter per instance, largest first
    volume_mm3: float = 0.0
    error: str | None = None  # why the lesion files could not be measured (status is then unknown)

    @property
    def instances(self) -> int:
        return len(self.diameters_mm)


def instance_diameters_mm(mask: np.ndarray, voxel_volume_mm3: float) -> tuple[float, ...]:
    """Equivalent diameters (mm, largest first) of the 26-connected components of a binary mask."""
    labels, count = cc3d.connected_components(
        mask.astype(bool, copy=False), connectivity=26, return_N=True
    )
    if count == 0:
        return ()
    voxel_counts = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    diameters = equivalent_diameter_mm(voxel_counts * voxel_volume_mm3)
    return tuple(float(d) for d in sorted(diameters, reverse=True))


def _file_identity(path: Path) -> list[object]:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def _cache_path(case: CaseEntry, organ: str) -> Path:
    files = case.organ(organ).lesions + ((case.ct,) if case.ct else ())
    key = json.dumps([CACHE_VERSION, organ, *[_file_identity(path) for path in files]])
    digest = hashlib.sha1(key.encode()).hexdigest()
    return cache_dir("lesion-stats", digest[:2]) / f"{digest}.json"


def measure_lesions(case: CaseEntry, organ: str) -> LesionStats:
    """Read an organ's lesion files (union of all name variants) and measure its tumors."""
    lesion_files = case.organ(organ).lesions
    if not lesion_files:
        return LesionStats(case.case_id, organ, TumorStatus.UNKNOWN)
    try:
        mask = read_mask_union(lesion_files, case.ct, case.geometry if case.ct else None)
    except InputFileError as error:
        return LesionStats(case.case_id, organ, TumorStatus.UNKNOWN, error=str(error))
    union, voxel_volume = mask.array, mask.voxel_volume_mm3
    diameters = instance_diameters_mm(union, voxel_volume)
    status = TumorStatus.POSITIVE if diameters else TumorStatus.CONTROL
    volume = float(np.count_nonzero(union)) * voxel_volume
    return LesionStats(case.case_id, organ, status, diameters, volume)


def _load_cached(path: Path) -> LesionStats | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["status"] = TumorStatus(data["status"])
        data["diameters_mm"] = tuple(data["diameters_mm"])
        return LesionStats(**data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def lesion_stats(case: CaseEntry, organ: str, use_cache: bool = True) -> LesionStats:
    """Status and instances of `organ` in `case`, from the cache when the files are unchanged."""
    if not case.organ(organ).lesions:
        return LesionStats(case.case_id, organ, TumorStatus.UNKNOWN)
    cache_file = _cache_path(case, organ) if use_cache else None
    if cache_file is not None and cache_file.exists() and (cached := _load_cached(cache_file)):
        return cached
    stats = measure_lesions(case, organ)
    if cache_file is not None and stats.error is None:
        data = asdict(stats) | {"status": stats.status.value}
        with contextlib.suppress(OSError):  # an unwritable cache only costs time
            write_text_atomic(cache_file, json.dumps(data))
    return stats


def _stats_job(job: tuple[CaseEntry, str, bool]) -> LesionStats:
    return lesion_stats(*job)


def dataset_lesion_stats(
    cases: Iterable[CaseEntry],
    organs: Iterable[str],
    workers: int | None = None,
    use_cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> list[LesionStats]:
    """Lesion statistics for every (case, organ), in case order, computed in parallel processes.

    Pairs without a lesion file are unknown at once; only pairs with files go to the workers.
    """
    pairs = [(case, organ) for case in cases for organ in organs]
    jobs = [(case, organ, use_cache) for case, organ in pairs if case.organ(organ).lesions]
    workers = workers or min(8, os.cpu_count() or 1)
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 and len(jobs) >= 8 else None
    measured = pool.map(_stats_job, jobs, chunksize=4) if pool else map(_stats_job, jobs)
    results: list[LesionStats] = []
    try:
        for case, organ in pairs:
            if case.organ(organ).lesions:
                results.append(next(measured))
            else:
                results.append(LesionStats(case.case_id, organ, TumorStatus.UNKNOWN))
            if progress is not None:
                progress(len(results), len(pairs))
    finally:
        if pool is not None:
            pool.shutdown()
    return results
