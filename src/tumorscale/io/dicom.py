"""DICOM series folders read through SimpleITK, returned as RAS `Volume`s."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from tumorscale.errors import InputFileError
from tumorscale.io.nifti import validate_values
from tumorscale.io.volume import Geometry, Volume

# ITK's world frame is LPS; NIfTI's (and ours) is RAS.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def sitk_to_volume(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Array in [i, j, k] order and its RAS affine for a 3-D SimpleITK image."""
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)  # ITK arrays are [k, j, i]
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = _LPS_TO_RAS @ np.asarray(image.GetOrigin(), dtype=float)
    return array, affine


def read_dicom_series(folder: str | Path, series_id: str | None = None) -> Volume:
    """Read one DICOM series (the first, or `series_id`) of a folder as a RAS CT `Volume` in HU."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(folder, "not a folder of DICOM files")
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputFileError(folder, "no DICOM series found")
    chosen = series_id or series[0]
    if chosen not in series:
        raise InputFileError(folder, f"no DICOM series {chosen!r} (found {', '.join(series)})")
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), chosen))
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise InputFileError(
            folder, f"unreadable DICOM series ({str(error).splitlines()[0]})"
        ) from error
    if image.GetDimension() != 3:
        raise InputFileError(folder, f"not a 3-D series ({image.GetDimension()}-D)")
    array, affine = sitk_to_volume(image)
    spacing = np.asarray(image.GetSpacing())
    if np.any(spacing <= 0):
        raise InputFileError(folder, f"absurd header: voxel spacing {tuple(spacing)} mm")
    array = validate_values(folder, array.astype(np.float32), "image")
    volume = Volume(np.ascontiguousarray(array), affine, Geometry(array.shape, affine))
    return volume.to_canonical()
