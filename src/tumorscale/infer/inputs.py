"""What batch prediction reads: the cases of IN (a NIfTI file, a DICOM series folder or an
AbdomenAtlas tree) and each case's CT and organ masks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk

from tumorscale.atlas import CaseEntry, index_dataset
from tumorscale.atlas.layout import CT_NAMES
from tumorscale.errors import DatasetError, InputFileError
from tumorscale.io import Volume, input_fingerprint, read_dicom_series, read_mask_union, read_nifti
from tumorscale.io.dicom import UnevenSlices
from tumorscale.io.fingerprint import Fingerprint
from tumorscale.organs import nifti_stem

InputKind = Literal["nifti", "dicom"]


@dataclass(frozen=True)
class InputCase:
    """One CT to predict: a NIfTI file or a DICOM series folder, and its organ mask files."""

    case_id: str
    path: Path
    kind: InputKind
    organ_masks: dict[str, tuple[Path, ...]] = field(default_factory=dict)

    def fingerprint(self, with_masks: bool) -> Fingerprint:
        """What a prediction of this case is made from: the CT (or series) and, when used, the
        organ masks. Raises InputFileError or OSError when a file is missing."""
        if self.kind == "nifti" and not self.path.is_file():
            what = "is a folder, expected a NIfTI file" if self.path.is_dir() else "CT not found"
            raise InputFileError(self.path, what)
        masks = [p for organ in sorted(self.organ_masks) for p in self.organ_masks[organ]]
        return input_fingerprint([self.path, *(masks if with_masks else [])])


def _is_nifti(path: Path) -> bool:
    return nifti_stem(path.name) is not None


def _atlas_case(entry: CaseEntry) -> InputCase:
    """The case; without a CT, the path where it should be (so that the case is reported)."""
    masks = {organ: files.masks for organ, files in entry.organs.items() if files.masks}
    return InputCase(entry.case_id, entry.ct or entry.folder / CT_NAMES[0], "nifti", masks)


def _nifti_case(path: Path) -> InputCase:
    """`BDMAP_x/ct.nii.gz` is case `BDMAP_x` (with that folder's organ masks); `scan.nii.gz`
    is case `scan`."""
    if path.name in CT_NAMES:
        folder = path.parent
        entries = index_dataset(folder, read_headers=False).cases
        if len(entries) == 1 and entries[0].ct == path:
            return _atlas_case(entries[0])
        return InputCase(folder.resolve().name, path, "nifti")
    stem = nifti_stem(path.name)
    assert stem is not None
    return InputCase(stem, path, "nifti")


def _has_dicom_series(folder: Path) -> bool:
    return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def discover_inputs(input_path: str | Path) -> list[InputCase]:
    """The cases of IN: one NIfTI file, one DICOM series folder, or every case with a CT of an
    AbdomenAtlas tree (either layout). Raises `DatasetError` naming IN when it is none of these.
    """
    path = Path(input_path)
    if not path.exists():
        raise DatasetError(path, "input not found")
    if path.is_file():
        if not _is_nifti(path):
            raise InputFileError(path, "not a NIfTI file (.nii or .nii.gz)")
        return [_nifti_case(path)]
    try:
        entries = index_dataset(path, read_headers=False).cases
    except DatasetError:
        entries = []
    if any(entry.ct is not None for entry in entries):  # CT-less cases are reported, not dropped
        return [_atlas_case(entry) for entry in entries]
    if _has_dicom_series(path):
        return [InputCase(path.resolve().name, path, "dicom")]
    raise DatasetError(
        path,
        "no CT found: expected a NIfTI file, a DICOM series folder, or an AbdomenAtlas folder "
        "(BDMAP_*/ct.nii.gz or ct/BDMAP_*/ct.nii.gz)",
    )


# ----------------------------------------------------------------------------- reading


@dataclass
class LoadedCase:
    case: InputCase
    ct: Volume
    organ_masks: dict[str, np.ndarray] | None


@dataclass(frozen=True)
class DicomOptions:
    """How DICOM inputs are read: which series (when a folder holds several), and what to do
    with gaps or uneven slice spacing ('error', or 'resample' with a warning in the report)."""

    series_id: str | None = None
    uneven_slices: UnevenSlices = "error"


DEFAULT_DICOM = DicomOptions()


def read_ct(
    case: InputCase, dicom: DicomOptions | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Volume:
    dicom = dicom or DEFAULT_DICOM
    if case.kind == "dicom":
        return read_dicom_series(case.path, dicom.series_id, dicom.uneven_slices, on_warning)
    return read_nifti(case.path, kind="image")


def load_case(
    case: InputCase, organs: Sequence[str], with_masks: bool,
    dicom: DicomOptions | None = None, on_warning: Callable[[str], None] | None = None,
) -> LoadedCase:
    """Read the CT (RAS) and, when asked, the organ masks the model's organs can use."""
    ct = read_ct(case, dicom, on_warning)
    if not with_masks:
        return LoadedCase(case, ct, None)
    masks = {
        organ: read_mask_union(case.organ_masks[organ], case.path, ct.source, canonical=True).array
        for organ in organs
        if case.organ_masks.get(organ)
    }
    return LoadedCase(case, ct, masks or None)
