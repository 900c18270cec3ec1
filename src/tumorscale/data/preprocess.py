"""Preprocessing an AbdomenAtlas dataset into the cache: RAS, resampled, bit-packed, indexed.

Per case: the CT (canonical RAS) is resampled trilinearly to the target spacing and stored as
int16 HU; every structure file is resampled by nearest neighbour onto the same grid and packed
into one uint64 bit volume (`tumorscale.data.cache.STRUCTURES`); organs and lesions get a seeded
sample of voxel locations; tumor status per organ comes from the lesion files at their original
resolution (a lesion smaller than a resampled voxel keeps its case positive).

Resumable: a case is rebuilt from scratch unless its `.complete` marker (`tumorscale.jobs`,
written last) records the same source files (name, size, modification time) and the cache's
format, and its outputs are intact; a crash mid-case leaves no marker. One run per cache folder
at a time.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from tumorscale.atlas import CaseEntry, TumorStatus, index_dataset
from tumorscale.data.cache import (
    BITS_DTYPE,
    COMPLETE_MARKER,
    IMAGE_NAME,
    LESION_STRUCTURES,
    LOCATION_STRUCTURES,
    LOCATIONS_NAME,
    META_NAME,
    STRUCTURE_BITS,
    STRUCTURES_NAME,
    BitMask,
    case_dir,
    init_cache,
    structure_bit,
    write_b2nd_atomic,
)
from tumorscale.data.resample import resample_image, resample_labels_to_ras, resized_affine
from tumorscale.data.settings import FORMAT_VERSION, PreprocessSettings
from tumorscale.errors import InputFileError, TumorscaleError
from tumorscale.io import (
    Volume,
    atomic_path,
    check_same_grid,
    input_fingerprint,
    read_nifti,
    write_text_atomic,
)
from tumorscale.io.fingerprint import Fingerprint
from tumorscale.jobs import (
    JobReport,
    Outcome,
    Progress,
    State,
    Tally,
    attempt,
    marker_state,
    run_cases,
    write_marker,
)
from tumorscale.organs import TUMOR_ORGANS
from tumorscale.synth.phase import HOST_STRUCTURES, KIDNEY_PARTS, estimate_scan_phase
from tumorscale.workers import process_pool

LESION_NAMES = frozenset(LESION_STRUCTURES.values())
OUTPUT_NAMES = (IMAGE_NAME, STRUCTURES_NAME, LOCATIONS_NAME, META_NAME)
_MARKER_SETTINGS = {"format_version": FORMAT_VERSION}
# What a bad case raises while it is preprocessed; anything else is a bug.
_CASE_ERRORS = (TumorscaleError, OSError, ValueError, MemoryError, RuntimeError)


# ----------------------------------------------------------------------------- one case


def source_signature(entry: CaseEntry) -> Fingerprint:
    """What a cached case is made from: name, size and mtime of the CT and every segmentation
    file (`io.input_fingerprint`; names, so a dataset moved with its times kept stays cached)."""
    return input_fingerprint(([entry.ct] if entry.ct else []) + entry.segmentation_files)


def case_state(folder: Path, signature: Fingerprint) -> State:
    """Whether `folder` holds a finished case made from files with `signature` (or one made
    from files that changed since)."""
    return marker_state(folder / COMPLETE_MARKER, signature, _MARKER_SETTINGS)


def is_complete(folder: Path, signature: Fingerprint) -> bool:
    """True when `folder` holds a finished case made from files with `signature`."""
    return case_state(folder, signature) is State.COMPLETE


def _structure_files(entry: CaseEntry) -> dict[Path, list[str]]:
    """Each segmentation file and the structures it belongs to (a kidney part: also 'kidney')."""
    owners: dict[Path, list[str]] = {}
    for organ in TUMOR_ORGANS:
        files = entry.organ(organ)
        for path in files.masks:
            owners.setdefault(path, []).append(organ)
            stem = _stem(path)
            if stem != organ and stem in STRUCTURE_BITS:
                owners[path].append(stem)
        for path in files.lesions:
            owners.setdefault(path, []).append(LESION_STRUCTURES[organ])
    for name, path in entry.structures.items():
        if name in STRUCTURE_BITS:
            owners.setdefault(path, []).append(name)
    return owners


def _stem(path: Path) -> str:
    return path.name.removesuffix(".gz").removesuffix(".nii")


def _read_mask(path: Path, entry: CaseEntry) -> Volume:
    """A binary mask in its on-disk orientation; `InputFileError` naming the file if it is not
    readable or not on the CT's grid."""
    assert entry.ct is not None and entry.geometry is not None
    mask = read_nifti(path, kind="mask", canonical=False)
    check_same_grid(path, mask.geometry, entry.ct, entry.geometry)
    return mask


