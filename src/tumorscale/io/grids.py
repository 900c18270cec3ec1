"""Checks that a mask lies on its CT's voxel grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tumorscale.errors import GridMismatchError
from tumorscale.io.volume import GRID_TOLERANCE, Geometry


def check_same_grid(
    mask_path: str | Path,
    mask: Geometry,
    reference_path: str | Path,
    reference: Geometry,
    tolerance: float = GRID_TOLERANCE,
) -> None:
    """Raise `GridMismatchError` (naming `mask_path`) when `mask` is not on `reference`'s grid."""
    if tuple(mask.shape) != tuple(reference.shape):
        raise GridMismatchError(
            mask_path,
            f"shape {tuple(mask.shape)} differs from "
            f"{Path(reference_path).name} {tuple(reference.shape)}",
        )
    if not mask.matches(reference, tolerance):
        offset = float(np.abs(np.asarray(mask.affine) - np.asarray(reference.affine)).max())
        raise GridMismatchError(
            mask_path,
            f"affine differs from {Path(reference_path).name} (largest difference {offset:.4g} mm)",
        )
