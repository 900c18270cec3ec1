"""Volumes and I/O: NIfTI (nibabel) and DICOM (SimpleITK); validated, RAS, atomic writes."""

from tumorscale.io.atomic import (
    atomic_path,
    write_bytes_atomic,
    write_csv_atomic,
    write_text_atomic,
)
from tumorscale.io.dicom import read_dicom_series
from tumorscale.io.fingerprint import content_fingerprint, input_fingerprint
from tumorscale.io.grids import check_same_grid
from tumorscale.io.masks import read_mask_union
from tumorscale.io.nifti import read_geometry, read_nifti, validate_values, write_nifti
from tumorscale.io.volume import GRID_TOLERANCE, Geometry, Volume, affines_match

__all__ = [
    "GRID_TOLERANCE",
    "Geometry",
    "Volume",
    "affines_match",
    "atomic_path",
    "check_same_grid",
    "content_fingerprint",
    "input_fingerprint",
    "read_dicom_series",
    "read_geometry",
    "read_mask_union",
    "read_nifti",
    "validate_values",
    "write_bytes_atomic",
    "write_csv_atomic",
    "write_nifti",
    "write_text_atomic",
]
