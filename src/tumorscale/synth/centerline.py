"""Geometry helpers for the hollow-organ and uterus shapes: mm point clouds, PCA axes, centreline
tracking, polyline coordinates (arc length, angle, radius) and soft occupancy from signed margins.

Everything is in RAS world mm; arrays are canonical (RAS) voxel grids with an affine. Written for
tumorscale (no code adapted from SyntheticTumors / DiffTumor).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.special import ndtr

from tumorscale.geometry import box_affine, depth_mm, margin_voxels, spacing_of
from tumorscale.masks import mask_bounds
from tumorscale.synth.types import Crop


def voxels_to_world(affine: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    """(N, 3) voxel indices -> (N, 3) RAS mm."""
    affine = np.asarray(affine, float)
    return np.asarray(voxels, float) @ affine[:3, :3].T + affine[:3, 3]


def world_to_voxel(affine: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
    """(..., 3) RAS mm -> (..., 3) continuous voxel indices."""
    affine = np.asarray(affine, float)
    return (np.asarray(points_mm, float) - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T


def crop_to_mask(
    mask: np.ndarray,
    affine: np.ndarray,
    margin_mm: float,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """The box around a mask's voxels plus `margin_mm` (clipped to the volume) and the affine of
    that box (its voxel (0, 0, 0) at the box start); None if the mask is empty. `bounds`: the
    mask's `mask_bounds` when already known."""
    if bounds is None:
        bounds = mask_bounds(mask)
    if bounds is None:
        return None
    margin = margin_voxels(margin_mm, spacing_of(affine))
    low = np.maximum(bounds[0] - margin, 0)
    high = np.minimum(bounds[1] + margin, np.asarray(np.shape(mask)))
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
    return box, box_affine(affine, low)


