"""Implicit shapes, partial-volume painting and correlated noise against analytic answers."""

from __future__ import annotations

import numpy as np
import pytest

from tumorscale.geometry import rotation_matrix
from tumorscale.phantom.geometry import (
    Difference,
    Ellipsoid,
    HalfSpace,
    Intersection,
    Tube,
    Union,
    Waves,
    Wobbled,
    ZEllipse,
    model_volume_mm3,
)
from tumorscale.phantom.render import Canvas, Grid, Layer, add_correlated_noise, to_int16_hu
from tumorscale.phantom.tissues import Tissue


def test_sphere_distance_is_exact() -> None:
    sphere = Ellipsoid((10.0, -5.0, 3.0), (8.0, 8.0, 8.0))
    points = np.array([[10.0, -5.0, 3.0], [18.0, -5.0, 3.0], [10.0, 7.0, 3.0], [10.0, -5.0, -9.0]])
    assert sphere.distance_at(points) == pytest.approx([-8.0, 0.0, 4.0, 4.0], abs=1e-4)


def test_rotated_ellipsoid_bounds_and_surface() -> None:
    rotation = rotation_matrix((0.0, 0.0, np.pi / 2))  # long axis turned from x onto y
    ellipsoid = Ellipsoid((0.0, 0.0, 0.0), (20.0, 5.0, 5.0), rotation)
    low, high = ellipsoid.bounds()
    assert high == pytest.approx([5.0, 20.0, 5.0], abs=1e-6)
    assert low == pytest.approx([-5.0, -20.0, -5.0], abs=1e-6)
    on_surface = ellipsoid.distance_at([[0.0, 20.0, 0.0], [5.0, 0.0, 0.0]])
    assert on_surface == pytest.approx([0, 0], abs=1e-4)
    assert ellipsoid.distance_at([[20.0, 0.0, 0.0]])[0] > 10.0


def test_tube_is_a_capsule_chain() -> None:
    tube = Tube(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 30.0], [30.0, 0.0, 30.0]]), 4.0)
    points = np.array([[0.0, 10.0, 15.0], [15.0, 0.0, 34.0], [0.0, 0.0, -6.0], [1.0, 1.0, 10.0]])
    assert tube.distance_at(points) == pytest.approx([6.0, 0.0, 2.0, np.sqrt(2) - 4.0], abs=1e-4)


def test_tube_grid_evaluation_matches_pointwise() -> None:
    tube = Tube(np.array([[0.0, 0.0, 0.0], [20.0, 10.0, 5.0], [30.0, 30.0, 10.0]]), [3.0, 6.0, 2.0])
    xs, ys, zs = np.arange(-10, 40, 2.0), np.arange(-10, 40, 2.0), np.arange(-10, 20, 2.0)
    grid = tube.distance_on_grid(xs, ys, zs)
    x, y, z = np.meshgrid(xs, ys, zs, indexing="ij")
    pointwise = tube.distance(x, y, z)
    near = pointwise < 3.0  # far away the grid version only promises "outside"
    assert np.allclose(grid[near], pointwise[near], atol=1e-3)
    assert np.all(grid[~near] > 0)


def test_boolean_operations_keep_the_sign() -> None:
    big = Ellipsoid((0.0, 0.0, 0.0), (10.0, 10.0, 10.0))
    small = Ellipsoid((0.0, 0.0, 0.0), (5.0, 5.0, 5.0))
    shell = Difference(big, small)
    points = np.array([[0.0, 0.0, 0.0], [7.0, 0.0, 0.0], [12.0, 0.0, 0.0]])
    assert list(np.sign(shell.distance_at(points))) == [1, -1, 1]
    half = Intersection((big, HalfSpace((0.0, 0.0, 0.0), (1.0, 0.0, 0.0))))
    assert list(np.sign(half.distance_at([[-5.0, 0, 0], [5.0, 0, 0]]))) == [-1, 1]
    both = Union((small, Ellipsoid((20.0, 0.0, 0.0), (3.0, 3.0, 3.0))))
    assert list(np.sign(both.distance_at([[0.0, 0, 0], [20.0, 0, 0], [12.0, 0, 0]]))) == [-1, -1, 1]


