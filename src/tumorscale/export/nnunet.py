"""Export AbdomenAtlas cases (real and offline-synthetic) as an nnU-Net v2 raw dataset.

    OUT/Dataset501_Tumorscale/imagesTr/<case>_0000.nii.gz   the CT, byte-identical when .nii.gz
    OUT/Dataset501_Tumorscale/labelsTr/<case>.nii.gz        uint8 label map on the CT's grid
    OUT/Dataset501_Tumorscale/dataset.json                  written last, lists the finished cases
    OUT/Dataset501_Tumorscale/.tumorscale/<case>.json       per-case completion record (reruns)

Labels: 0 background, 1..N the selected organs' lesions (`pancreas_lesion`, ... in registry
order), then with `organ_classes` N+1..2N the organs themselves; a lesion wins over an organ.

Unknown tumor status is never guessed negative: nnU-Net reads every unlabelled voxel as
background, so a case is exported only when every selected organ has a lesion file (positive or
control), and with `organ_classes` an organ mask. `unknown_as_background=True` opts in to
exporting such cases with the organ as background; dataset.json then lists them per case.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from tumorscale.atlas import CaseEntry, index_dataset
from tumorscale.errors import DatasetError
from tumorscale.io import (
    Geometry,
    atomic_path,
    input_fingerprint,
    read_geometry,
    read_mask_union,
    read_nifti,
    write_text_atomic,
)
from tumorscale.jobs import (
    JobReport,
    Outcome,
    Progress,
    State,
    Tally,
    attempt,
    clear_marker,
    marker_state,
    run_cases,
    write_marker,
)
from tumorscale.organs import ORGANS, TUMOR_ORGANS

FORMAT_VERSION = 1
FILE_ENDING = ".nii.gz"
CHANNEL_SUFFIX = "_0000"
STATE_FOLDER = ".tumorscale"
DATASET_JSON = "dataset.json"
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_SYNTHETIC_ID = re.compile(r"^(?P<source>.+)_syn\d{2}$")

# The export's JobReport: `details` holds `labels` and
# `unknown_as_background` (case id -> organs whose unknown status was exported as background)


@dataclass(frozen=True)
class _CaseJob:
    """One case to export: its CT and, per selected organ, lesion files and mask files."""

    case_id: str
    synthetic: bool
    folder: Path
    ct: Path
    lesions: tuple[tuple[Path, ...], ...]
    masks: tuple[tuple[Path, ...], ...]  # empty unless organ classes are exported
    unknown: tuple[str, ...] = ()  # organs exported as background although their status is unknown


# ----------------------------------------------------------------------------- naming


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """`DatasetXXX_Name` (XXX: the id zero-padded to 3 digits); raises ValueError when invalid."""
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int | np.integer):
        raise ValueError(f"dataset id must be an integer in 1..999; got {dataset_id!r}")
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"dataset id must be in 1..999 (nnU-Net uses 3 digits); got {dataset_id}")
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise ValueError(f"dataset name must be letters, digits, '_' or '-'; got {name!r}")
    return f"Dataset{int(dataset_id):03d}_{name}"


def label_names(organs: Sequence[str], organ_classes: bool = False) -> dict[str, int]:
    """nnU-Net `labels`: background 0, each organ's lesion, then (optionally) each organ."""
    labels = {"background": 0}
    for organ in organs:
        labels[ORGANS[organ].lesion_file] = len(labels)
    if organ_classes:
        for organ in organs:
            labels[organ] = len(labels)
    return labels


def _selected_organs(organs: Sequence[str] | None) -> tuple[str, ...]:
    if organs is None:
        return TUMOR_ORGANS
    unknown = [organ for organ in organs if organ not in TUMOR_ORGANS]
    if unknown or not organs:
        raise ValueError(f"organs must be among {', '.join(TUMOR_ORGANS)}; got {list(organs)!r}")
    return tuple(organ for organ in TUMOR_ORGANS if organ in set(organs))


# ----------------------------------------------------------------------------- selection


