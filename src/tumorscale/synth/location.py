"""Where a parenchymal tumor goes: interior sampling by distance transform on a coarse organ crop.

The organ's bounding box is found with `np.any` projections (the only full-volume pass), then
the organ, the CT and the border distance are read on a strided grid of that box (at most
~150k points), so sampling costs a few milliseconds at any scan size. Rules (§7, §8.3):
depth inside the organ (edt), a liver vessel clearance (bright voxels above the organ median +
margin within the radius, Hu et al. §1a), a pancreas head prior (head = patient's right, +x in
RAS), exophytic kidney centres near the surface, and room inside the scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tumorscale import geometry
from tumorscale.io import Volume
from tumorscale.masks import bounding_box

_MAX_COARSE_POINTS = 80_000
_HEAD_SHARE_OF_EXTENT = 0.35  # the right-most third of the pancreas is head / uncinate


@dataclass(frozen=True)
class OrganView:
    """A strided look at one organ's bounding box (canonical RAS arrays)."""

    box: tuple[slice, slice, slice]  # full-resolution bounding box (voxels)
    stride: tuple[int, int, int]
    organ: np.ndarray  # bool, coarse
    ct: np.ndarray  # float32 HU, coarse
    spacing_mm: tuple[float, float, float]  # coarse spacing
    affine: np.ndarray  # the volume's affine
    volume_shape: tuple[int, int, int]
    organ_volume_mm3: float
    touches_border: bool

    @property
    def coarse_indices(self) -> list[np.ndarray]:
        """Full-resolution voxel index of each coarse point, per axis."""
        return [
            np.arange(b.start, b.stop, s)
            for b, s in zip(self.box, self.stride, strict=True)
        ]

    def median_hu(self) -> float:
        values = self.ct[self.organ]
        return float(np.median(values)) if values.size else float("nan")


def organ_view(ct: Volume, mask: np.ndarray) -> OrganView | None:
    """The coarse view of `mask` (a full-volume organ mask) on `ct`'s grid; None when empty."""
    box = bounding_box(mask)
    if box is None:
        return None
    spacing = np.asarray(ct.spacing, float)
    extent_mm = np.array([b.stop - b.start for b in box]) * spacing
    step_mm = max(float(np.prod(extent_mm) / _MAX_COARSE_POINTS) ** (1 / 3), 1.0)
    stride = tuple(int(max(1, round(step_mm / s))) for s in spacing)
    coarse = tuple(slice(b.start, b.stop, s) for b, s in zip(box, stride, strict=True))
    touches = any(b.start == 0 or b.stop == n for b, n in zip(box, ct.shape, strict=True))
    return OrganView(
        box=box,
        stride=stride,  # type: ignore[arg-type]
        organ=np.ascontiguousarray(mask[coarse] > 0),
        ct=np.asarray(ct.array[coarse], dtype=np.float32),
        spacing_mm=tuple(float(v) for v in spacing * stride),  # type: ignore[arg-type]
        affine=np.asarray(ct.affine),
        volume_shape=ct.shape,
        organ_volume_mm3=float(np.count_nonzero(mask[box])) * ct.voxel_volume_mm3,
        touches_border=touches,
    )


def depth_mm(view: OrganView) -> np.ndarray:
    """Distance (mm) from each coarse organ point to the organ's surface (0 outside)."""
    return geometry.depth_mm(view.organ, view.spacing_mm, border_is_surface=True)


def border_room_mm(view: OrganView) -> np.ndarray:
    """Distance (mm) from each coarse point to the nearest face of the scan."""
    spacing = geometry.spacing_of(view.affine)
    axes = [
        np.minimum(idx, n - 1 - idx) * s
        for idx, n, s in zip(view.coarse_indices, view.volume_shape, spacing, strict=True)
    ]
    return np.minimum(
        np.minimum(axes[0][:, None, None], axes[1][None, :, None]), axes[2][None, None, :]
    )


def vessel_clearance_mm(view: OrganView, margin_hu: float) -> np.ndarray:
    """Distance (mm) to the nearest bright (vessel-like) organ voxel: smoothed HU above the
    organ median + `margin_hu` (Hu et al.'s rejection rule, on the coarse grid)."""
    smooth = ndimage.gaussian_filter(view.ct, 1.0, mode="nearest")
    vessels = view.organ & (smooth > view.median_hu() + margin_hu)
    if not vessels.any():
        return np.full(view.organ.shape, np.inf, dtype=np.float32)
    return geometry.depth_mm(~vessels, view.spacing_mm)  # depth in the non-vessel region


def head_region(view: OrganView) -> np.ndarray:
    """Coarse organ points in the right-most part of the organ (pancreatic head, +x = right)."""
    x_mm = world_coordinate(view, axis=0)
    values = x_mm[view.organ]
    cut = values.max() - _HEAD_SHARE_OF_EXTENT * (values.max() - values.min())
    return view.organ & (x_mm >= cut)


def world_coordinate(view: OrganView, axis: int) -> np.ndarray:
    """World (RAS mm) coordinate `axis` of every coarse point."""
    row = view.affine[axis]
    i, j, k = view.coarse_indices
    return (
        row[0] * i[:, None, None] + row[1] * j[None, :, None] + row[2] * k[None, None, :] + row[3]
    ).astype(np.float32)


def pick_point(view: OrganView, candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly chosen candidate, jittered within its coarse cell, as RAS world mm."""
    flat = np.flatnonzero(candidates)
    chosen = np.unravel_index(flat[rng.integers(flat.size)], candidates.shape)
    jitter = rng.uniform(-0.5, 0.5, 3) * (np.asarray(view.stride) > 1)
    voxel = np.array(
        [idx[c] for idx, c in zip(view.coarse_indices, chosen, strict=True)], float
    ) + jitter * np.asarray(view.stride)
    return (view.affine @ np.append(voxel, 1.0))[:3]
