"""The tissue a tumor's contrast is measured against: the organ's median HU around the tumor.

Parenchymal organs: the organ's voxels within a 40 mm box (strided). Hollow organs: their wall,
split from the lumen by HU and depth (lumen = air below -300 HU, or deeper than a 3 mm shell;
synthesis-notes §6/§7: normal wall 1-5 mm), within a 20 mm box at full resolution. Tumors
inserted earlier in the same call are left out.
"""

from __future__ import annotations

import edt
import numpy as np

from tumorscale.masks import mask_bounds
from tumorscale.synth.types import Crop

LUMEN_AIR_HU = -300.0  # synthesis-notes §7
WALL_SHELL_MM = 3.0
HOLLOW_WALL_FLOOR_HU = -300.0  # hollow organs: the wall (reference region) is above this
_REFERENCE_RADIUS_MM = 40.0  # the organ median is taken within this box around the tumor
_REFERENCE_POINTS = 60_000
_HOLLOW_REFERENCE_RADIUS_MM = 20.0  # the wall split needs full resolution: a smaller box


def split_wall_lumen(
    ct_hu: np.ndarray,
    organ_mask: np.ndarray,
    spacing_mm: tuple[float, float, float],
    shell_mm: float = WALL_SHELL_MM,
) -> tuple[np.ndarray, np.ndarray]:
    """Wall and lumen (bool arrays) of a hollow organ: lumen = air (< -300 HU) or deeper than the
    wall shell; wall = the rest (the outer `shell_mm`, non-air). A collapsed organ (no air) still
    gets a central lumen from depth."""
    organ = np.asarray(organ_mask).astype(bool)
    deep = _squared_depth(organ, np.asarray(spacing_mm, float)) > shell_mm**2  # no square root
    lumen = organ & ((ct_hu < LUMEN_AIR_HU) | deep)
    return organ & ~lumen, lumen


def _squared_depth(mask: np.ndarray, spacing_mm: np.ndarray) -> np.ndarray:
    """Squared distance (mm2) from each mask voxel to the nearest non-mask voxel; 0 outside."""
    if not mask.any():
        return np.zeros(mask.shape, np.float32)
    return edt.edtsq(
        np.ascontiguousarray(mask, dtype=np.uint8), anisotropy=tuple(float(s) for s in spacing_mm)
    )


def wall_median_hu(
    ct_hu: np.ndarray, organ_mask: np.ndarray, spacing_mm: tuple[float, float, float]
) -> float | None:
    """Median HU of a hollow organ's wall (the reference of contrast_hu); None if no wall."""
    bounds = mask_bounds(organ_mask)
    if bounds is None:
        return None
    box = tuple(slice(max(a - 1, 0), b + 1) for a, b in zip(*bounds, strict=True))
    organ = np.asarray(organ_mask)[box].astype(bool)
    ct_box = np.asarray(ct_hu)[box]
    wall, _ = split_wall_lumen(ct_box, organ, spacing_mm)
    values = ct_box[wall]
    if values.size < 10:
        values = ct_box[organ & (ct_box >= LUMEN_AIR_HU)]
    return float(np.median(values)) if values.size else None


def reference_median_hu(
    ct: np.ndarray,
    organ_parts: list[np.ndarray],
    center_mm: tuple[float, ...],
    radius_mm: float,
    affine: np.ndarray,
    hollow: bool,
    tumors: np.ndarray | None = None,
) -> float:
    """Median HU of the organ within a box around the tumor (hollow organs: their wall),
    leaving out `tumors` already inserted."""
    if hollow:
        return _wall_median_near(ct, organ_parts[0], center_mm, radius_mm, affine, tumors)
    box = Crop.around(np.asarray(center_mm), max(_REFERENCE_RADIUS_MM, radius_mm), ct.shape, affine)
    step = max(1, int(np.ceil((np.prod(box.shape) / _REFERENCE_POINTS) ** (1 / 3))))
    strided = tuple(slice(s.start, s.stop, step) for s in box.slices)
    organ = np.zeros(tuple(len(range(s.start, s.stop, step)) for s in box.slices), dtype=bool)
    for part in organ_parts:
        organ |= part[strided] > 0
    if tumors is not None:
        organ &= tumors[strided] == 0
    values = ct[strided][organ].astype(np.float32)
    return float(np.median(values)) if values.size else float("nan")


def _wall_median_near(
    ct: np.ndarray,
    organ: np.ndarray,
    center_mm: tuple[float, ...],
    radius_mm: float,
    affine: np.ndarray,
    tumors: np.ndarray | None,
) -> float:
    """Median HU of a hollow organ's wall around the tumor."""
    box = Crop.around(
        np.asarray(center_mm), max(_HOLLOW_REFERENCE_RADIUS_MM, radius_mm), ct.shape, affine
    )
    ct_box = ct[box.slices].astype(np.float32)
    organ_box = organ[box.slices] > 0
    wall, _ = split_wall_lumen(ct_box, organ_box, box.spacing_mm)
    healthy = np.ones_like(organ_box) if tumors is None else tumors[box.slices] == 0
    values = ct_box[wall & healthy]
    if values.size < 10:  # no wall shell found: any non-air organ voxel
        values = ct_box[organ_box & healthy & (ct_box > HOLLOW_WALL_FLOOR_HU)]
    return float(np.median(values)) if values.size else float("nan")