def _plan_case(
    case: CaseEntry, organs: Sequence[str], organ_classes: bool, unknown_as_background: bool,
    synthetic: bool,
) -> tuple[_CaseJob | None, str | None, str | None]:
    """(job, excluded reason, failed reason) for one indexed case; exactly one is not None."""
    if case.ct is None or case.geometry is None:
        return None, None, str(case.ct_problem() or f"{case.ct}: unreadable CT")
    reasons: list[str] = []
    unknown: list[str] = []
    for organ in organs:
        files = case.organ(organ)
        if not files.has_lesion_file:
            if unknown_as_background:
                unknown.append(organ)
            else:
                reasons.append(f"{organ} tumor status unknown (no lesion file)")
        if organ_classes and not files.has_mask:
            reasons.append(f"no {organ} mask")
    if reasons:
        return None, "; ".join(reasons), None
    lesions = tuple(case.organ(organ).lesions for organ in organs)
    masks = tuple(case.organ(organ).masks for organ in organs) if organ_classes else ()
    job = _CaseJob(
        case.case_id, synthetic, case.folder, case.ct, lesions, masks, tuple(unknown)
    )
    return job, None, None


def _plan(
    roots: Sequence[tuple[Path, bool]], organs: Sequence[str], organ_classes: bool,
    unknown_as_background: bool,
) -> tuple[list[_CaseJob], list[tuple[str, str]], list[tuple[str, str]]]:
    """Jobs, excluded and failed cases over the real root and the synthetic root (if any)."""
    jobs: list[_CaseJob] = []
    excluded: list[tuple[str, str]] = []
    failed: list[tuple[str, str]] = []
    seen: dict[str, Path] = {}
    for root, synthetic in roots:
        for case in index_dataset(root).cases:
            if case.case_id in seen:
                clash = f"{case.folder}: case id also in {seen[case.case_id]}"
                failed.append((case.case_id, clash))
                continue
            seen[case.case_id] = case.folder
            job, reason, failure = _plan_case(
                case, organs, organ_classes, unknown_as_background, synthetic
            )
            if job is not None:
                jobs.append(job)
            elif reason is not None:
                excluded.append((case.case_id, reason))
            else:
                failed.append((case.case_id, str(failure)))
    return jobs, excluded, failed


# ----------------------------------------------------------------------------- one case


def _paths(folder: Path, case_id: str) -> tuple[Path, Path, Path]:
    """(image, label, completion record) of a case in a dataset folder."""
    return (
        folder / "imagesTr" / f"{case_id}{CHANNEL_SUFFIX}{FILE_ENDING}",
        folder / "labelsTr" / f"{case_id}{FILE_ENDING}",
        folder / STATE_FOLDER / f"{case_id}.json",
    )


def _request(job: _CaseJob, labels: dict[str, int]) -> dict:
    """The settings a case is exported with (its inputs are fingerprinted apart)."""
    return {"format": FORMAT_VERSION, "labels": labels, "unknown": list(job.unknown)}


def _inputs(job: _CaseJob) -> list:
    return input_fingerprint(
        [job.ct, *[p for group in (*job.lesions, *job.masks) for p in group]]
    )


def _state(folder: Path, job: _CaseJob, labels: dict[str, int]) -> State:
    """COMPLETE, CHANGED (exported from inputs that have changed since) or TODO."""
    try:
        inputs = _inputs(job)
    except OSError:
        return State.TODO
    return marker_state(_paths(folder, job.case_id)[2], inputs, _request(job, labels))


def label_map(job: _CaseJob, geometry: Geometry) -> np.ndarray:
    """uint8 labels on the CT's on-disk grid; organs painted first so lesions win over them."""
    count = len(job.lesions)
    label = np.zeros(geometry.shape, dtype=np.uint8)
    for index, masks in enumerate(job.masks):
        if not masks:  # an organ exported without a file (unknown as background)
            continue
        label[read_mask_union(masks, job.ct, geometry).array] = count + index + 1
    for index, lesions in enumerate(job.lesions):
        if not lesions:
            continue
        label[read_mask_union(lesions, job.ct, geometry).array] = index + 1
    return label


