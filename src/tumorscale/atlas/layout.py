"""Finding cases in an AbdomenAtlas 2.0 folder, in either of its two layouts.

merged: ROOT/BDMAP_00000001/ct.nii.gz and ROOT/BDMAP_00000001/segmentations/*.nii.gz
split:  ROOT/ct/BDMAP_00000001/ct.nii.gz and ROOT/label/BDMAP_00000001/segmentations/*.nii.gz
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


def _listing(folder: Path) -> tuple[set[str], set[str]]:
    """(file names, sub-folder names) of a folder, hidden and `_`-prefixed entries skipped."""
    files: set[str] = set()
    folders: set[str] = set()
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith((".", "_")):
                continue
            (folders if entry.is_dir() else files).add(entry.name)
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


def discover_cases(root: str | Path) -> tuple[str, list[CaseFiles]]:
    """The layout name ('merged', 'split' or 'single') and the cases of a dataset folder, by id.

    Raises `DatasetError` when the folder is missing or holds no case.
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
    if {"ct", "label"} & folders and not any(name.startswith("BDMAP_") for name in folders):
        cases = _split_cases(root)
        layout = "split"
    else:
        cases = [case for name in sorted(folders) if (case := _merged_case(root / name))]
        layout = "merged"
    if not cases:
        raise DatasetError(
            root,
            "no cases found (expected BDMAP_*/ct.nii.gz with BDMAP_*/segmentations/, "
            "or ct/BDMAP_*/ct.nii.gz with label/BDMAP_*/segmentations/)",
        )
    return layout, cases
