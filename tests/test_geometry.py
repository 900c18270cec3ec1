"""Grid geometry: spacing from affines, margins and boxes, distance maps in mm (analytic values)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tumorscale.geometry import (
    boundary_signed_distance_mm,
    box_affine,
    centre_signed_distance_mm,
    depth_mm,
    grow_box,
    margin_voxels,
    spacing_of,
)


def _rotation_z(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def test_spacing_of_is_the_length_of_each_affine_column() -> None:
    assert spacing_of(np.diag([0.7, 0.8, 2.5, 1.0])) == (0.7, 0.8, 2.5)
    assert spacing_of(np.diag([-0.7, -0.8, 2.5, 1.0])) == (0.7, 0.8, 2.5)  # LPS flips
    affine = np.eye(4)
    affine[:3, :3] = _rotation_z(30.0) @ np.diag([0.8, 1.2, 3.0])
    affine[:3, 3] = (-100.0, 20.0, 5.0)
    assert spacing_of(affine) == pytest.approx((0.8, 1.2, 3.0), abs=1e-12)
    assert all(type(v) is float for v in spacing_of(affine))


def test_margin_voxels_rounds_up_per_axis() -> None:
    np.testing.assert_array_equal(margin_voxels(5.0, (0.8, 1.0, 2.5)), [7, 5, 2])
    np.testing.assert_array_equal(margin_voxels(0.0, (0.8, 1.0, 2.5)), [0, 0, 0])
    np.testing.assert_array_equal(margin_voxels(2.6, (1.3, 1.3, 1.3)), [2, 2, 2])


def test_grow_box_clips_to_the_grid_and_takes_one_or_per_axis_margins() -> None:
    box = (slice(2, 5), slice(0, 3), slice(8, 10))
    assert grow_box(box, 2, (10, 10, 10)) == (slice(0, 7), slice(0, 5), slice(6, 10))
    grown = grow_box(box, np.array([1, 4, 0]), (10, 6, 10))
    assert grown == (slice(1, 6), slice(0, 6), slice(8, 10))
    assert all(type(s.start) is int and type(s.stop) is int for s in grown)


def test_box_affine_puts_voxel_zero_at_the_box_start() -> None:
    affine = np.eye(4)
    affine[:3, :3] = _rotation_z(15.0) @ np.diag([0.9, 0.9, 2.0])
    affine[:3, 3] = (10.0, -5.0, 3.0)
    shifted = box_affine(affine, (4, 7, 2))
    np.testing.assert_allclose(shifted @ [0, 0, 0, 1], affine @ [4, 7, 2, 1], atol=1e-12)
    np.testing.assert_allclose(shifted @ [1, 2, 3, 1], affine @ [5, 9, 5, 1], atol=1e-12)
    np.testing.assert_array_equal(shifted[:3, :3], affine[:3, :3])


def test_depth_of_a_slab_with_and_without_the_border_as_surface() -> None:
    mask = np.zeros((5, 5, 9), bool)
    mask[:, :, 2:7] = True  # a slab through the whole cross-section, z = 2..6
    spacing = (1.0, 1.0, 2.0)
    depth = depth_mm(mask, spacing)
    assert depth.dtype == np.float32
    np.testing.assert_array_equal(depth[2, 2, :], [0, 0, 2, 4, 6, 4, 2, 0, 0])
    assert depth[0, 0, 4] == 6.0  # the array's faces are not surface
    bordered = depth_mm(mask, spacing, border_is_surface=True)
    assert bordered.shape == mask.shape
    assert bordered[0, 0, 4] == 1.0  # one voxel from the face
    assert bordered[2, 2, 4] == 3.0  # three voxels (x, y) beat three slabs (6 mm)
    assert not depth_mm(np.zeros((3, 3, 3), bool), spacing).any()


def _ball(radius_vox: int, size: int) -> np.ndarray:
    grid = np.indices((size,) * 3) - size // 2
    return (grid**2).sum(axis=0) <= radius_vox**2


def test_sphere_signed_distances_at_known_points() -> None:
    ball = _ball(10, 41)  # radius 10 mm on a 1 mm grid, centre voxel (20, 20, 20)
    centre = centre_signed_distance_mm(ball, (1.0, 1.0, 1.0))
    assert centre.dtype == np.float32
    # Nearest outside voxel centre to the middle: offset (10, 1, 0), |v|^2 = 101.
    assert centre[20, 20, 20] == pytest.approx(-math.sqrt(101), abs=1e-5)
    assert centre[20, 20, 35] == pytest.approx(5.0)  # 5 voxels past the surface voxel (20, 20, 30)
    assert centre[20, 20, 30] == pytest.approx(-1.0)  # surface voxel: its outside neighbour
    assert centre[20, 20, 31] == pytest.approx(1.0)
    boundary = boundary_signed_distance_mm(ball, (1.0, 1.0, 1.0))
    assert boundary.dtype == np.float32
    assert boundary[20, 20, 20] == pytest.approx(0.5 - math.sqrt(101), abs=1e-5)
    assert boundary[20, 20, 35] == pytest.approx(4.5)
    assert boundary[20, 20, 30] == pytest.approx(-0.5)
    assert boundary[20, 20, 31] == pytest.approx(0.5)
    assert (centre[ball] < 0).all() and (centre[~ball] > 0).all()


def test_signed_distances_on_an_anisotropic_grid() -> None:
    mask = np.zeros((4, 4, 12), bool)
    mask[:, :, :5] = True  # inside: z = 0..4, slices 2 mm apart
    spacing = (1.0, 1.0, 2.0)
    centre = centre_signed_distance_mm(mask, spacing)
    np.testing.assert_array_equal(centre[1, 1, [0, 4, 5, 7]], [-10.0, -2.0, 2.0, 6.0])
    boundary = boundary_signed_distance_mm(mask, spacing)
    # half the *smallest* voxel side (0.5 mm) between a centre and the boundary
    np.testing.assert_array_equal(boundary[1, 1, [0, 4, 5, 7]], [-9.5, -1.5, 1.5, 5.5])
    # the inside-positive field is the negation
    np.testing.assert_array_equal(-centre, np.where(mask, depth_mm(mask, spacing),
                                                    -depth_mm(~mask, spacing)))
