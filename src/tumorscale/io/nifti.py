"""NIfTI reading and writing with validation: every problem raises an error naming the file."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

from tumorscale.errors import InputFileError
from tumorscale.io.atomic import atomic_path
from tumorscale.io.volume import Geometry, Volume

VolumeKind = Literal["image", "mask", "labels"]

# Errors nibabel, gzip and zlib raise on unreadable, corrupt or truncated files.
_READ_ERRORS = (
    nib.filebasedimages.ImageFileError,
    gzip.BadGzipFile,
    EOFError,
    zlib.error,
    OSError,
    ValueError,
)


def _load_image(path: Path) -> nib.Nifti1Image:
    if not path.exists():
        raise InputFileError(path, "file not found")
    if path.is_dir():
        raise InputFileError(path, "is a folder, expected a NIfTI file")
    try:
        image = nib.load(str(path))
    except _READ_ERRORS as error:
        raise InputFileError(path, f"unreadable NIfTI file ({_describe(error)})") from error
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise InputFileError(path, f"not a NIfTI image ({type(image).__name__})")
    return image


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    if isinstance(error, EOFError | zlib.error) or "end-of-stream" in text or "Compressed file ended" in text:
        return "truncated or corrupt compressed data"
    return text or type(error).__name__


def _spatial_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    # A trailing singleton 4th axis (X, Y, Z, 1) is common in the wild and still a 3-D volume.
    squeezed = tuple(shape[:3]) if len(shape) > 3 and all(n == 1 for n in shape[3:]) else tuple(shape)
    if len(squeezed) != 3:
        raise InputFileError(path, f"not a 3-D volume (shape {tuple(shape)})")
    if min(squeezed) < 1:
        raise InputFileError(path, f"empty volume (shape {tuple(shape)})")
    return squeezed  # type: ignore[return-value]


def _checked_affine(path: Path, image: nib.Nifti1Image) -> np.ndarray:
    affine = np.asarray(image.affine, dtype=float)
    if not np.all(np.isfinite(affine)):
        raise InputFileError(path, "absurd header: the affine has NaN or Inf entries")
    zooms = np.asarray(image.header.get_zooms()[:3], dtype=float)
    if np.any(zooms <= 0) or not np.all(np.isfinite(zooms)):
        raise InputFileError(path, f"absurd header: voxel spacing {tuple(zooms.tolist())} mm")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputFileError(path, "absurd header: the affine is singular (zero spacing)")
    return affine


def read_geometry(path: str | Path) -> Geometry:
    """The grid of a NIfTI file (shape and affine, as stored on disk) from its header alone."""
    path = Path(path)
    image = _load_image(path)
    shape = _spatial_shape(path, image.shape)
    return Geometry(shape, _checked_affine(path, image), image.header)


def _read_array(path: Path, image: nib.Nifti1Image, kind: VolumeKind) -> np.ndarray:
    try:
        if kind == "image":
            array = image.get_fdata(dtype=np.float32)
        else:
            array = np.asanyarray(image.dataobj)
    except _READ_ERRORS as error:
        raise InputFileError(path, f"cannot read voxel data ({_describe(error)})") from error
    return np.asarray(array).reshape(_spatial_shape(path, image.shape))


def validate_values(path: str | Path, array: np.ndarray, kind: VolumeKind) -> np.ndarray:
    """Check voxel values for `kind`; return the array (masks as uint8, label maps as integers)."""
    path = Path(path)
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise InputFileError(path, f"contains NaN or Inf values ({bad} voxels)")
    if kind == "image":
        return array
    if np.issubdtype(array.dtype, np.floating) and np.any(array != np.round(array)):
        raise InputFileError(path, "label map has non-integer values")
    if array.size and array.min() < 0:
        raise InputFileError(path, f"label map has negative values (minimum {array.min():g})")
    if kind == "mask":
        if array.size and array.max() > 1:
            values = ", ".join(f"{v:g}" for v in np.unique(array)[:8])
            raise InputFileError(path, f"mask is not binary (values {values})")
        return array.astype(np.uint8, copy=False)
    return array.astype(np.min_scalar_type(int(array.max()) if array.size else 0), copy=False)


def read_nifti(path: str | Path, kind: VolumeKind = "image", canonical: bool = True) -> Volume:
    """Read a 3-D NIfTI file as a validated `Volume` (RAS unless `canonical=False`).

    kind: "image" (float32 intensities, finite), "mask" (binary, uint8) or "labels" (integer label
    map, non-negative). Raises `InputFileError` naming the file for any problem.
    """
    path = Path(path)
    image = _load_image(path)
    shape = _spatial_shape(path, image.shape)
    affine = _checked_affine(path, image)
    array = validate_values(path, _read_array(path, image, kind), kind)
    volume = Volume(array, affine, Geometry(shape, affine, image.header.copy()))
    return volume.to_canonical() if canonical else volume


def _output_dtype(array: np.ndarray) -> np.dtype:
    if array.dtype == bool:
        return np.dtype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array.dtype
    # Whole-number intensities inside int16 (CT in HU) are stored as int16, like scanners do.
    if array.size and np.all(array == np.round(array)) and array.min() >= -32768 and array.max() <= 32767:
        return np.dtype(np.int16)
    return np.dtype(np.float32)


def write_nifti(volume: Volume, path: str | Path, dtype: np.dtype | type | None = None) -> Path:
    """Write `volume` atomically, in the geometry (orientation, affine, header) of its source file.

    A reader never sees a partial file. Returns the final path.
    """
    path = Path(path)
    on_disk = volume.to_source_geometry()
    array = on_disk.array
    out_dtype = np.dtype(dtype) if dtype is not None else _output_dtype(array)
    if volume.source is not None and volume.source.header is not None:
        header = volume.source.header.copy()
        header.set_slope_inter(1.0, 0.0)
    else:
        header = nib.Nifti1Header()
        header.set_xyzt_units("mm", "sec")
    header.set_data_dtype(out_dtype)
    image = nib.Nifti1Image(array.astype(out_dtype, copy=False), on_disk.affine, header)
    # Keep qform and sform equal (scanner-anat) so every reader agrees on the geometry.
    image.set_qform(on_disk.affine, code=int(header["qform_code"]) or 1)
    image.set_sform(on_disk.affine, code=int(header["sform_code"]) or 1)
    with atomic_path(path) as temporary:
        nib.save(image, str(temporary))
    return path
