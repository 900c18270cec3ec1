"""NIfTI reading and writing with validation: every problem raises an error naming the file."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

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


def _raw_header(path: Path) -> nib.Nifti1Header:
    """The file's NIfTI header exactly as stored (nibabel's load would silently 'fix' it)."""
    if not path.exists():
        raise InputFileError(path, "file not found")
    if path.is_dir():
        raise InputFileError(path, "is a folder, expected a NIfTI file")
    try:
        with ImageOpener(str(path)) as stream:
            raw = stream.read(540)
    except _READ_ERRORS as error:
        raise InputFileError(path, f"unreadable NIfTI file ({_describe(error)})") from error
    for order in ("<", ">"):
        size = int(np.frombuffer(raw[:4], dtype=f"{order}i4")[0]) if len(raw) >= 4 else 0
        header_class = {348: nib.Nifti1Header, 540: nib.Nifti2Header}.get(size)
        if header_class is not None and len(raw) >= size:
            header = header_class.from_fileobj(io.BytesIO(raw[:size]), check=False)
            if header["magic"] in (b"n+1", b"n+2"):
                return header
            break
    reason = _gzip_problem(path) or "not a single-file NIfTI-1/NIfTI-2 image"
    raise InputFileError(path, f"unreadable NIfTI file ({reason})")


def _gzip_problem(path: Path) -> str | None:
    """Why a .gz file cannot be decompressed (truncated or corrupt), or None if it can."""
    if not path.name.endswith(".gz"):
        return None
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 20):
                pass
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as error:
        return _describe(error)
    return None


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    if (
        isinstance(error, EOFError | zlib.error)
        or "end-of-stream" in text
        or "Compressed file ended" in text
    ):
        return "truncated or corrupt compressed data"
    return text or type(error).__name__


def _spatial_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    # A trailing singleton 4th axis (X, Y, Z, 1) is common in the wild and still a 3-D volume.
    squeezed = (
        tuple(shape[:3]) if len(shape) > 3 and all(n == 1 for n in shape[3:]) else tuple(shape)
    )
    if len(squeezed) != 3:
        raise InputFileError(path, f"not a 3-D volume (shape {tuple(shape)})")
    if min(squeezed) < 1:
        raise InputFileError(path, f"empty volume (shape {tuple(shape)})")
    return squeezed  # type: ignore[return-value]


def _checked_grid(path: Path, header: nib.Nifti1Header) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine from a raw header, rejecting what no scanner writes."""
    shape = _spatial_shape(path, header.get_data_shape())
    spacing = np.asarray(header["pixdim"][1:4], dtype=float)
    if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
        raise InputFileError(path, f"absurd header: voxel spacing {tuple(spacing.tolist())} mm")
    affine = np.asarray(header.get_best_affine(), dtype=float)
    if not np.all(np.isfinite(affine)):
        raise InputFileError(path, "absurd header: the affine has NaN or Inf entries")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputFileError(path, "absurd header: the affine is singular (zero spacing)")
    return shape, affine


def read_geometry(path: str | Path) -> Geometry:
    """The grid of a NIfTI file (shape and affine, as stored on disk) from its header alone."""
    path = Path(path)
    header = _raw_header(path)
    shape, affine = _checked_grid(path, header)
    return Geometry(shape, affine, header)


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
    shape, affine = _checked_grid(path, _raw_header(path))
    try:
        image = nib.load(str(path))
    except _READ_ERRORS as error:
        reason = _gzip_problem(path) or _describe(error).replace(f'"{path}"', "the file")
        raise InputFileError(path, f"unreadable NIfTI file ({reason})") from error
    array = validate_values(path, _read_array(path, image, kind), kind)
    volume = Volume(array, affine, Geometry(shape, affine, image.header.copy()))
    return volume.to_canonical() if canonical else volume


def _output_dtype(array: np.ndarray) -> np.dtype:
    if array.dtype == bool:
        return np.dtype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array.dtype
    # Whole-number intensities inside int16 (CT in HU) are stored as int16, like scanners do.
    if (
        array.size
        and np.all(array == np.round(array))
        and array.min() >= -32768
        and array.max() <= 32767
    ):
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
