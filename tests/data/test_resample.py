"""Resampling to the target spacing: geometry (extent, centre, affine), values, mask volumes."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import sphere
from tumorscale.data import resample_image, resample_labels, resample_mask_volume, target_shape
from tumorscale.data.resample import resample_labels_to_ras
from tumorscale.io import Volume

# An anisotropic LPS-like grid (flipped i and j) with an offset origin: 0.8 x 0.8 x 2.5 mm.
AFFINE = np.array(
    [[-0.8, 0.0, 0.0, 40.0], [0.0, -0.8, 0.0, 25.0], [0.0, 0.0, 2.5, -60.0], [0, 0, 0, 1.0]]
)
SHAPE = (60, 50, 16)


def _world(affine: np.ndarray, index: np.ndarray) -> np.ndarray:
    return (affine[:3, :3] @ np.asarray(index, dtype=float).T).T + affine[:3, 3]


def _extent(volume: Volume) -> np.ndarray:
    return np.asarray(volume.shape) * np.asarray(volume.spacing)


def test_target_shape_rounds_the_extent() -> None:
    assert target_shape((512, 512, 100), (0.7, 0.7, 3.0), (1.5, 1.5, 1.5)) == (239, 239, 200)
    assert target_shape((3, 3, 1), (0.1, 0.1, 0.1), (1.5, 1.5, 1.5)) == (1, 1, 1)


def test_anisotropic_to_isotropic_keeps_extent_and_centre() -> None:
    volume = Volume(np.zeros(SHAPE, dtype=np.float32), AFFINE)
    resampled = resample_image(volume, (1.5, 1.5, 1.5))
    assert resampled.shape == (32, 27, 27)
    np.testing.assert_allclose(resampled.spacing, 1.5, rtol=0.02)
    np.testing.assert_allclose(_extent(resampled), _extent(volume), atol=1e-9)
    centre_before = _world(AFFINE, (np.asarray(SHAPE) - 1) / 2)
    centre_after = _world(resampled.affine, (np.asarray(resampled.shape) - 1) / 2)
    np.testing.assert_allclose(centre_after, centre_before, atol=1e-9)
    # Axis directions (and so the RAS/LPS sense) are unchanged.
    np.testing.assert_allclose(
        resampled.affine[:3, :3] / resampled.spacing, AFFINE[:3, :3] / volume.spacing
    )


def test_trilinear_values_sit_at_the_recorded_affine() -> None:
    # A linear function of world position is reproduced exactly by trilinear interpolation,
    # so every interior voxel's value must equal the function at its (new) affine position.
    def field(points: np.ndarray) -> np.ndarray:
        return 0.5 * points[..., 0] - 0.25 * points[..., 1] + 2.0 * points[..., 2]

    index = np.stack(np.indices(SHAPE), axis=-1).reshape(-1, 3)
    values = field(_world(AFFINE, index)).reshape(SHAPE).astype(np.float32)
    resampled = resample_image(Volume(values, AFFINE), (1.5, 1.5, 1.5))
    new_index = np.stack(np.indices(resampled.shape), axis=-1).reshape(-1, 3)
    expected = field(_world(resampled.affine, new_index)).reshape(resampled.shape)
    # Voxels whose source position lies inside [0, n - 1] on every axis (no edge clamping).
    source = (new_index + 0.5) * (np.asarray(SHAPE) / np.asarray(resampled.shape)) - 0.5
    interior = np.all((source >= 0) & (source <= np.asarray(SHAPE) - 1), axis=1)
    interior = interior.reshape(resampled.shape)
    assert interior.mean() > 0.8
    np.testing.assert_allclose(resampled.array[interior], expected[interior], atol=1e-3)


@pytest.mark.parametrize("radius_mm", [10.0, 14.0])
def test_resampled_mask_keeps_volume_and_position(radius_mm: float) -> None:
    # An ellipsoid in voxels that is a sphere of `radius_mm` in mm.
    grid = np.indices(SHAPE, dtype=float)
    centre = np.array([30.3, 24.6, 7.7])
    spacing = np.array([0.8, 0.8, 2.5])
    distance2 = sum(((grid[a] - centre[a]) * spacing[a]) ** 2 for a in range(3))
    mask = (distance2 <= radius_mm**2).astype(np.uint8)
    volume = Volume(mask, AFFINE)
    resampled = resample_mask_volume(volume, (1.5, 1.5, 1.5))
    assert resampled.array.dtype == np.uint8
    assert set(np.unique(resampled.array)) <= {0, 1}
    before = mask.sum() * volume.voxel_volume_mm3
    after = resampled.array.sum() * resampled.voxel_volume_mm3
    assert after == pytest.approx(before, rel=0.04)
    centroid_before = _world(AFFINE, np.argwhere(mask).mean(axis=0))
    centroid_after = _world(resampled.affine, np.argwhere(resampled.array).mean(axis=0))
    np.testing.assert_allclose(centroid_after, centroid_before, atol=0.75)


def test_nearest_resize_keeps_every_bit_and_inverts_integer_upsampling() -> None:
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**63, size=(7, 5, 4), dtype=np.uint64)
    up = resample_labels(bits, (14, 15, 8))
    assert up.dtype == np.uint64
    assert set(np.unique(up)) <= set(np.unique(bits))
    np.testing.assert_array_equal(resample_labels(up, bits.shape), bits)
    # Nearest neighbour commutes with bit packing: resizing the packed volume equals packing
    # the resized single-structure masks.
    single = ((bits >> np.uint64(5)) & np.uint64(1)).astype(np.uint8)
    np.testing.assert_array_equal(
        ((up >> np.uint64(5)) & np.uint64(1)).astype(np.uint8), resample_labels(single, up.shape)
    )


def test_sphere_helper_mask_survives_identity_spacing() -> None:
    mask = sphere((10, 10, 10), (4.5, 4.5, 4.5), 3.0)
    volume = Volume(mask, np.diag([1.5, 1.5, 1.5, 1.0]))
    assert resample_mask_volume(volume, (1.5, 1.5, 1.5)).array is mask


@pytest.mark.parametrize("order", ["C", "F"])
def test_resizing_on_disk_orientation_equals_resizing_the_canonical_array(order: str) -> None:
    # Axes permuted and flipped (array axes point P, S, L): the gather must land on RAS.
    affine = np.array(
        [[0.0, 0.0, -2.0, 10.0], [-0.7, 0.0, 0.0, 5.0], [0.0, 3.0, 0.0, 0.0], [0, 0, 0, 1.0]]
    )
    rng = np.random.default_rng(1)
    labels = np.asarray(rng.integers(0, 5, size=(41, 13, 17), dtype=np.uint8), order=order)
    volume = Volume(labels, affine)
    canonical = volume.to_canonical()
    assert canonical.orientation == "RAS"
    new_shape = target_shape(canonical.shape, canonical.spacing, (1.5, 1.5, 1.5))
    np.testing.assert_array_equal(
        resample_labels_to_ras(volume, new_shape), resample_labels(canonical.array, new_shape)
    )
