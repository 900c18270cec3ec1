"""Centreline geometry (`synth/centerline.py`) on analytic tubes: the organ point cloud, centreline
tracking (straight, L-shaped and ring tubes at anisotropic spacing), polyline resampling, frames
and coordinates, PCA axes, soft occupancy, ellipsoid margins and the bump fields."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import ndtr

from tumorscale.synth.centerline import (
    OrganCloud,
    bump_field,
    direction_bump_field,
    ellipsoid_margin,
    polyline_coordinates,
    principal_axes,
    resample_polyline,
    smooth_bumps,
    soft_occupancy,
    track_centreline,
    transported_frames,
)


def mm_grid(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> list[np.ndarray]:
    """World mm of every voxel for the affine diag(spacing) (origin 0), per axis."""
    index = np.indices(shape, dtype=np.float64)
    return [index[a] * spacing[a] for a in range(3)]


def straight_tube(
    axis: int, spacing: tuple[float, float, float], length_mm: float = 60.0, radius_mm: float = 5.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A closed cylinder of `radius_mm` along `axis`, centred in the volume; returns the mask,
    the affine and the cylinder's centre (mm)."""
    shape = [int(2 * radius_mm / spacing[a]) + 8 for a in range(3)]
    shape[axis] = int((length_mm + 16) / spacing[axis])
    mm = mm_grid(tuple(shape), spacing)
    centre = np.array([(shape[a] - 1) * spacing[a] / 2 for a in range(3)])
    radial2 = sum((mm[a] - centre[a]) ** 2 for a in range(3) if a != axis)
    mask = (radial2 <= radius_mm**2) & (np.abs(mm[axis] - centre[axis]) <= length_mm / 2)
    return mask, np.diag([*spacing, 1.0]), centre


# ----------------------------------------------------------------------------- organ cloud


def test_organ_cloud_of_a_tube_holds_its_points_and_depths():
    spacing = (0.8, 0.8, 2.0)
    mask, affine, centre = straight_tube(2, spacing, radius_mm=5.0)
    cloud = OrganCloud(mask, affine)
    assert cloud.count == np.count_nonzero(mask)
    assert cloud.voxel_volume_mm3 == pytest.approx(0.8 * 0.8 * 2.0)
    # points are organ voxels (RAS mm of voxel centres)
    voxels = np.rint(cloud.points / np.asarray(spacing)).astype(int)
    np.testing.assert_allclose(voxels * np.asarray(spacing), cloud.points, atol=1e-9)
    assert mask[tuple(voxels.T)].all()
    # the depth is the distance to the wall: at most the radius (plus one coarse 2 mm step),
    # largest on the axis and small at the wall
    radial = np.hypot(cloud.points[:, 0] - centre[0], cloud.points[:, 1] - centre[1])
    assert cloud.depth.max() == pytest.approx(5.0, abs=1.7)
    on_axis = radial < 1.0
    assert cloud.depth[on_axis & (np.abs(cloud.points[:, 2] - centre[2]) < 20)].min() >= 4.0
    assert cloud.depth[radial > 4.0].max() <= 2.0
    # near(): the points within a radius, exactly
    picked = cloud.near(centre, 4.0)
    distance = np.linalg.norm(cloud.points - centre, axis=1)
    np.testing.assert_array_equal(picked, distance <= 4.0)
    # local_axis(): the tube's direction through its centre
    centroid, direction = cloud.local_axis(centre, 10.0)
    np.testing.assert_allclose(np.abs(direction), [0, 0, 1], atol=0.02)
    np.testing.assert_allclose(centroid[:2], centre[:2], atol=0.5)


def test_an_empty_organ_gives_an_empty_cloud_and_a_one_point_track():
    empty = np.zeros((20, 20, 10), bool)
    cloud = OrganCloud(empty, np.eye(4))
    assert cloud.count == 0
    assert cloud.points.shape == (0, 3) and cloud.depth.shape == (0,)
    assert cloud.local_axis(np.zeros(3), 10.0) is None
    assert cloud.recentre(np.zeros(3), np.array([0.0, 0.0, 1.0]), 2.0, 5.0) is None
    start = np.array([1.0, 2.0, 3.0])
    track = track_centreline(cloud, start, np.array([0.0, 0.0, 1.0]), 8.0, 3.0, 50.0, 20.0)
    np.testing.assert_array_equal(track, start[None])