def pack_structures(
    entry: CaseEntry, new_shape: tuple[int, int, int]
) -> tuple[np.ndarray, dict[str, int]]:
    """The uint64 structure-bit volume on the resampled RAS grid, and the original-resolution
    voxel count of each structure that has a file (lesions: of the union of all their files)."""
    bits = np.zeros(new_shape, dtype=BITS_DTYPE)
    counts: dict[str, int] = {}
    lesion_unions: dict[str, np.ndarray] = {}  # on-disk grid: only for counting voxels
    for path, names in _structure_files(entry).items():
        mask = _read_mask(path, entry)
        value = np.uint64(sum(1 << STRUCTURE_BITS[name] for name in set(names)))
        inside = resample_labels_to_ras(mask, new_shape).view(bool)  # validated 0/1 uint8
        np.bitwise_or(bits, value, out=bits, where=inside)
        for name in names:
            if name not in LESION_NAMES:
                counts[name] = counts.get(name, 0) + int(np.count_nonzero(mask.array))
            elif name in lesion_unions:
                np.logical_or(lesion_unions[name], mask.array, out=lesion_unions[name])
            else:
                lesion_unions[name] = mask.array.astype(bool)
    counts |= {name: int(np.count_nonzero(union)) for name, union in lesion_unions.items()}
    return bits, counts


def tumor_status(entry: CaseEntry, counts: dict[str, int]) -> dict[str, str]:
    """Per organ: positive (a lesion voxel), control (lesion files, all empty), unknown (none)."""
    status = {}
    for organ in TUMOR_ORGANS:
        if not entry.organ(organ).lesions:
            status[organ] = TumorStatus.UNKNOWN.value
        elif counts.get(LESION_STRUCTURES[organ], 0) > 0:
            status[organ] = TumorStatus.POSITIVE.value
        else:
            status[organ] = TumorStatus.CONTROL.value
    return status


def sample_locations(
    bits: np.ndarray, case_id: str, settings: PreprocessSettings
) -> dict[str, np.ndarray]:
    """Per organ/lesion present: sorted sampled voxel indices (N, 3) uint16 (nnU-Net's rule:
    max(min(n, limit), ceil(n * min_fraction)) of its n voxels), seeded by case and structure."""
    locations = {}
    for name in LOCATION_STRUCTURES:
        bit = STRUCTURE_BITS[name]
        flat = np.flatnonzero(bits & np.uint64(1 << bit))  # C order: unravel gives (i, j, k)
        if flat.size == 0:
            continue
        count = max(min(flat.size, settings.locations_per_structure),
                    math.ceil(flat.size * settings.locations_min_fraction))
        rng = np.random.default_rng([settings.seed, zlib.crc32(case_id.encode()), bit])
        chosen = np.sort(rng.choice(flat, size=count, replace=False))
        locations[name] = np.stack(np.unravel_index(chosen, bits.shape), axis=1).astype(np.uint16)
    return locations


def _geometry_record(shape: tuple[int, ...], affine: np.ndarray) -> dict[str, object]:
    affine = np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return {"shape": [int(n) for n in shape], "affine": affine.tolist(),
            "spacing_mm": [float(s) for s in spacing]}


def _voxels(bits: np.ndarray, name: str) -> int:
    return int(np.count_nonzero(bits & np.uint64(1 << STRUCTURE_BITS[name])))


def _synthesis_masks(entry: CaseEntry) -> list[str]:
    """Names the synthesizer gets for this case: the source's own mask names, lesions left out."""
    names = []
    for organ in TUMOR_ORGANS:
        for path in entry.organ(organ).masks:
            stem = _stem(path)
            names.append(stem if stem in STRUCTURE_BITS else organ)
    names += [name for name in entry.structures if name in STRUCTURE_BITS]
    return sorted(set(names))


PHASE_STRUCTURES = (*HOST_STRUCTURES, *KIDNEY_PARTS)  # what the phase estimate reads


def contrast_phase_record(
    hu: np.ndarray, bits: np.ndarray, counts: dict[str, int]
) -> dict[str, object]:
    """The scan's contrast phase, estimated once here so that on-the-fly synthesis reads it
    instead of measuring it on every patch region (`tumorscale.synth.phase`)."""
    masks = {name: BitMask(bits, structure_bit(name))
             for name in PHASE_STRUCTURES if counts.get(name)}
    return estimate_scan_phase(hu, masks).to_record()