def test_model_volume_of_a_sphere_and_a_wobbled_sphere() -> None:
    radius = 12.0
    exact = 4.0 / 3.0 * np.pi * radius**3
    assert model_volume_mm3(Ellipsoid((1.0, 2.0, 3.0), (radius,) * 3), 0.5) == pytest.approx(
        exact, rel=0.01)
    waves = Waves.sample(np.random.default_rng(0), 3, (10.0, 20.0))
    wobbled = Wobbled(Ellipsoid((0.0, 0.0, 0.0), (radius,) * 3), waves, 1.0)
    # A zero-mean radial perturbation keeps the volume close to the sphere's.
    assert model_volume_mm3(wobbled, 0.5) == pytest.approx(exact, rel=0.15)


def test_z_ellipse_profiles_interpolate_with_height() -> None:
    column = ZEllipse((-10.0, 10.0), (0.0, 0.0), (0.0, 0.0), (10.0, 20.0), (5.0, 5.0))
    assert column.distance_at([[15.0, 0.0, 0.0], [14.0, 0.0, 0.0]]) == pytest.approx([0.0, -1.0],
                                                                                     abs=1e-4)
    assert column.distance_at([[0.0, 0.0, 12.0]])[0] == pytest.approx(2.0)


def test_partial_volume_coverage_preserves_volume() -> None:
    """Fractional coverage summed over voxels equals the sphere's volume; the mask is d <= 0."""
    radius = 9.0
    grid = Grid.covering(np.array([-15.0, -15.0, -15.0]), np.array([15.0, 15.0, 15.0]),
                         (2.0, 2.0, 3.0))
    canvas = Canvas.empty(grid, air_hu=0.0)
    sphere = Ellipsoid((0.3, -0.7, 0.4), (radius,) * 3)
    labelled = canvas.paint(Layer("ball", sphere, 1000.0, Tissue.LIVER), {})
    voxel_mm3 = float(np.prod(grid.spacing))
    exact = 4.0 / 3.0 * np.pi * radius**3
    assert canvas.ct.sum() / 1000.0 * voxel_mm3 == pytest.approx(exact, rel=0.03)
    assert labelled * voxel_mm3 == pytest.approx(exact, rel=0.08)
    fractional = (canvas.ct > 0) & (canvas.ct < 1000)
    assert fractional.any(), "edges must be anti-aliased"
    assert np.all(canvas.ct[canvas.labels == Tissue.LIVER] >= 500.0)


def test_allowed_labels_confine_a_layer() -> None:
    grid = Grid.covering(np.array([-10.0] * 3), np.array([10.0] * 3), (1.0, 1.0, 1.0))
    canvas = Canvas.empty(grid, air_hu=0.0)
    half = HalfSpace((0.0, 0.0, 0.0), (1.0, 0.0, 0.0))
    canvas.paint(Layer("half", half, 10.0, Tissue.MUSCLE), {})
    ball = Ellipsoid((0.0, 0.0, 0.0), (6.0, 6.0, 6.0))
    canvas.paint(Layer("ball", ball, 50.0, Tissue.LIVER, frozenset({Tissue.MUSCLE})), {})
    xs = grid.xs
    assert np.all(canvas.labels[xs > 0.5] != Tissue.LIVER)
    assert np.any(canvas.labels[xs < -0.5] == Tissue.LIVER)


@pytest.mark.parametrize("grain_mm", [0.0, 1.5])
def test_noise_has_the_target_sd_and_in_plane_correlation(grain_mm: float) -> None:
    ct = np.zeros((96, 96, 8), dtype=np.float32)
    add_correlated_noise(ct, np.random.default_rng(3), 15.0, grain_mm, (0.75, 0.75, 3.0))
    assert ct.std() == pytest.approx(15.0, rel=0.05)
    neighbour = np.corrcoef(ct[:-1].ravel(), ct[1:].ravel())[0, 1]
    across_slices = np.corrcoef(ct[..., :-1].ravel(), ct[..., 1:].ravel())[0, 1]
    if grain_mm:
        assert neighbour > 0.5
    else:
        assert abs(neighbour) < 0.05
    assert abs(across_slices) < 0.05


def test_int16_conversion_rounds_and_clips() -> None:
    values = np.array([-2000.0, -1000.4, 0.6, 5000.0], dtype=np.float32)
    assert to_int16_hu(values).tolist() == [-1024, -1000, 1, 3071]