# ----------------------------------------------------------------------------- tracking


@pytest.mark.parametrize(
    ("axis", "spacing"),
    [(2, (0.8, 0.8, 2.0)), (0, (2.0, 0.8, 0.8)), (1, (0.7, 1.5, 0.7))],
)
def test_tracking_a_straight_tube_follows_its_axis_to_its_end(axis: int, spacing):
    """Start 1 mm off the axis, heading 11° off it: the track recentres within a voxel, moves
    in even steps, and stops at the tube's end, whatever the slice spacing along the tube."""
    mask, affine, centre = straight_tube(axis, spacing, length_mm=60.0)
    cloud = OrganCloud(mask, affine)
    along = np.eye(3)[axis]
    across = np.eye(3)[(axis + 1) % 3]
    start = centre - 20.0 * along + 1.0 * across
    heading = along + 0.2 * across
    track = track_centreline(cloud, start, heading / np.linalg.norm(heading), 7.5, 3.0, 200.0, 20.0)
    s = (track - centre) @ along
    off_axis = np.linalg.norm((track - centre) - np.outer(s, along), axis=1)
    in_plane_voxel = math.hypot(*[spacing[a] for a in range(3) if a != axis])
    assert off_axis[1:].max() <= in_plane_voxel  # recentred on the axis from the first step on
    assert np.all(np.diff(s) > 0)  # ordered, forward
    np.testing.assert_allclose(np.linalg.norm(np.diff(track, axis=0), axis=1), 3.0)
    # it stops at the end (30 mm from the centre), within a step: 50 mm of track in 3 mm steps
    assert s[-1] == pytest.approx(30.0, abs=3.0)
    assert len(track) == pytest.approx(1 + 50 / 3, abs=1.5)
    # the length in mm of the resampled centreline: the same at every spacing
    _, arc = resample_polyline(track, 1.0)
    assert arc[-1] == pytest.approx(3.0 * (len(track) - 1))
    assert arc[-1] == pytest.approx(50.0, abs=3.0)


def test_tracking_stops_at_the_reach_and_goes_either_way():
    mask, affine, centre = straight_tube(2, (0.8, 0.8, 2.0), length_mm=60.0)
    cloud = OrganCloud(mask, affine)
    up = np.array([0.0, 0.0, 1.0])
    short = track_centreline(cloud, centre, up, 7.5, 3.0, 20.0, 20.0)
    assert len(short) == 1 + math.ceil(20.0 / 3.0)  # steps while less than 20 mm travelled
    back = track_centreline(cloud, centre, -up, 7.5, 3.0, 200.0, 20.0)
    s = (back - centre) @ up
    assert np.all(np.diff(s) < 0)
    assert s[-1] == pytest.approx(-30.0, abs=3.0)


def test_tracking_never_turns_back_at_a_blind_end():
    """With a PCA radius near the tube radius the tracker used to U-turn at the blind end and
    retrace the tube (182 mm of track on a 60 mm tube): each step now also keeps the direction
    of the last few steps' chord."""
    mask, affine, centre = straight_tube(2, (0.8, 0.8, 2.0), length_mm=60.0)
    cloud = OrganCloud(mask, affine)
    up = np.array([0.0, 0.0, 1.0])
    track = track_centreline(cloud, centre - 20.0 * up, up, 8.0, 2.0, 200.0, 8.0)
    assert np.all(np.diff(track[:, 2]) > 0)
    assert track[-1, 2] - track[0, 2] > 40.0  # it still reaches the end, 50 mm away


