"""Resampling a RAS volume to a target spacing, keeping the field of view's extent and centre.

Convention (nnU-Net's and `torch.nn.functional.interpolate(align_corners=False)`'s): a grid of n
voxels of size s along an axis becomes m = round(n * s / t) voxels of size n * s / m, covering
exactly the same extent. Voxel j of the new grid sits at the old continuous index
(j + 0.5) * n / m - 0.5. Bringing a prediction back to the original grid is the same resize
with the shapes swapped, so the round trip is exact in geometry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from nibabel import orientations

from tumorscale.io import Volume

Shape = tuple[int, int, int]


def target_shape(shape: Sequence[int], spacing_mm: Sequence[float],
                 target_spacing_mm: Sequence[float]) -> Shape:
    """Voxel counts per axis after resampling `shape` (voxel size `spacing_mm`) to the target."""
    triples = zip(shape, spacing_mm, target_spacing_mm, strict=True)
    return tuple(max(1, round(n * s / t)) for n, s, t in triples)  # type: ignore[return-value]


def resized_affine(
    affine: np.ndarray, shape: Sequence[int], new_shape: Sequence[int]
) -> np.ndarray:
    """The voxel-to-RAS affine of the resized grid (same extent and centre as `affine`'s)."""
    ratio = np.asarray(shape, dtype=float) / np.asarray(new_shape, dtype=float)
    affine = np.asarray(affine, dtype=float)
    new = affine.copy()
    new[:3, :3] = affine[:3, :3] * ratio  # scales each column: voxel i grows by n / m
    new[:3, 3] = affine[:3, :3] @ (0.5 * ratio - 0.5) + affine[:3, 3]
    return new


def resample_image(volume: Volume, target_spacing_mm: Sequence[float]) -> Volume:
    """Trilinear resampling of an image (HU) to the target spacing; float32, same extent/centre."""
    new_shape = target_shape(volume.shape, volume.spacing, target_spacing_mm)
    if new_shape == volume.shape:
        return Volume(volume.array.astype(np.float32, copy=False), volume.affine, volume.source)
    tensor = torch.from_numpy(np.ascontiguousarray(volume.array, dtype=np.float32))[None, None]
    # torch: 0.16 s for 512x512x300 -> 1.5 mm on 2 cores, vs scipy 0.64 s and SimpleITK 1.8 s.
    resized = torch.nn.functional.interpolate(
        tensor, size=new_shape, mode="trilinear", align_corners=False
    )[0, 0].numpy()
    return Volume(resized, resized_affine(volume.affine, volume.shape, new_shape), volume.source)


def nearest_indices(size: int, new_size: int) -> np.ndarray:
    """Source index of each new voxel along one axis (nearest centre; torch's 'nearest-exact')."""
    positions = (np.arange(new_size) + 0.5) * (size / new_size)
    return np.minimum(np.floor(positions).astype(np.intp), size - 1)


def resample_labels(array: np.ndarray, new_shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of a label or bit-packed array (any dtype) to `new_shape`.

    An axis-aligned resize is separable, so nearest neighbour is one gather per axis: exact
    labels, every dtype (bit-packed uint64 included) and no per-structure passes.
    """
    if tuple(new_shape) == array.shape:
        return array
    gathers = [nearest_indices(n, m) for n, m in zip(array.shape, new_shape, strict=True)]
    return _gather(array, gathers)


def _gather(array: np.ndarray, gathers: Sequence[np.ndarray]) -> np.ndarray:
    """`array[np.ix_(*gathers)]` as one `take` per axis, shrinking axes first (3x faster)."""
    if array.flags.f_contiguous and not array.flags.c_contiguous:
        # NIfTI arrays are Fortran-ordered; takes on the C-ordered transpose stream through memory.
        return _gather(array.T, gathers[::-1]).T
    for axis in sorted(range(array.ndim), key=lambda a: len(gathers[a]) / array.shape[a]):
        array = np.take(array, gathers[axis], axis=axis)
    return array


def resample_labels_to_ras(volume: Volume, new_shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of a label `Volume` in any orientation onto the RAS grid of
    `new_shape` (the grid `resample_labels` gives for `volume.to_canonical()`).

    The gather reads the on-disk array directly, so the full-resolution reorientation copy is
    never made (it cost 60 ms per 517x392x116 mask; the gather costs 12 ms).
    """
    ornt = orientations.io_orientation(volume.affine)  # per array axis: (RAS axis, flip)
    ras_axes = [int(axis) for axis in ornt[:, 0]]
    ras_shape = [0, 0, 0]
    for axis, ras in enumerate(ras_axes):
        ras_shape[ras] = volume.shape[axis]
    gathers = []
    for axis, (ras, flip) in enumerate(zip(ras_axes, ornt[:, 1], strict=True)):
        index = nearest_indices(ras_shape[ras], int(new_shape[ras]))
        gathers.append(index if flip > 0 else volume.shape[axis] - 1 - index)
    return _gather(volume.array, gathers).transpose(np.argsort(ras_axes))


def resample_mask_volume(volume: Volume, target_spacing_mm: Sequence[float]) -> Volume:
    """A mask or label `Volume` resampled (nearest neighbour) to the target spacing."""
    new_shape = target_shape(volume.shape, volume.spacing, target_spacing_mm)
    array = resample_labels(volume.array, new_shape)
    return Volume(array, resized_affine(volume.affine, volume.shape, new_shape), volume.source)