def principal_axes(points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid, axes (rows, largest variance first, right-handed) and their standard deviations."""
    centroid = points_mm.mean(axis=0)
    centred = points_mm - centroid
    covariance = centred.T @ centred / max(len(points_mm) - 1, 1)
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    axes = vectors[:, order].T.copy()
    for row in range(3):  # a deterministic sign: largest component positive
        if axes[row, np.argmax(np.abs(axes[row]))] < 0:
            axes[row] *= -1.0
    axes[2] = np.cross(axes[0], axes[1])
    return centroid, axes, np.sqrt(np.maximum(values[order], 0.0))


def perpendicular(direction: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to `direction` (deterministic)."""
    helper = np.eye(3)[int(np.argmin(np.abs(direction)))]
    vector = helper - (helper @ direction) * direction
    return vector / np.linalg.norm(vector)


COARSE_GRID_MM = 1.6


class OrganCloud:
    """An organ mask as an mm point cloud (subsampled to ~`max_points`) with each point's depth."""

    def __init__(self, organ_mask: np.ndarray, affine: np.ndarray, max_points: int = 80_000):
        spacing = np.asarray(spacing_of(affine))
        self.voxel_volume_mm3 = float(np.prod(spacing))
        bounds = mask_bounds(organ_mask)
        if bounds is None:
            self.count = 0
            self.points = np.zeros((0, 3))
            self.depth = np.zeros(0)
            return
        low, high = bounds
        whole = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
        mask = np.asarray(organ_mask)[whole]
        self.count = int(np.count_nonzero(mask))
        low = np.asarray(low)
        # depth on a grid of >= ~1.6 mm (fine scans are strided: 4-8x less distance transform)
        grid = np.maximum(1, np.rint(COARSE_GRID_MM / spacing)).astype(int)
        box = tuple(slice(0, b - a, g) for a, b, g in zip(low, high, grid, strict=True))
        coarse_mask = mask[box].astype(bool)  # strided before converting: a few % of the box
        # the volume border is organ surface for depth purposes
        box_depth = depth_mm(coarse_mask, spacing * grid, border_is_surface=True)
        coarse = np.argwhere(box_depth > 0)
        stride = max(1, math.ceil((len(coarse) / max_points) ** (1 / 3)))
        keep = coarse if stride == 1 else coarse[np.all(coarse % stride == 0, axis=1)]
        self.points = voxels_to_world(affine, low + keep * grid)
        self.depth = box_depth[tuple(keep.T)]

    def near(self, centre: np.ndarray, radius_mm: float) -> np.ndarray:
        """Boolean selection of the points within `radius_mm` of `centre`."""
        return np.einsum("ij,ij->i", self.points - centre, self.points - centre) <= radius_mm**2

    def local_axis(
        self, centre: np.ndarray, radius_mm: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Centroid and principal direction of the organ's deeper half within `radius_mm`."""
        pick = self.near(centre, radius_mm)
        if pick.sum() < 8:
            return None
        core = pick & (self.depth >= 0.5 * self.depth[pick].max())
        points = self.points[core] if core.sum() >= 8 else self.points[pick]
        centroid, axes, _ = principal_axes(points)
        return centroid, axes[0]

    def recentre(
        self, point: np.ndarray, direction: np.ndarray, half_width_mm: float, radius_mm: float
    ) -> tuple[np.ndarray, float] | None:
        """The centroid of the organ's cross-section slab through `point` (and its max depth)."""
        offset = self.points - point
        along = offset @ direction
        across2 = np.einsum("ij,ij->i", offset, offset) - along**2
        pick = (np.abs(along) <= half_width_mm) & (across2 <= radius_mm**2)
        if pick.sum() < 3:
            return None
        return self.points[pick].mean(axis=0), float(self.depth[pick].max())


_CHORD_STEPS = 3  # the direction of travel a step must keep: the chord of the last 3 steps


def track_centreline(
    cloud: OrganCloud,
    start: np.ndarray,
    direction: np.ndarray,
    radius_mm: float,
    step_mm: float,
    reach_mm: float,
    pca_radius_mm: float,
) -> np.ndarray:
    """March along the organ from `start` in `direction`, recentring on each cross-section;
    returns the visited points (first = start), stopping where the organ ends or turns back."""
    points = [np.asarray(start, float)]
    heading = np.asarray(direction, float)
    travelled = 0.0
    while travelled < reach_mm - 1e-6:
        guess = points[-1] + step_mm * heading
        found = cloud.recentre(guess, heading, 0.6 * step_mm, radius_mm)
        if found is None:
            break
        centre, _ = found
        move = centre - points[-1]
        length = float(np.linalg.norm(move))
        if length < 0.3 * step_mm or move @ heading <= 0.2 * length:
            break
        # Also against the last few steps' chord: at a blind end a PCA axis near the tube radius
        # can turn the heading a little per step until the track U-turns and retraces the tube.
        chord = points[-1] - points[max(0, len(points) - 1 - _CHORD_STEPS)]
        if len(points) > 1 and chord @ move <= 0.2 * length * float(np.linalg.norm(chord)):
            break
        axis = cloud.local_axis(centre, pca_radius_mm)
        new_heading = move / length if axis is None else axis[1]
        if new_heading @ heading < 0:
            new_heading = -new_heading
        # blend, so that a noisy PCA does not kink the path
        heading = new_heading + move / length
        heading /= np.linalg.norm(heading)
        centre = points[-1] + step_mm * (move / length)
        points.append(centre)
        travelled += step_mm
    return np.asarray(points)


def resample_polyline(points: np.ndarray, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample a polyline at even arc-length steps; returns the points and their arc lengths."""
    segment = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(segment)])
    count = max(2, round(float(arc[-1]) / step_mm) + 1)
    targets = np.linspace(0.0, arc[-1], count)
    resampled = np.stack([np.interp(targets, arc, points[:, axis]) for axis in range(3)], axis=1)
    return resampled, targets


def transported_frames(
    polyline: np.ndarray, reference: np.ndarray, centre_index: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per segment: tangent, the `reference` direction (given at vertex `centre_index`)
    parallel-transported along the polyline both ways (perpendicular to each tangent), and their
    cross product."""
    tangents = np.diff(polyline, axis=0)
    tangents /= np.maximum(np.linalg.norm(tangents, axis=1, keepdims=True), 1e-9)
    us = np.zeros_like(tangents)

    def transport(u: np.ndarray, tangent: np.ndarray) -> np.ndarray:
        u = u - (u @ tangent) * tangent
        norm = np.linalg.norm(u)
        return perpendicular(tangent) if norm < 1e-6 else u / norm

    first = min(centre_index, len(tangents) - 1)
    u = np.asarray(reference, float)
    for k in range(first, len(tangents)):
        u = transport(u, tangents[k])
        us[k] = u
    u = us[first]
    for k in range(first - 1, -1, -1):
        u = transport(u, tangents[k])
        us[k] = u
    return tangents, us, np.cross(tangents, us)


_BRUTE_SEGMENTS = 32  # up to this many segments (measured) blocks of all of them beat the tiles
_BRUTE_BLOCK = 8192
_TILE_MM = 12.0  # points are grouped in tiles this size; each tile checks the segments near it


def _nearest_segments(
    local: np.ndarray,
    tangents: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    max_distance: float = math.inf,
    wanted: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per point: index of its nearest polyline segment (the end segments extended outward), the
    clamped position along it (mm), and whether it was solved: points farther than
    `max_distance` from the polyline may be left out (False; their index and position are 0).
    Points are handled in spatial tiles, each against the segments that can hold its nearest
    point (a bounding-box test: the others are farther than some vertex is from every point of
    the tile, or than `max_distance`), so the work is not points x segments. A tile whose candidate
    segments are all outside `wanted` (bool per segment) is left out as well."""
    count, segments = len(local), len(lengths)
    start_along = np.einsum("kj,kj->k", starts, tangents)
    start_norm2 = np.einsum("kj,kj->k", starts, starts)

    def solve(block: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        along = block @ tangents[columns].T - start_along[columns]  # (n, k)
        clamped = np.clip(along, 0.0, lengths[columns])
        if columns[0] == 0:  # the end segments extend outward
            clamped[:, 0] = np.minimum(along[:, 0], lengths[0])
        if columns[-1] == segments - 1:
            clamped[:, -1] = np.maximum(along[:, -1], 0.0) if segments > 1 else along[:, -1]
        offset2 = (
            np.einsum("ij,ij->i", block, block)[:, None]
            - 2.0 * block @ starts[columns].T
            + start_norm2[columns]
        )
        radial2 = offset2 - 2.0 * clamped * along + clamped**2
        pick = np.argmin(radial2, axis=1)
        return columns[pick], clamped[np.arange(len(block)), pick]

    if segments <= _BRUTE_SEGMENTS or count < 2048:  # few segments: blocks beat the tiles
        nearest, position = np.empty(count, np.intp), np.empty(count, np.float64)
        for first in range(0, count, _BRUTE_BLOCK):  # cache-sized (points x segments) arrays
            last = first + _BRUTE_BLOCK
            nearest[first:last], position[first:last] = solve(
                local[first:last], np.arange(segments)
            )
        return nearest, position, np.ones(count, bool)
    ends = starts + tangents * lengths[:, None]
    vertices = np.concatenate([starts, ends[-1:]])
    rays = starts.copy(), ends.copy()  # the end segments as (long) rays outward
    rays[0][0] = starts[0] - 1e5 * tangents[0]
    rays[1][-1] = ends[-1] + 1e5 * tangents[-1]
    segment_low, segment_high = np.minimum(*rays), np.maximum(*rays)
    limit2 = max_distance**2 if math.isfinite(max_distance) else math.inf
    low = local.min(axis=0)
    cells = ((local - low) * (1.0 / _TILE_MM)).astype(np.int64)
    dims = cells.max(axis=0) + 1
    key = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    order = np.argsort(key.astype(np.int16 if dims.prod() < 2**15 else np.int64), kind="stable")
    ordered = local[order]
    key = key[order]
    splits = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1, [count]])
    tiles = np.stack(np.unravel_index(key[splits[:-1]], tuple(dims)), axis=1)
    tile_low = low + tiles * _TILE_MM - 1e-6  # each tile's box (it holds the tile's points)
    tile_high = tile_low + _TILE_MM + 2e-6
    nearest = np.zeros(count, np.intp)
    position = np.zeros(count, np.float64)
    solved = np.ones(count, bool)
    for tile, (first, last) in enumerate(itertools.pairwise(splits)):
        block_low, block_high = tile_low[tile], tile_high[tile]
        far = np.maximum(np.abs(vertices - block_low), np.abs(vertices - block_high))
        upper = float(np.einsum("ij,ij->i", far, far).min())  # every point has a vertex this near
        gap = np.maximum(np.maximum(segment_low - block_high, block_low - segment_high), 0.0)
        keep = np.einsum("ij,ij->i", gap, gap) <= min(upper, limit2) * (1.0 + 1e-6) + 1e-6
        if not keep.any() or (wanted is not None and not wanted[keep].any()):
            solved[first:last] = False
            continue
        block = ordered[first:last]
        nearest[first:last], position[first:last] = solve(block, np.flatnonzero(keep))
    result_nearest = np.empty_like(nearest)
    result_position = np.empty_like(position)
    result_solved = np.empty_like(solved)
    result_nearest[order] = nearest
    result_position[order] = position
    result_solved[order] = solved
    return result_nearest, result_position, result_solved


def polyline_coordinates(
    points_mm: np.ndarray,
    polyline: np.ndarray,
    centre_index: int,
    reference: np.ndarray,
    max_rho_mm: float = math.inf,
    s_range: tuple[float, float] = (-math.inf, math.inf),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For (N, 3) points: signed arc length from polyline[centre_index] along the polyline (mm),
    angle around it (rad, 0 along the transported `reference`) and distance from it (mm).
    Beyond the first and last vertex the arc length keeps growing along the end segments.
    Points farther than `max_rho_mm` from the polyline, or whose arc length is outside
    `s_range`, get distance inf (and arc length and angle 0), and cost less; every other point
    is exact."""
    tangents, us, vs = transported_frames(polyline, reference, centre_index)
    lengths = np.linalg.norm(np.diff(polyline, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(lengths)])
    arc -= arc[centre_index]
    origin = polyline[centre_index]
    local = np.asarray(points_mm, np.float64) - origin  # small magnitudes: no float cancellation
    starts = polyline[:-1] - origin
    wanted = _segments_in_range(arc, s_range)
    nearest, t, solved = _nearest_segments(local, tangents, starts, lengths, max_rho_mm, wanted)
    radial = local - starts[nearest] - t[:, None] * tangents[nearest]
    s = arc[:-1][nearest] + t
    rho = np.sqrt(np.einsum("ij,ij->i", radial, radial))
    # (a pruned search is exact only within max_rho_mm)
    kept = solved & (rho <= max_rho_mm) & (s >= s_range[0]) & (s <= s_range[1])
    angle = np.zeros(len(local), np.float64)
    radial, segment = radial[kept], nearest[kept]  # the angle only where it is needed
    angle[kept] = np.arctan2(
        np.einsum("ij,ij->i", radial, vs[segment]), np.einsum("ij,ij->i", radial, us[segment])
    )
    s[~kept], rho[~kept] = 0.0, np.inf
    return s.astype(np.float32), angle.astype(np.float32), rho.astype(np.float32)


def _segments_in_range(arc: np.ndarray, s_range: tuple[float, float]) -> np.ndarray:
    """Per segment: whether its arc interval (the end segments extended) meets `s_range`."""
    low, high = arc[:-1].copy(), arc[1:].copy()
    low[0], high[-1] = -math.inf, math.inf
    return (high >= s_range[0]) & (low <= s_range[1])


def soft_occupancy(margin_mm: np.ndarray, sigma_mm: float) -> np.ndarray:
    """Occupancy in [0, 1] from a signed inside-margin (mm): a Gaussian-blurred step, 0.5 on the
    boundary (the exact blur of a half-space with a Gaussian of `sigma_mm`)."""
    return ndtr(np.asarray(margin_mm, np.float64) / max(float(sigma_mm), 1e-3)).astype(np.float32)


def crop_points(crop: Crop) -> np.ndarray:
    return crop.world_points().reshape(-1, 3)


def equivalent_diameter_of(mask: np.ndarray, spacing_mm: np.ndarray) -> float:
    volume = float(np.count_nonzero(mask)) * float(np.prod(spacing_mm))
    return 2.0 * (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0)


def smooth_bumps(
    rng: np.random.Generator, count: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random low-order harmonics (frequencies, phases, weights) for a smooth irregular border."""
    frequencies = rng.integers(1, 4, size=(count, 2)).astype(float)
    phases = rng.uniform(0.0, 2 * math.pi, size=(count, 2))
    weights = rng.normal(0.0, 1.0, size=count)
    weights /= max(float(np.sqrt((weights**2).sum())), 1e-9)
    return frequencies, phases, weights


def bump_field(
    u: np.ndarray, w: np.ndarray, harmonics: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> np.ndarray:
    """A smooth field of RMS about 0.7 over two periodic coordinates (radians)."""
    frequencies, phases, weights = harmonics
    field = np.zeros_like(u, dtype=np.float32)
    for (fu, fw), (pu, pw), weight in zip(frequencies, phases, weights, strict=True):
        field += np.float32(weight) * (np.cos(fu * u + pu) * np.cos(fw * w + pw)).astype(np.float32)
    return field * np.float32(math.sqrt(2.0))


_BUMP_BLOCK = 65536


def direction_bump_field(
    local_mm: np.ndarray, harmonics: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> np.ndarray:
    """`bump_field(azimuth, 2 * polar, harmonics)` of (N, 3) points' directions (azimuth
    atan2(y, x), polar angle from +z), without trigonometry: cos / sin of the integer multiples
    of both angles come from the direction cosines (multiple-angle formulas), in blocks."""
    frequencies, phases, weights = harmonics
    count = len(local_mm)
    field = np.empty(count, np.float32)
    for first in range(0, count, _BUMP_BLOCK):
        block = np.asarray(local_mm[first : first + _BUMP_BLOCK], np.float64)
        x, y, z = block[:, 0], block[:, 1], block[:, 2]
        across = np.hypot(x, y)
        radius = np.hypot(across, z)
        flat, still = across > 0, radius > 0  # atan2(0, 0) = 0: cos 1, sin 0
        safe_across = np.where(flat, across, 1.0)
        safe_radius = np.where(still, radius, 1.0)
        azimuth = (np.where(flat, x / safe_across, 1.0), np.where(flat, y / safe_across, 0.0))
        polar = (np.where(still, z / safe_radius, 1.0), np.where(still, across / safe_radius, 0.0))
        double = (polar[0] ** 2 - polar[1] ** 2, 2.0 * polar[0] * polar[1])  # of 2 x polar

        def multiples(unit, top):
            out = {1: unit}
            for k in range(2, top + 1):
                c, s = out[k - 1]
                out[k] = (c * unit[0] - s * unit[1], s * unit[0] + c * unit[1])
            return out

        top = int(frequencies.max())
        around, over = multiples(azimuth, top), multiples(double, top)
        total = np.zeros(len(block), np.float32)
        for (fu, fw), (pu, pw), weight in zip(frequencies, phases, weights, strict=True):
            cu, su = around[int(fu)]
            cw, sw = over[int(fw)]
            term = (cu * math.cos(pu) - su * math.sin(pu)) * (cw * math.cos(pw) - sw * math.sin(pw))
            total += np.float32(weight) * term.astype(np.float32)
        field[first : first + len(block)] = total
    return field * np.float32(math.sqrt(2.0))


def ellipsoid_margin(
    local_mm: np.ndarray, semi_axes_mm: tuple[float, float, float], lobes: np.ndarray | float = 1.0
) -> np.ndarray:
    """Approximate signed inside-distance (mm) to the ellipsoid surface q = `lobes` for (N, 3)
    points in the ellipsoid's own frame: (lobes - q) / |grad q| (first order, exact on a sphere)."""
    axes = np.asarray(semi_axes_mm, np.float32)
    scaled = local_mm / axes
    q = np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
    gradient = np.sqrt(np.einsum("ij,ij->i", scaled / axes, scaled / axes)) / np.maximum(q, 1e-6)
    gradient = np.maximum(gradient, np.float32(1.0 / axes.max()))
    return ((lobes - q) / gradient).astype(np.float32)