def test_tracking_turns_the_corner_of_an_l_shaped_tube():
    spacing = (1.0, 1.0, 2.0)
    x, y, z = mm_grid((24, 48, 30), spacing)
    radius = 4.0
    up_leg = ((x - 10) ** 2 + (y - 10) ** 2 <= radius**2) & (z >= 4) & (z <= 44)
    across_leg = ((x - 10) ** 2 + (z - 44) ** 2 <= radius**2) & (y >= 10) & (y <= 40)
    cloud = OrganCloud(up_leg | across_leg, np.diag([*spacing, 1.0]))
    track = track_centreline(
        cloud, np.array([10.0, 10.0, 10.0]), np.array([0.0, 0.0, 1.0]), 7.0, 2.0, 200.0, 7.0
    )
    # every point on the L's axis (the corner cut by less than the tube radius)
    on_up = np.hypot(track[:, 0] - 10, track[:, 1] - 10)
    on_across = np.hypot(track[:, 0] - 10, track[:, 2] - 44)
    to_axis = np.where(track[:, 2] <= 44, on_up, np.inf)
    to_axis = np.minimum(to_axis, np.where(track[:, 1] >= 10, on_across, np.inf))
    assert to_axis.max() <= radius
    np.testing.assert_allclose(track[:, 0], 10.0, atol=0.5)  # the L lies in the plane x = 10
    # up the first leg, then along the second to its end (y = 40), in even 2 mm steps
    assert np.all(np.diff(track[:, 1]) >= -1e-9) and np.all(np.diff(track[:, 2]) >= -0.5)
    assert track[-1, 1] == pytest.approx(40.0, abs=2.0)
    assert track[-1, 2] == pytest.approx(44.0, abs=1.0)
    np.testing.assert_allclose(np.linalg.norm(np.diff(track, axis=0), axis=1), 2.0)
    # its length: 34 mm up, 30 mm across, less the cut corner
    assert 2.0 * (len(track) - 1) == pytest.approx(64.0, abs=6.0)


def test_tracking_around_a_ring_stays_on_its_circle():
    spacing = (1.0, 1.0, 1.5)
    x, y, z = mm_grid((56, 56, 24), spacing)
    centre = np.array([28.0, 28.0, 18.0])
    ring_radius, tube_radius = 18.0, 4.5
    rho = np.hypot(x - centre[0], y - centre[1])
    mask = (rho - ring_radius) ** 2 + (z - centre[2]) ** 2 <= tube_radius**2
    cloud = OrganCloud(mask, np.diag([*spacing, 1.0]))
    start = centre + np.array([ring_radius, 0.0, 0.0])
    track = track_centreline(cloud, start, np.array([0.0, 1.0, 0.0]), 8.0, 2.5, 100.0, 8.0)
    radius = np.hypot(track[:, 0] - centre[0], track[:, 1] - centre[1])
    angle = np.unwrap(np.arctan2(track[:, 1] - centre[1], track[:, 0] - centre[0]))
    assert np.abs(radius - ring_radius).max() <= 1.0  # within a voxel of the circle
    assert np.abs(track[:, 2] - centre[2]).max() <= 1.5
    assert np.all(np.diff(angle) > 0)  # counter-clockwise all the way
    # 100 mm of chords on an 18 mm circle: 100 / 18 = 5.56 rad (the chords cut it slightly)
    assert angle[-1] == pytest.approx(100.0 / ring_radius, rel=0.03)


# ----------------------------------------------------------------------------- polylines

L_POLYLINE = np.array([[0.0, 0.0, 0.0], [30.0, 0.0, 0.0], [30.0, 40.0, 0.0]])


def test_resample_polyline_spaces_points_evenly_along_the_arc():
    points, arc = resample_polyline(L_POLYLINE, 7.0)
    np.testing.assert_allclose(arc, np.arange(11) * 7.0)  # 70 mm in 7 mm steps
    np.testing.assert_allclose(points[0], L_POLYLINE[0])
    np.testing.assert_allclose(points[-1], L_POLYLINE[-1])
    np.testing.assert_allclose(points[3], [21.0, 0.0, 0.0])
    np.testing.assert_allclose(points[5], [30.0, 5.0, 0.0])  # 35 mm: 5 mm past the corner
    # a step that does not divide the length: the nearest count of even steps
    _, uneven = resample_polyline(L_POLYLINE, 6.0)
    assert len(uneven) == 13 and uneven[-1] == pytest.approx(70.0)
    # too short for a step: the two ends
    ends, _ = resample_polyline(L_POLYLINE[:2], 100.0)
    np.testing.assert_allclose(ends, L_POLYLINE[:2])


