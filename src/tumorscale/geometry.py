"""Grid geometry shared by every layer: voxel spacing, margins and boxes, distance maps in mm.

Bottom of the package (imports numpy and edt only; `tumorscale.masks`, which finds where a
mask is, is its sibling, so neither imports the other).

- Spacing: `spacing_of` (voxel size per array axis from an affine).
- Rotations: `rotation_matrix` (about axis 0, then 1, then 2, by three angles).
- Boxes: `margin_voxels` (a margin in mm as whole voxels per axis), `grow_box` (a box grown by
  voxels and clipped to the grid), `box_affine` (the affine of a box's own voxel grid).
- Distance maps (edt, true anisotropic spacing, float32), all measured between voxel centres:
  `depth_mm` (inside the mask to the nearest outside voxel; 0 outside),
  `centre_signed_distance_mm` (negative inside, positive outside: to the nearest voxel centre on
  the other side) and `boundary_signed_distance_mm` (negative inside, positive outside: to the
  boundary between voxels, taken half the smallest voxel side before the other side's centre).
  The inside-positive field is `-centre_signed_distance_mm`.
"""

from __future__ import annotations

from collections.abc import Sequence

import edt
import numpy as np


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis: the length of each affine column (any rotation)."""
    columns = np.asarray(affine, dtype=float)[:3, :3]
    return tuple(float(v) for v in np.linalg.norm(columns, axis=0))  # type: ignore[return-value]


def rotation_matrix(angles_rad: Sequence[float]) -> np.ndarray:
    """Rotation about x, then y, then z (radians); columns are the rotated body axes."""
    ax, ay, az = (float(a) for a in angles_rad)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def margin_voxels(margin_mm: float, spacing_mm: Sequence[float]) -> np.ndarray:
    """Whole voxels per axis that cover at least `margin_mm`: ceil(margin / spacing) (int array)."""
    return np.ceil(margin_mm / np.asarray(spacing_mm, float)).astype(int)


def grow_box(
    box: Sequence[slice], margin: int | Sequence[int], shape: Sequence[int]
) -> tuple[slice, ...]:
    """`box` grown by `margin` voxels on each side (one number, or one per axis), clipped to a
    grid of `shape`."""
    margins = [margin] * len(box) if np.ndim(margin) == 0 else list(margin)  # type: ignore[list-item]
    return tuple(
        slice(int(max(part.start - m, 0)), int(min(part.stop + m, n)))
        for part, m, n in zip(box, margins, shape, strict=True)
    )


def box_affine(affine: np.ndarray, start: Sequence[int]) -> np.ndarray:
    """The affine of a box's own grid: `affine` with voxel (0, 0, 0) moved to index `start`."""
    shifted = np.asarray(affine, float).copy()
    shifted[:3, 3] = shifted[:3, :3] @ np.asarray(start) + shifted[:3, 3]
    return shifted


def depth_mm(
    mask: np.ndarray, spacing_mm: Sequence[float], border_is_surface: bool = False
) -> np.ndarray:
    """Distance (mm) from each mask voxel centre to the nearest non-mask voxel centre; 0 outside.

    `border_is_surface`: the grid's faces count as outside (as if the array were padded by one
    empty voxel), else the mask may run on past them."""
    if not mask.any():
        return np.zeros(mask.shape, np.float32)
    return edt.edt(
        np.ascontiguousarray(mask, dtype=np.uint8), anisotropy=tuple(float(s) for s in spacing_mm),
        black_border=border_is_surface,
    )


def centre_signed_distance_mm(mask: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:
    """Signed distance (mm, float32) from each voxel centre to the nearest voxel centre on the
    other side of the mask's surface: negative inside, positive outside."""
    inside = depth_mm(mask, spacing_mm)
    if mask.all():
        return -inside
    outside = depth_mm(~mask, spacing_mm)
    return (outside - inside).astype(np.float32)


def boundary_signed_distance_mm(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Signed distance (mm, float32) from each voxel centre to the mask's boundary, negative
    inside: the centre distance less half the smallest voxel side (voxel centres lie about half
    a voxel from the boundary between them)."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    outside = edt.edt(np.ascontiguousarray(~mask), anisotropy=spacing)
    inside = edt.edt(mask, anisotropy=spacing)
    half = 0.5 * min(spacing)
    return np.where(mask, half - inside, outside - half).astype(np.float32)