def _copy_image(source: Path, target: Path) -> None:
    """The CT as `.nii.gz`: its bytes when already gzip-compressed, else gzipped (lossless)."""
    with source.open("rb") as stream:
        compressed = stream.read(2) == b"\x1f\x8b"
    with atomic_path(target) as temporary:
        if compressed:
            shutil.copyfile(source, temporary)
        else:
            with source.open("rb") as raw, gzip.open(temporary, "wb", compresslevel=6) as out:
                shutil.copyfileobj(raw, out, 1 << 20)


def _write_label(label: np.ndarray, geometry: Geometry, target: Path) -> None:
    """Write with the CT's own header so qform and sform stay exactly as the CT stores them
    (every reader, nibabel or SimpleITK, then sees image and label on one grid)."""
    assert geometry.header is not None
    header = geometry.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(1.0, 0.0)
    header["cal_min"], header["cal_max"] = 0, 0
    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    image = image_class(label, None, header)
    with atomic_path(target) as temporary:
        nib.save(image, str(temporary))


def export_case(job: _CaseJob, folder: Path, labels: dict[str, int]) -> None:
    """Export one case: image, label, then its completion marker."""
    image, label_path, marker = _paths(folder, job.case_id)
    clear_marker(marker)
    inputs = _inputs(job)
    # every voxel is read (as `dataset check` does): a truncated or NaN CT must not be copied
    read_nifti(job.ct, kind="image", canonical=False)
    geometry = read_geometry(job.ct)
    label = label_map(job, geometry)
    _copy_image(job.ct, image)
    _write_label(label, geometry, label_path)
    write_marker(marker, inputs, _request(job, labels), [image, label_path])


def _export_job(job: tuple[_CaseJob, Path, dict[str, int]]) -> list[Outcome]:
    case = job[0]
    return [attempt(case.case_id, case.ct.parent, export_case, *job)]


# ----------------------------------------------------------------------------- the folder


