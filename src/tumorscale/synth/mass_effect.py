"""Mass effect: a smooth radial push of the tissue around a tumor, applied to the CT and masks.

Pixel2Cancer's `expand` (§3 step 7, never called in its training code) done in 3-D: a voxel at
normalised radius rho < E (E = `mass_effect_extent`, about 1.3 tumor radii) takes its value from
the centre + offset * (1 - s * (1 - rho²/E²)), s = `mass_effect` (about 0.3). Tissue is pushed
outward, neighbours are displaced rather than overwritten, and nothing changes at rho >= E.
Only the affected voxels of the crop are interpolated (linear for the CT, nearest for masks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Push:
    """Where each affected crop voxel takes its value from."""

    flat_index: np.ndarray  # (N,) flat indices into the crop
    source: np.ndarray  # (3, N) source positions in crop voxel coordinates
    nearest: np.ndarray  # (N,) flat index of the nearest source voxel (for labels)

    @property
    def empty(self) -> bool:
        return self.flat_index.size == 0


def radial_push(
    normalised_radius: np.ndarray | None, center_in_crop: np.ndarray, strength: float,
    extent: float,
) -> Push:
    """The push of a tumor whose boundary is `normalised_radius` == 1 (a crop-shaped array)."""
    if strength <= 0 or extent <= 0 or normalised_radius is None:
        return Push(np.zeros(0, np.int64), np.zeros((3, 0)), np.zeros(0, np.int64))
    flat = normalised_radius.reshape(-1)
    index = np.flatnonzero(flat < extent)
    rho = flat[index]
    factor = np.float32(1.0 - strength) + np.float32(strength / extent**2) * rho * rho
    voxels = np.unravel_index(index, normalised_radius.shape)
    centre = np.asarray(center_in_crop, np.float32)
    source = np.empty((3, index.size), dtype=np.float32)
    nearest = np.zeros(index.size, dtype=np.int64)
    stride = 1
    for axis in (2, 1, 0):  # flat index of the nearest source voxel, built axis by axis
        np.multiply(voxels[axis] - centre[axis], factor, out=source[axis])
        source[axis] += centre[axis]
        rounded = np.clip(np.rint(source[axis]), 0, normalised_radius.shape[axis] - 1)
        nearest += rounded.astype(np.int64) * stride
        stride *= normalised_radius.shape[axis]
    return Push(index, source, nearest)


def push_image(
    image: np.ndarray, push: Push, whole_numbers: bool = False, skip: np.ndarray | None = None
) -> np.ndarray:
    """A pushed copy of a float crop (trilinear interpolation; rounded for integer scans).
    Voxels where `skip` is True keep their value (the tumor's core overwrites them anyway)."""
    out = image.copy()
    if push.empty:
        return out
    source, index = push.source, push.flat_index
    if skip is not None:
        keep = ~skip.reshape(-1)[index]
        source, index = source[:, keep], index[keep]
    values = ndimage.map_coordinates(image, source, order=1, mode="nearest")
    if whole_numbers:
        np.rint(values, out=values)
    out.reshape(-1)[index] = values
    return out


def push_mask(mask: np.ndarray, push: Push) -> tuple[np.ndarray, bool]:
    """A pushed copy of a label crop (nearest neighbour: labels stay labels), and whether the
    push changed it."""
    if push.empty:
        return mask, False
    moved = mask.reshape(-1)[push.nearest]
    if np.array_equal(moved, mask.reshape(-1)[push.flat_index]):
        return mask, False
    out = mask.copy()
    out.reshape(-1)[push.flat_index] = moved
    return out, True