def preprocess_case(entry: CaseEntry, folder: Path, settings: PreprocessSettings) -> dict:
    """Preprocess one case into `folder` (wiped first; the marker is written last); returns
    its metadata. Raises `InputFileError` naming the file for an unreadable or off-grid file."""
    if entry.ct is None or entry.geometry is None:
        raise entry.ct_problem() or InputFileError(entry.folder, "no readable ct.nii.gz")
    signature = source_signature(entry)
    shutil.rmtree(folder, ignore_errors=True)  # stale temporaries of an interrupted run
    folder.mkdir(parents=True)
    ct = read_nifti(entry.ct, kind="image")
    image = resample_image(ct, settings.preprocessing.spacing_mm)
    new_shape = image.shape
    hu = np.clip(np.rint(image.array), -32768, 32767).astype(np.int16)
    del image
    bits, counts = pack_structures(entry, new_shape)
    locations = sample_locations(bits, entry.case_id, settings)
    meta = {
        "case_id": entry.case_id,
        "format_version": FORMAT_VERSION,
        "source_ct": str(entry.ct),
        "original": _geometry_record(ct.shape, ct.affine) | {
            "on_disk_orientation": entry.geometry.orientation,
            "on_disk_shape": list(entry.geometry.shape),
            "on_disk_affine": np.asarray(entry.geometry.affine, dtype=float).tolist(),
        },
        "preprocessed": _geometry_record(new_shape, resized_affine(ct.affine, ct.shape, new_shape)),
        "tumor_status": tumor_status(entry, counts),
        "lesion_voxels": {organ: _voxels(bits, LESION_STRUCTURES[organ]) for organ in TUMOR_ORGANS},
        "lesion_voxels_original": {organ: counts.get(LESION_STRUCTURES[organ], 0)
                                   for organ in TUMOR_ORGANS},
        "structures": sorted(counts, key=STRUCTURE_BITS.__getitem__),
        "synthesis_masks": _synthesis_masks(entry),
        "hu_range": [int(hu.min()), int(hu.max())],
        "contrast_phase": contrast_phase_record(hu, bits, counts),
    }
    write_b2nd_atomic(folder / IMAGE_NAME, hu, settings)
    write_b2nd_atomic(folder / STRUCTURES_NAME, bits, settings)
    with atomic_path(folder / LOCATIONS_NAME) as temporary, temporary.open("wb") as stream:
        np.savez_compressed(stream, **locations)
    write_text_atomic(folder / META_NAME, json.dumps(meta, indent=1) + "\n")
    outputs = [folder / name for name in OUTPUT_NAMES]
    write_marker(folder / COMPLETE_MARKER, signature, _MARKER_SETTINGS, outputs)
    return meta


def _run_case(job: tuple[CaseEntry, Path, PreprocessSettings]) -> list[Outcome]:
    """Preprocess one case; a failure's reason names the file."""
    entry, folder, settings = job
    return [attempt(entry.case_id, entry.folder, preprocess_case, entry, folder, settings,
                    errors=_CASE_ERRORS)]  # fmt: skip


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # workers share the cores instead of oversubscribing them


# ----------------------------------------------------------------------------- dataset


def _select(entries: list[CaseEntry], case_ids: Iterable[str] | None,
            report: JobReport) -> list[CaseEntry]:
    if case_ids is None:
        return entries
    wanted = set(case_ids)
    known = {entry.case_id for entry in entries}
    report.failed += [(case, "not in the dataset") for case in sorted(wanted - known)]
    return [entry for entry in entries if entry.case_id in wanted]


def preprocess_dataset(
    data_root: str | Path,
    cache_root: str | Path,
    settings: PreprocessSettings | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    *,
    case_ids: Iterable[str] | None = None,
) -> JobReport:
    """Preprocess every case of an AbdomenAtlas dataset (or `case_ids`) into `cache_root`.

    Cases already complete from unchanged files are skipped (`report.changed`: cases made again
    because their files changed); bad cases are recorded in the report and the others go on.
    `workers` > 1 runs cases in that many processes. `progress(done, total)` counts cases
    (done, skipped or failed), in the calling process. Raises `CacheSettingsError` when the
    cache holds other settings, and `DatasetError` when `data_root` is not a dataset.
    """
    settings = settings or PreprocessSettings()
    index = index_dataset(data_root)
    root = init_cache(cache_root, settings)
    report = JobReport(root)
    todo: list[tuple[CaseEntry, Path, PreprocessSettings]] = []
    selected = _select(index.cases, case_ids, report)
    for entry in selected:
        folder = case_dir(root, entry.case_id)
        state = State.TODO
        if entry.ct is not None:
            state = case_state(folder, source_signature(entry))
        if state is State.COMPLETE:
            report.skipped.append(entry.case_id)
            continue
        if state is State.CHANGED:
            report.changed.append(entry.case_id)
        todo.append((entry, folder, settings))
    tally = Tally(len(selected), progress)
    tally.start(len(report.skipped))
    workers = max(1, min(int(workers), len(todo)))
    threads = max(1, (os.cpu_count() or 1) // workers)

    def pool(count: int):  # spawn: torch's OpenMP pool is not fork-safe once the parent used it
        return process_pool(count, _init_worker, (threads,), spawn=True)

    run_cases(todo, _run_case, report, tally, workers, pool)
    return report.finish()