def _prepare_folder(out_root: Path, folder: Path) -> None:
    """Create the dataset folder; refuse one tumorscale did not write or a clashing id."""
    prefix = folder.name[: len("Dataset000_")]
    if out_root.is_dir():
        clashes = [p.name for p in out_root.iterdir() if p.name.startswith(prefix) and p != folder]
        if clashes:
            raise DatasetError(
                out_root / clashes[0],
                f"another dataset uses id {prefix[7:10]}; nnU-Net needs unique ids",
            )
    if folder.is_dir() and any(folder.iterdir()) and not (folder / STATE_FOLDER).is_dir():
        raise DatasetError(folder, "exists and was not written by tumorscale; not overwriting it")
    for sub in ("imagesTr", "labelsTr", STATE_FOLDER):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for entry in (folder / sub).iterdir():
            if entry.name.startswith(".") and entry.is_file():
                entry.unlink()  # temporary files of an interrupted run (nnU-Net would read them)


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Remove exported cases that are not part of this export (old selection or now failing)."""
    suffixes = {
        "imagesTr": f"{CHANNEL_SUFFIX}{FILE_ENDING}", "labelsTr": FILE_ENDING, STATE_FOLDER: ".json"
    }
    for sub, suffix in suffixes.items():
        for path in (folder / sub).iterdir():
            if path.name.endswith(suffix) and path.name.removesuffix(suffix) not in keep:
                path.unlink()  # also a crashed run's image whose record was never written


def _synthetic_source(case_folder: Path, case_id: str) -> str | None:
    try:
        record = (case_folder / ".synthesis.json").read_text(encoding="utf-8")
        return str(json.loads(record)["source_id"])
    except (OSError, ValueError, KeyError, TypeError):
        match = _SYNTHETIC_ID.match(case_id)
        return match.group("source") if match else None


def _dataset_json(
    report: JobReport, jobs: Sequence[_CaseJob], roots: dict[str, Path | None],
    organs: Sequence[str], organ_classes: bool,
) -> dict:
    done = set(report.complete)
    exported = sorted((job for job in jobs if job.case_id in done), key=lambda job: job.case_id)
    synthetic_root = roots["synthetic"]
    synthetic = {
        job.case_id: _synthetic_source(job.folder, job.case_id) for job in exported if job.synthetic
    }
    return {
        "channel_names": {"0": "CT"},
        "labels": report.details["labels"],
        "numTraining": len(exported),
        "file_ending": FILE_ENDING,
        "tumorscale": {
            "format": FORMAT_VERSION,
            "real_root": str(roots["real"]),
            "synthetic_root": None if synthetic_root is None else str(synthetic_root),
            "organs": list(organs),
            "organ_classes": organ_classes,
            "real_cases": [job.case_id for job in exported if not job.synthetic],
            "synthetic_cases": synthetic,  # synthetic case id -> healthy source case id
            "unknown_as_background": report.details["unknown_as_background"],
        },
    }


def export_nnunet(
    data_root: str | Path,
    out_root: str | Path,
    dataset_id: int,
    name: str = "Tumorscale",
    organs: Sequence[str] | None = None,
    synthetic_root: str | Path | None = None,
    organ_classes: bool = False,
    workers: int = 1,
    progress: Progress | None = None,
    unknown_as_background: bool = False,
) -> JobReport:
    """Write `out_root/DatasetXXX_Name/` (nnU-Net v2 raw format) from an AbdomenAtlas tree.

    Cases: every case of `data_root` and of `synthetic_root` (offline `synthesize_dataset`
    output, optional) whose selected organs (default: all six) all have a known tumor status
    (see the module docstring). Images keep the CT's exact geometry and bytes; labels are uint8 on
    the CT's grid. Reruns skip finished cases; a bad case is recorded in the report (its reason
    names the file) and the others go on. dataset.json is written last. Never writes inside the
    source trees. `progress(done, total)` counts cases. The report's `out` is the dataset folder,
    `details["labels"]` its labels. Raises ValueError for bad arguments and `DatasetError` for
    an unusable folder.
    """
    selected = _selected_organs(organs)
    folder_name = dataset_folder_name(dataset_id, name)
    data_root, out_root = Path(data_root), Path(out_root)
    roots: list[tuple[Path, bool]] = [(data_root, False)]
    if synthetic_root is not None:
        roots.append((Path(synthetic_root), True))
    folder = out_root / folder_name
    for root, _ in roots:
        if folder.resolve().is_relative_to(root.resolve()):
            raise ValueError(f"the output folder {folder} must not be inside the source {root}")
    labels = label_names(selected, organ_classes)
    jobs, excluded, failed = _plan(roots, selected, organ_classes, unknown_as_background)
    _prepare_folder(out_root, folder)
    report = JobReport(folder, excluded=excluded, failed=failed)
    report.details.update(labels=labels, unknown_as_background={})
    todo = []
    for job in jobs:
        state = _state(folder, job, labels)
        if state is State.COMPLETE:
            report.skipped.append(job.case_id)
            continue
        if state is State.CHANGED:
            report.changed.append(job.case_id)
        todo.append((job, folder, labels))
    tally = Tally(len(jobs), progress)
    tally.start(len(report.skipped))
    run_cases(todo, _export_job, report, tally, max(1, int(workers)), ordered=True)
    done = set(report.complete)
    report.details["unknown_as_background"] = {
        job.case_id: list(job.unknown) for job in jobs if job.unknown and job.case_id in done
    }
    _remove_stale(folder, done)
    meta = _dataset_json(
        report, jobs, {"real": data_root.resolve(), "synthetic": _resolved(synthetic_root)},
        selected, organ_classes,
    )
    write_text_atomic(folder / DATASET_JSON, json.dumps(meta, indent=2) + "\n")
    return report.finish()


def _resolved(path: str | Path | None) -> Path | None:
    return None if path is None else Path(path).resolve()


__all__ = [
    "DATASET_JSON",
    "FILE_ENDING",
    "dataset_folder_name",
    "export_nnunet",
    "label_map",
    "label_names",
]
