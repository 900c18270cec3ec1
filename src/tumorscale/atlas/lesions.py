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
from dataclasses import asdict, dataclass, replace
from enum import Enum
from pathlib import Path

import numpy as np

from tumorscale.atlas.index import CaseEntry
from tumorscale.errors import InputFileError
from tumorscale.io import read_mask_union, write_text_atomic
from tumorscale.masks import label_components
from tumorscale.sizes import equivalent_diameter_mm
from tumorscale.user_cache import user_cache_dir
from tumorscale.workers import process_pool

CACHE_VERSION = 2


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
    organ_voxels: int | None = None  # voxels in the organ's mask; None without a readable mask

    @property
    def instances(self) -> int:
        return len(self.diameters_mm)


def instance_diameters_mm(mask: np.ndarray, voxel_volume_mm3: float) -> tuple[float, ...]:
    """Equivalent diameters (mm, largest first) of the 26-connected components of a binary mask."""
    _, voxel_counts = label_components(mask)
    if voxel_counts.size == 0:
        return ()
    diameters = equivalent_diameter_mm(voxel_counts * voxel_volume_mm3)
    return tuple(float(d) for d in sorted(diameters, reverse=True))


def _file_identity(path: Path) -> list[object]:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def _cache_path(case: CaseEntry, organ: str, with_organ: bool) -> Path:
    masks = case.organ(organ).masks if with_organ else ()
    files = case.organ(organ).lesions + masks + ((case.ct,) if case.ct else ())
    key = json.dumps([CACHE_VERSION, organ, with_organ, *[_file_identity(p) for p in files]])
    digest = hashlib.sha1(key.encode()).hexdigest()
    return user_cache_dir("lesion-stats", digest[:2]) / f"{digest}.json"


def _usable_cache_path(case: CaseEntry, organ: str, with_organ: bool) -> Path | None:
    """The cache file, or None when the cache folder cannot be made (it only costs time)."""
    try:
        return _cache_path(case, organ, with_organ)
    except OSError:
        return None


def _organ_voxels(case: CaseEntry, organ: str) -> int | None:
    """Voxels in the organ's mask (an all-zero mask is no organ), None when unreadable."""
    masks = case.organ(organ).masks
    if not masks:
        return None
    try:
        union = read_mask_union(masks, case.ct, case.geometry if case.ct else None).array
    except InputFileError:  # `dataset check` reports the file; here the organ is not counted
        return None
    return int(np.count_nonzero(union))


def measure_lesions(case: CaseEntry, organ: str, with_organ: bool = False) -> LesionStats:
    """Read an organ's lesion files (union of all name variants) and measure its tumors; with
    `with_organ`, also count the voxels of its mask (reading it costs as much again)."""
    stats = _measure_lesion_files(case, organ)
    return replace(stats, organ_voxels=_organ_voxels(case, organ)) if with_organ else stats


def _measure_lesion_files(case: CaseEntry, organ: str) -> LesionStats:
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


def lesion_stats(
    case: CaseEntry, organ: str, use_cache: bool = True, with_organ: bool = False
) -> LesionStats:
    """Status and instances of `organ` in `case`, from the cache when the files are unchanged
    (`with_organ`: and the voxel count of its mask, `organ_voxels`)."""
    if not _has_files(case, organ, with_organ):
        return LesionStats(case.case_id, organ, TumorStatus.UNKNOWN)
    cache_file = _usable_cache_path(case, organ, with_organ) if use_cache else None
    if cache_file is not None and cache_file.exists() and (cached := _load_cached(cache_file)):
        return cached
    stats = measure_lesions(case, organ, with_organ)
    if cache_file is not None and stats.error is None:
        data = asdict(stats) | {"status": stats.status.value}
        with contextlib.suppress(OSError):  # an unwritable cache only costs time
            write_text_atomic(cache_file, json.dumps(data))
    return stats


def _has_files(case: CaseEntry, organ: str, with_organ: bool) -> bool:
    return bool(case.organ(organ).lesions or (with_organ and case.organ(organ).masks))


def _stats_job(job: tuple[CaseEntry, str, bool, bool]) -> LesionStats:
    return lesion_stats(*job)


def dataset_lesion_stats(
    cases: Iterable[CaseEntry],
    organs: Iterable[str],
    workers: int | None = None,
    use_cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
    with_organ: bool = False,
) -> list[LesionStats]:
    """Lesion statistics for every (case, organ), in case order, computed in parallel processes
    (`with_organ`: with each organ mask's voxel count, as `dataset info` counts organs).

    Pairs without files to read are unknown at once; only the others go to the workers.
    """
    pairs = [(case, organ) for case in cases for organ in organs]
    jobs = [(case, organ, use_cache, with_organ) for case, organ in pairs
            if _has_files(case, organ, with_organ)]  # fmt: skip
    workers = workers or min(8, os.cpu_count() or 1)
    pool = process_pool(workers) if workers > 1 and len(jobs) >= 8 else None
    measured = pool.map(_stats_job, jobs, chunksize=4) if pool else map(_stats_job, jobs)
    results: list[LesionStats] = []
    try:
        for case, organ in pairs:
            if _has_files(case, organ, with_organ):
                results.append(next(measured))
            else:
                results.append(LesionStats(case.case_id, organ, TumorStatus.UNKNOWN))
            if progress is not None:
                progress(len(results), len(pairs))
    finally:
        if pool is not None:
            pool.shutdown()
    return results
