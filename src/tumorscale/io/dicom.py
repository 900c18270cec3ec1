"""DICOM series folders read through SimpleITK, returned as RAS `Volume`s.

ITK stacks the slices with one uniform spacing whatever their recorded positions, so a series
with missing slices (or uneven spacing) would load stretched. The slice positions are checked:
gaps or uneven spacing are an error naming the folder, or with `uneven="resample"` the slices
are interpolated linearly onto a uniform grid at the median spacing (and `on_warning` says so).
A folder with several series is an error that lists them, unless `series_id` picks one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk

from tumorscale.errors import InputFileError
from tumorscale.io.nifti import validate_values
from tumorscale.io.volume import Geometry, Volume

# ITK's world frame is LPS; NIfTI's (and ours) is RAS.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
# Slice steps that differ from the median by more than this share count as uneven (or a gap).
SPACING_TOLERANCE = 0.01
UnevenSlices = Literal["error", "resample"]


def sitk_to_volume(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Array in [i, j, k] order and its RAS affine for a 3-D SimpleITK image."""
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)  # ITK arrays are [k, j, i]
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = _LPS_TO_RAS @ np.asarray(image.GetOrigin(), dtype=float)
    return array, affine


def _series_of(folder: Path, series_id: str | None) -> list[str]:
    """The slice files of the chosen series; several series without a choice is an error."""
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputFileError(folder, "no DICOM series found")
    if series_id is None and len(series) > 1:
        found = "; ".join(
            f"{uid} ({len(reader.GetGDCMSeriesFileNames(str(folder), uid))} files)"
            for uid in series
        )
        raise InputFileError(folder, f"{len(series)} DICOM series found, choose one with "
                                     f"--series UID: {found}")
    chosen = series_id or series[0]
    if chosen not in series:
        raise InputFileError(folder, f"no DICOM series {chosen!r} (found {', '.join(series)})")
    return list(reader.GetGDCMSeriesFileNames(str(folder), chosen))


def slice_positions(image: sitk.Image, files: Sequence[str]) -> np.ndarray | None:
    """Each slice's position (mm) along the stack's normal, in file order; None when a file
    lacks ImagePositionPatient (then ITK's uniform spacing is all there is)."""
    normal = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)[:, 2]
    reader = sitk.ImageFileReader()
    positions = []
    for name in files:
        reader.SetFileName(name)
        reader.ReadImageInformation()
        if not reader.HasMetaDataKey("0020|0032"):
            return None
        xyz = [float(v) for v in reader.GetMetaData("0020|0032").split("\\")]
        positions.append(float(np.dot(normal, xyz)))
    return np.asarray(positions)


def _uneven_reason(steps: np.ndarray) -> str | None:
    """Why slice steps (mm) are not uniform, or None when they are."""
    median = float(np.median(steps))
    if median <= 0:
        return "slices share a position (duplicate slices)"
    off = np.abs(steps - median) > SPACING_TOLERANCE * median
    if not off.any():
        return None
    gaps = int(np.sum(np.round(steps[off] / median) >= 2))
    kind = f"{gaps} gap(s) (missing slices)" if gaps else "uneven slice spacing"
    return (f"{kind}: slice steps {steps.min():.3f}-{steps.max():.3f} mm around a median of "
            f"{median:.3f} mm")


def _resampled(array: np.ndarray, positions: np.ndarray, step: float) -> np.ndarray:
    """[i, j, k] slices at `positions` (ascending) interpolated onto a uniform `step` grid."""
    count = round((positions[-1] - positions[0]) / step) + 1
    grid = positions[0] + step * np.arange(count)
    upper = np.clip(np.searchsorted(positions, grid, side="right"), 1, len(positions) - 1)
    lower = upper - 1
    weight = ((grid - positions[lower]) / (positions[upper] - positions[lower])).clip(0, 1)
    return (array[:, :, lower] * (1 - weight) + array[:, :, upper] * weight).astype(np.float32)


def read_dicom_series(
    folder: str | Path,
    series_id: str | None = None,
    uneven: UnevenSlices = "error",
    on_warning: Callable[[str], None] | None = None,
) -> Volume:
    """Read one DICOM series of a folder as a RAS CT `Volume` in HU (see the module docstring).

    series_id: the series to read when the folder holds several. uneven: what to do when the
    slice positions show gaps or uneven spacing ('error', or 'resample' with a warning).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(folder, "not a folder of DICOM files")
    if uneven not in ("error", "resample"):
        raise ValueError(f"uneven must be 'error' or 'resample', not {uneven!r}")
    files = _series_of(folder, series_id)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
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
    array, affine = _checked_slices(folder, image, files, array, affine, uneven, on_warning)
    array = validate_values(folder, array.astype(np.float32), "image")
    volume = Volume(np.ascontiguousarray(array), affine, Geometry(array.shape, affine))
    return volume.to_canonical()


def _checked_slices(
    folder: Path, image: sitk.Image, files: Sequence[str], array: np.ndarray,
    affine: np.ndarray, uneven: UnevenSlices, on_warning: Callable[[str], None] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The array and affine, resampled to uniform slices when asked to and needed."""
    positions = slice_positions(image, files) if len(files) > 2 else None
    if positions is None:
        return array, affine
    reason = _uneven_reason(np.diff(positions))  # GDCM sorted the files along the normal
    if reason is None:
        return array, affine
    if uneven == "error":
        raise InputFileError(folder, f"{reason}; pass --uneven-slices resample to interpolate "
                                     "them onto a uniform grid")
    step = float(np.median(np.diff(positions)))
    resampled = _resampled(array, positions, step)
    affine = affine.copy()
    affine[:3, 2] *= step / float(np.linalg.norm(affine[:3, 2]))
    if on_warning is not None:
        on_warning(f"{folder}: {reason}; resampled to {resampled.shape[2]} slices of {step:.3f} mm")
    return resampled, affine
