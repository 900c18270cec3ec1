"""The one image type: a 3-D array with its voxel-to-world affine (RAS+, mm)."""

from __future__ import annotations

from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
from nibabel import orientations

from tumorscale.geometry import spacing_of

# Grids whose affines differ by less than this (mm, or unitless for direction cosines) are the same.
GRID_TOLERANCE = 1e-3


class _OnGrid:
    """What an `affine` (voxel -> RAS+ mm) says about a grid: shared by `Geometry` and `Volume`."""

    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, in mm."""
        return spacing_of(self.affine)

    @property
    def orientation(self) -> str:
        """Axis codes such as 'RAS' or 'LPS' (where each array axis points)."""
        return "".join(orientations.aff2axcodes(self.affine))


@dataclass(frozen=True)
class Geometry(_OnGrid):
    """Where a voxel grid sits in the world: its shape and its voxel-to-RAS affine.

    `header` keeps the original NIfTI header (if any) so outputs can be written with it.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    header: nib.Nifti1Header | None = field(default=None, compare=False, repr=False)

    def matches(self, other: Geometry, tolerance: float = GRID_TOLERANCE) -> bool:
        """Same shape and an affine equal within `tolerance` (relative to the voxel size)."""
        return tuple(self.shape) == tuple(other.shape) and affines_match(
            self.affine, other.affine, tolerance
        )


def affines_match(a: np.ndarray, b: np.ndarray, tolerance: float = GRID_TOLERANCE) -> bool:
    """True when two affines describe the same grid; the origin may differ by `tolerance` voxels."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(min(spacing_of(a)), 1e-6)
    return bool(
        np.allclose(a[:3, :3], b[:3, :3], atol=tolerance * scale)
        and np.allclose(a[:3, 3], b[:3, 3], atol=tolerance * scale + 1e-4)
    )


@dataclass(frozen=True)
class Volume(_OnGrid):
    """A 3-D image or mask with its affine.

    `array` is indexed [i, j, k] with `affine` mapping (i, j, k, 1) to RAS+ world mm, as in NIfTI.
    `source` is the on-disk geometry the volume came from; writers use it to put outputs back into
    the input's own orientation and header. Volumes read by `tumorscale.io` are canonical (RAS).
    """

    array: np.ndarray
    affine: np.ndarray
    source: Geometry | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"a Volume is 3-D; got an array of shape {self.array.shape}")
        if np.asarray(self.affine).shape != (4, 4):
            raise ValueError("a Volume's affine is a 4x4 matrix")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.shape, np.asarray(self.affine))

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(np.asarray(self.affine)[:3, :3])))

    def with_array(self, array: np.ndarray) -> Volume:
        """The same grid (and source geometry) holding another array of the same shape."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} does not match the grid {self.shape}")
        return Volume(array, self.affine, self.source)

    def to_canonical(self) -> Volume:
        """This volume reoriented to RAS (axis permutations and flips only; no resampling)."""
        return self.reoriented("RAS")

    def reoriented(self, axcodes: str) -> Volume:
        """This volume with its array axes pointing along `axcodes` (e.g. 'LPS'); no resampling."""
        current = orientations.io_orientation(self.affine)
        target = orientations.axcodes2ornt(tuple(axcodes))
        transform = orientations.ornt_transform(current, target)
        array = orientations.apply_orientation(self.array, transform)
        affine = np.asarray(self.affine) @ orientations.inv_ornt_aff(transform, self.array.shape)
        return Volume(np.ascontiguousarray(array), affine, self.source)

    def to_source_geometry(self) -> Volume:
        """This volume in the orientation and grid of the file it came from (for writing)."""
        if self.source is None:
            return self
        source_codes = "".join(orientations.aff2axcodes(self.source.affine))
        restored = self.reoriented(source_codes)
        if not self.source.matches(restored.geometry, tolerance=1e-2):
            raise ValueError("volume grid no longer matches its source geometry")
        # Use the source affine verbatim so the written header is bit-identical to the input's.
        return Volume(restored.array, np.asarray(self.source.affine), self.source)