def test_transported_frames_are_orthonormal_and_do_not_twist():
    tangents, us, vs = transported_frames(L_POLYLINE, np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(tangents, [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    # the plane's normal is parallel along a planar path: it stays +z
    np.testing.assert_allclose(us, [[0, 0, 1], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(vs, np.cross(tangents, us))
    # a reference not perpendicular to the path is projected onto the normal plane
    _, tilted, _ = transported_frames(L_POLYLINE, np.array([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(tilted[0], [0, 0, 1], atol=1e-12)
    # a helix: frames stay orthonormal
    t = np.linspace(0.0, 4 * np.pi, 60)
    helix = np.stack([10 * np.cos(t), 10 * np.sin(t), 3 * t], axis=1)
    tangents, us, vs = transported_frames(helix, np.array([1.0, 0.0, 0.0]), centre_index=30)
    np.testing.assert_allclose(np.einsum("ij,ij->i", tangents, us), 0.0, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(us, axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(vs, axis=1), 1.0)


def test_polyline_coordinates_of_a_straight_line_are_cylindrical_coordinates():
    line = np.stack([np.zeros(11), np.zeros(11), np.linspace(-25.0, 25.0, 11)], axis=1)
    rng = np.random.default_rng(0)
    points = rng.uniform(-40.0, 40.0, (500, 3))
    s, angle, rho = polyline_coordinates(points, line, 5, np.array([1.0, 0.0, 0.0]))
    assert s.dtype == angle.dtype == rho.dtype == np.float32
    # arc length from the centre vertex (z = 0), growing past both ends along the end segments
    np.testing.assert_allclose(s, points[:, 2], atol=1e-4)
    np.testing.assert_allclose(rho, np.hypot(points[:, 0], points[:, 1]), atol=1e-4)
    # angle 0 along the reference (+x), +90° along tangent x reference (+y)
    np.testing.assert_allclose(angle, np.arctan2(points[:, 1], points[:, 0]), atol=1e-4)
    # pruned: far points (and arc lengths out of range) get distance inf, s and angle 0
    s2, angle2, rho2 = polyline_coordinates(
        points, line, 5, np.array([1.0, 0.0, 0.0]), max_rho_mm=20.0, s_range=(-10.0, 30.0)
    )
    kept = (rho <= 20.0) & (s >= -10.0) & (s <= 30.0)
    assert 0 < kept.sum() < len(points)
    np.testing.assert_array_equal(np.isinf(rho2), ~kept)
    np.testing.assert_allclose(s2[kept], s[kept], atol=1e-5)
    np.testing.assert_allclose(rho2[kept], rho[kept], atol=1e-5)
    assert np.all(s2[~kept] == 0) and np.all(angle2[~kept] == 0)


def test_polyline_coordinates_follow_the_bend_and_stay_exact_with_many_segments():
    # points around the L's second leg: arc length 30 + y from the start, distance to that leg
    points = np.array([[30.0, 10.0, 3.0], [26.0, 25.0, 0.0], [33.0, 39.0, -4.0]])
    s, _, rho = polyline_coordinates(points, L_POLYLINE, 0, np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(s, [40.0, 55.0, 69.0], atol=1e-4)
    np.testing.assert_allclose(rho, [3.0, 4.0, 5.0], atol=1e-4)
    # a finely sampled circle (>32 segments: the tiled search) gives the analytic answer
    t = np.linspace(0.0, np.pi, 181)
    arc_line = np.stack([20 * np.cos(t), 20 * np.sin(t), np.zeros_like(t)], axis=1)
    rng = np.random.default_rng(1)
    phi = rng.uniform(0.2, np.pi - 0.2, 4000)
    r = rng.uniform(12.0, 28.0, 4000)
    height = rng.uniform(-6.0, 6.0, 4000)
    points = np.stack([r * np.cos(phi), r * np.sin(phi), height], axis=1)
    s, _, rho = polyline_coordinates(points, arc_line, 90, np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(rho, np.hypot(r - 20.0, height), atol=0.02)
    # arc length 20 x angle, up to the polygon's chords: (r - 20) x half a 1° segment <= 0.07 mm
    np.testing.assert_allclose(s, 20.0 * (phi - np.pi / 2), atol=0.1)


# ----------------------------------------------------------------------------- shape helpers


def test_principal_axes_of_an_anisotropic_box_of_points():
    rng = np.random.default_rng(2)
    local = rng.uniform(-1.0, 1.0, (20_000, 3)) * np.array([30.0, 10.0, 3.0])
    angle = 0.4
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0, 0, 1]]
    )
    points = local @ rotation.T + np.array([5.0, -7.0, 100.0])
    centroid, axes, sds = principal_axes(points)
    np.testing.assert_allclose(centroid, [5.0, -7.0, 100.0], atol=0.5)
    # uniform on [-a, a]: SD a / sqrt(3), largest first
    np.testing.assert_allclose(sds, np.array([30.0, 10.0, 3.0]) / np.sqrt(3), rtol=0.02)
    np.testing.assert_allclose(np.abs(axes @ rotation[:, 0]), [1, 0, 0], atol=0.01)
    np.testing.assert_allclose(np.abs(axes @ rotation[:, 1]), [0, 1, 0], atol=0.01)
    assert np.linalg.det(axes) == pytest.approx(1.0)  # right-handed rows


def test_soft_occupancy_is_a_blurred_step():
    margin = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
    occupancy = soft_occupancy(margin, 2.0)
    assert occupancy.dtype == np.float32
    np.testing.assert_allclose(occupancy, ndtr(margin / 2.0), atol=1e-6)
    assert occupancy[2] == pytest.approx(0.5)
    assert occupancy[3] == pytest.approx(0.8413, abs=1e-4)  # one sigma inside
    # sigma 0: a hard step (no division by zero)
    np.testing.assert_array_equal(soft_occupancy(np.array([-0.5, 0.5]), 0.0), [0.0, 1.0])


def test_ellipsoid_margin_is_exact_on_a_sphere_and_zero_on_the_surface():
    rng = np.random.default_rng(3)
    local = rng.normal(0.0, 10.0, (1000, 3)).astype(np.float32)
    radius = np.linalg.norm(local, axis=1)
    np.testing.assert_allclose(
        ellipsoid_margin(local, (8.0, 8.0, 8.0)), 8.0 - radius, rtol=1e-4, atol=1e-3
    )
    # on an ellipsoid's surface the margin is 0; inside positive, outside negative
    semi = (12.0, 6.0, 3.0)
    direction = rng.normal(size=(500, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    scale = 1.0 / np.sqrt(((direction / np.asarray(semi)) ** 2).sum(axis=1))
    surface = (direction * scale[:, None]).astype(np.float32)
    np.testing.assert_allclose(ellipsoid_margin(surface, semi), 0.0, atol=1e-4)
    assert np.all(ellipsoid_margin(0.5 * surface, semi) > 0)
    assert np.all(ellipsoid_margin(1.5 * surface, semi) < 0)
    # along a semi-axis it is the distance to the surface (within first order)
    tip = np.array([[10.0, 0.0, 0.0], [0.0, 0.0, 2.0]], np.float32)
    np.testing.assert_allclose(ellipsoid_margin(tip, semi), [2.0, 1.0], atol=1e-5)


def test_bump_fields_are_seeded_and_agree():
    a = smooth_bumps(np.random.default_rng(4), count=4)
    b = smooth_bumps(np.random.default_rng(4), count=4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    frequencies, phases, weights = a
    assert frequencies.shape == phases.shape == (4, 2)
    assert np.all((frequencies >= 1) & (frequencies <= 3))
    assert np.linalg.norm(weights) == pytest.approx(1.0)
    # direction_bump_field(p) = bump_field(azimuth, 2 x polar) of the directions
    rng = np.random.default_rng(5)
    points = rng.normal(size=(2000, 3))
    azimuth = np.arctan2(points[:, 1], points[:, 0])
    polar = np.arccos(points[:, 2] / np.linalg.norm(points, axis=1))
    np.testing.assert_allclose(
        direction_bump_field(points, a), bump_field(azimuth, 2.0 * polar, a), atol=1e-4
    )
    # distinct frequency pairs: an orthogonal sum of unit-weight cos x cos terms, RMS 1/sqrt(2)
    harmonics = (np.array([[1.0, 1.0], [2.0, 1.0], [1.0, 3.0]]), np.zeros((3, 2)), weights[:3])
    harmonics = (harmonics[0], harmonics[1], harmonics[2] / np.linalg.norm(harmonics[2]))
    u, w = np.meshgrid(*(np.linspace(0, 2 * np.pi, 200, endpoint=False),) * 2, indexing="ij")
    field = bump_field(u, w, harmonics)
    assert float(np.sqrt((field**2).mean())) == pytest.approx(1 / np.sqrt(2), rel=1e-3)
