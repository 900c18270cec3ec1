"""Finding cases in an AbdomenAtlas 2.0 folder, in either of its two layouts.

merged: ROOT/BDMAP_00000001/ct.nii.gz and ROOT/BDMAP_00000001/segmentations/*.nii.gz
split:  ROOT/ct/BDMAP_00000001/ct.nii.gz and ROOT/label/BDMAP_00000001/segmentations/*.nii.gz
Both at once ('mixed') are indexed together; an id found twice is an error.
A folder that itself holds ct.nii.gz (or segmentations/) is read as a single case.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tumorscale.errors import DatasetError

CT_NAMES = ("ct.nii.gz", "ct.nii")
SEGMENTATION_FOLDER = "segmentations"


@dataclass(frozen=True)
class CaseFiles:
    """Where one case's files are: its CT and its segmentations folder (each None if missing)."""

    case_id: str
    folder: Path
    ct: Path | None
    segmentations: Path | None


def _ct_in(folder: Path, names: set[str]) -> Path | None:
    for candidate in CT_NAMES:
        if candidate in names:
            return folder / candidate
    return None


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop: not a folder; reading it as a file names the problem
        return False


def _listing(folder: Path) -> tuple[set[str], set[str]]:
    """(file names, sub-folder names) of a folder, hidden and `_`-prefixed entries skipped."""
    files: set[str] = set()
    folders: set[str] = set()
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith((".", "_")):
                continue
            (folders if _is_folder(entry) else files).add(entry.name)
    return files, folders


def _is_case_folder(files: set[str], folders: set[str]) -> bool:
    return bool(files.intersection(CT_NAMES)) or SEGMENTATION_FOLDER in folders


def _merged_case(folder: Path) -> CaseFiles | None:
    files, folders = _listing(folder)
    if not _is_case_folder(files, folders):
        return None
    segmentations = folder / SEGMENTATION_FOLDER if SEGMENTATION_FOLDER in folders else None
    return CaseFiles(folder.name, folder, _ct_in(folder, files), segmentations)


def _split_cases(root: Path) -> list[CaseFiles]:
    ct_root, label_root = root / "ct", root / "label"
    ct_ids = _listing(ct_root)[1] if ct_root.is_dir() else set()
    label_ids = _listing(label_root)[1] if label_root.is_dir() else set()
    cases = []
    for case_id in sorted(ct_ids | label_ids):
        ct_folder = ct_root / case_id
        ct = _ct_in(ct_folder, _listing(ct_folder)[0]) if case_id in ct_ids else None
        segmentations = label_root / case_id / SEGMENTATION_FOLDER
        cases.append(
            CaseFiles(
                case_id,
                ct_folder if case_id in ct_ids else label_root / case_id,
                ct,
                segmentations if segmentations.is_dir() else None,
            )
        )
    return cases


def _without_duplicates(cases: list[CaseFiles]) -> list[CaseFiles]:
    """`cases` sorted by id; one id in two places (merged and split) is an error naming both."""
    seen: dict[str, CaseFiles] = {}
    for case in cases:
        if case.case_id in seen:
            first = seen[case.case_id]
            raise DatasetError(
                case.folder, f"case id {case.case_id} is also at {first.folder}; keep one of them"
            )
        seen[case.case_id] = case
    return sorted(cases, key=lambda case: case.case_id)


def discover_cases(root: str | Path) -> tuple[str, list[CaseFiles]]:
    """The layout name and the cases of a dataset folder, by id.

    Layouts: 'merged', 'split', 'mixed' (merged case folders beside ct/ and label/: both are
    indexed) or 'single'. Raises `DatasetError` when the folder is missing, holds no case, or
    holds one case id twice.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(root, "dataset folder not found")
    if not root.is_dir():
        raise DatasetError(root, "not a folder (expected an AbdomenAtlas dataset folder)")
    files, folders = _listing(root)
    if _is_case_folder(files, folders):
        single = _merged_case(root)
        assert single is not None
        return "single", [single]
    merged = [case for name in sorted(folders) if (case := _merged_case(root / name))]
    split = _split_cases(root) if {"ct", "label"} & folders else []
    cases = _without_duplicates(merged + split)
    layout = "mixed" if merged and split else "split" if split else "merged"
    if not cases:
        raise DatasetError(
            root,
            "no cases found (expected BDMAP_*/ct.nii.gz with BDMAP_*/segmentations/, "
            "or ct/BDMAP_*/ct.nii.gz with label/BDMAP_*/segmentations/)",
        )
    return layout, cases
