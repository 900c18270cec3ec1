"""The wall thickening's shape: a segment of the tube around its stored centreline, its crop
radius and maximum reach (the sampler is in `wall.py`).

The segment is measured in polyline coordinates (arc length along the centreline, angle, radial
distance); its inner boundary lies `inner_depth_mm` below the organ surface and its outer
boundary `outward_mm` outside it. Numbers and sources: `hollow.py`.
"""

from __future__ import annotations

import math

import numpy as np

from tumorscale.geometry import centre_signed_distance_mm, grow_box, margin_voxels
from tumorscale.synth.centerline import (
    bump_field,
    crop_points,
    polyline_coordinates,
    smooth_bumps,
    world_to_voxel,
)
from tumorscale.synth.hollow import (
    EDGE_MM,
    END_MARGIN_MM,
    PROFILES,
    occupancy_against_air,
)
from tumorscale.synth.reference import LUMEN_AIR_HU
from tumorscale.synth.types import (
    Crop,
    CropContext,
    TumorParams,
    TumorShape,
    WallGeometry,
)


def wall_geometry(params: TumorParams) -> WallGeometry:
    """The record's `WallGeometry` (a `ValueError` for any other record)."""
    if not isinstance(params.geometry, WallGeometry):
        raise ValueError(f"a wall thickening record needs a WallGeometry; got {params.geometry!r}")
    return params.geometry


def crop_radius_mm(params: TumorParams) -> float:
    """Half-size (mm) of a box around `params.center_mm` holding the tumor (plus the mass-effect
    margin, `mass_effect_extent` radii, when the record pushes at all)."""
    geometry = wall_geometry(params)
    # the cube around the centre that holds the box of every voxel the tumor can reach
    low, high = _reach_bounds_mm(params, geometry)
    centre = np.asarray(params.center_mm)
    reach = float(np.maximum(centre - low, high - centre).max())
    radial = geometry.organ_radius_mm * 1.6 + geometry.outward_mm * 1.2
    margin = radial * (params.mass_effect_extent - 1.0) if params.mass_effect > 0 else 0.0
    return reach + margin + 1.0


def max_reach_mm(organ: str, size_class: str) -> float:
    """Upper bound (mm) of a record's reach from its centre: along the centreline half the
    longest segment, then across it the widest tube (search radius x 1.6) plus the thickest
    outward growth (both plus the blur: a voxel at a segment's end can be at both)."""
    profile = PROFILES[organ]
    blur = 5.0 * EDGE_MM[1]
    axial = 0.5 * profile.length_mm[size_class][1] + blur
    radial = profile.search_radius_mm * 1.6 + profile.thickness_mm[size_class][1] + blur + 1.0
    return float(axial + radial + 2.0)


def _segment_polyline(geometry: WallGeometry) -> tuple[np.ndarray, int]:
    """The part of the stored polyline within END_MARGIN_MM of the segment (fewer vertices)."""
    polyline = np.asarray(geometry.polyline_mm)
    centre_index = geometry.centre_index
    arcs = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(polyline, axis=0), axis=1))])
    arcs -= arcs[centre_index]
    low = geometry.segment_start_mm - END_MARGIN_MM
    high = geometry.segment_end_mm + END_MARGIN_MM
    first = max(int(np.searchsorted(arcs, low, side="right")) - 1, 0)
    last = min(int(np.searchsorted(arcs, high, side="left")), len(polyline) - 1)
    first, last = min(first, centre_index), max(last, centre_index)
    if last == first:  # one vertex: add a neighbour so that there is a segment
        if last < len(polyline) - 1:
            last += 1
        else:
            first -= 1
    return polyline[first : last + 1], centre_index - first


def _segment_middle(geometry: WallGeometry) -> tuple[np.ndarray, float]:
    """The polyline point at the segment's middle (float32 mm) and how far (mm) the middle lies
    beyond the polyline's ends (0 when on it)."""
    polyline, centre_index = _segment_polyline(geometry)
    arcs = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(polyline, axis=0), axis=1))])
    arcs -= arcs[centre_index]
    mid = 0.5 * (geometry.segment_start_mm + geometry.segment_end_mm)
    clamped = float(np.clip(mid, arcs[0], arcs[-1]))
    point = np.array([np.interp(clamped, arcs, polyline[:, k]) for k in range(3)])
    return point.astype(np.float32), abs(mid - clamped)


def _segment_coordinates(
    params: TumorParams,
    points_mm: np.ndarray,
    max_rho_mm: float = math.inf,
    max_abs_s_mm: float = math.inf,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    geometry = wall_geometry(params)
    polyline, centre_index = _segment_polyline(geometry)
    reference = params.rotation_matrix[1]
    middle = 0.5 * (geometry.segment_start_mm + geometry.segment_end_mm)
    # a little wider than asked: the caller's own float32 test decides at the limit
    s_range = (middle - max_abs_s_mm - 1e-3, middle + max_abs_s_mm + 1e-3)
    s, angle, rho = polyline_coordinates(
        points_mm, polyline, centre_index, reference, max_rho_mm, s_range
    )
    arc_mid = math.radians(geometry.start_deg + 0.5 * geometry.arc_deg)
    relative = np.angle(np.exp(1j * (angle.astype(np.float64) - arc_mid))).astype(np.float32)
    return s - np.float32(middle), relative, rho


def wall_segment_coordinates(
    params: TumorParams, crop: Crop
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arc length from the segment middle (mm), angle from the arc middle (rad, in [-pi, pi]) and
    distance from the centreline (mm) of every crop voxel (flattened)."""
    return _segment_coordinates(params, crop_points(crop))


def build_shape(params: TumorParams, crop: Crop, ctx: CropContext) -> TumorShape:
    """The thickening's soft occupancy and organ growth on `crop` (pure)."""
    geometry = wall_geometry(params)
    occupancy = np.zeros(crop.shape, np.float32)
    growth = np.zeros(crop.shape, bool)
    box = _reach_box(params, geometry, crop)
    if box is not None:  # outside the box the margin is -inf: occupancy 0, no growth
        occupancy[box], growth[box] = _build_in_box(params, geometry, crop, ctx, box)
    return TumorShape(occupancy=occupancy, organ_growth=growth)


def _build_in_box(
    params: TumorParams,
    geometry: WallGeometry,
    crop: Crop,
    ctx: CropContext,
    box: tuple[slice, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy and organ growth on `box` (slices of `crop`)."""
    spacing = np.asarray(crop.spacing_mm, float)
    # the distance transform runs on the box plus the band depth: exact wherever |sd| <= band
    wide = grow_box(box, margin_voxels(_band_mm(params, geometry), spacing) + 1, crop.shape)
    inner = tuple(
        slice(b.start - w.start, b.stop - w.start) for b, w in zip(box, wide, strict=True)
    )
    organ_wide = np.asarray(ctx.organ)[wide].astype(bool)
    sd = centre_signed_distance_mm(organ_wide, spacing)[inner]
    organ = organ_wide[inner]
    start = tuple(c + b.start for c, b in zip(crop.start, box, strict=True))
    stop = tuple(c + b.stop for c, b in zip(crop.start, box, strict=True))
    sub = Crop(start, stop, crop.affine)  # type: ignore[arg-type]
    margin = _margin(params, geometry, sub, np.ascontiguousarray(sd).reshape(-1))
    ct = np.asarray(ctx.ct)[box]
    occupancy = occupancy_against_air(margin.reshape(sub.shape), params.edge_mm, ct)
    # outward growth only into fat / soft tissue: not air (lung, airway), brighter organs, vessels
    blocked = ~organ & ((ct < LUMEN_AIR_HU) | (ct > geometry.growth_max_hu))
    occupancy[np.asarray(ctx.forbidden)[box].astype(bool) | blocked] = 0.0
    return occupancy, (occupancy >= 0.5) & ~organ


def _band_mm(params: TumorParams, geometry: WallGeometry) -> float:
    """Largest |signed distance| (mm) a voxel that can be tumor has to the organ surface."""
    stretch = 1.0 + 1.5 * geometry.irregularity
    reach = 5.0 * params.edge_mm
    return max(geometry.inner_depth_mm, geometry.outward_mm) * stretch + reach


def _reach_box(params: TumorParams, geometry: WallGeometry, crop: Crop) -> tuple[slice, ...] | None:
    """Slices of `crop` holding every voxel whose margin can exceed -inf (None if empty)."""
    low, high = _reach_bounds_mm(params, geometry)
    corners = np.array([[(low, high)[k >> a & 1][a] for a in range(3)] for k in range(8)])
    voxels = world_to_voxel(crop.affine, corners) - np.asarray(crop.start)
    first = np.maximum(np.floor(voxels.min(axis=0)).astype(int) - 1, 0)
    last = np.minimum(np.ceil(voxels.max(axis=0)).astype(int) + 2, np.asarray(crop.shape))
    if np.any(last <= first):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(first, last, strict=True))


def _reach_bounds_mm(params: TumorParams, geometry: WallGeometry) -> tuple[np.ndarray, np.ndarray]:
    """World box (low, high mm) of every point within the radial limit of a polyline point whose
    arc lies within the axial limit: where the tumor's margin can exceed -inf."""
    polyline, centre_index = _segment_polyline(geometry)
    arcs = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(polyline, axis=0), axis=1))])
    arcs -= arcs[centre_index]
    reach = 5.0 * params.edge_mm
    mid = 0.5 * (geometry.segment_start_mm + geometry.segment_end_mm)
    half = 0.5 * geometry.length_mm + reach
    radial = geometry.organ_radius_mm * 1.6 + geometry.outward_mm + reach + 1.0
    centres, normals, slack = _arc_discs(polyline, arcs, mid - half, mid + half, radial)
    # a disc of radius `radial` (thickened by `slack` along its normal) spans this per axis
    extent = radial * np.sqrt(np.maximum(1.0 - normals**2, 0.0)) + slack[:, None] * np.abs(normals)
    return (centres - extent).min(axis=0), (centres + extent).max(axis=0)


def _arc_discs(
    polyline: np.ndarray, arcs: np.ndarray, low: float, high: float, radial: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Discs (centres, unit normals, half-thickness) whose boxes cover every point within
    `radial` of the polyline (its end segments extended) whose nearest polyline point has an arc
    in [low, high]: such a point lies in the plane normal to the tangent there, or, at a vertex,
    in the wedge between its two segments' planes (within `radial` * sin(turn / 2) of the
    bisecting plane)."""
    tangents = np.diff(polyline, axis=0)
    tangents /= np.maximum(np.linalg.norm(tangents, axis=1, keepdims=True), 1e-9)

    def at(arc: float) -> tuple[np.ndarray, np.ndarray]:
        k = int(np.clip(np.searchsorted(arcs, arc) - 1, 0, len(arcs) - 2))
        t = (arc - arcs[k]) / max(float(arcs[k + 1] - arcs[k]), 1e-9)
        return polyline[k] + t * (polyline[k + 1] - polyline[k]), tangents[k]

    ends = [at(low), at(high)]
    centres, normals = [c for c, _ in ends], [n for _, n in ends]
    slack = [0.0, 0.0]
    inner = np.arange(1, len(polyline) - 1)
    for j in inner[(arcs[inner] >= low - 1.0) & (arcs[inner] <= high + 1.0)]:
        bisector = tangents[j - 1] + tangents[j]
        norm = float(np.linalg.norm(bisector))
        turn = 0.5 * float(np.linalg.norm(tangents[j] - tangents[j - 1]))  # sin(turn / 2)
        centres.append(polyline[j])
        normals.append(bisector / norm if norm > 1e-6 else np.zeros(3))  # zero: a whole ball
        slack.append(radial * turn)
    return np.asarray(centres), np.asarray(normals), np.asarray(slack)


def _margin(params: TumorParams, geometry: WallGeometry, crop: Crop, sd: np.ndarray) -> np.ndarray:
    """Signed margin (mm, > 0 inside) of every crop voxel; -inf where the tumor cannot reach."""
    length, inner, outward = geometry.length_mm, geometry.inner_depth_mm, geometry.outward_mm
    radius, irregularity = geometry.organ_radius_mm, geometry.irregularity
    # only voxels in the (widest possible) band around the organ surface can be tumor
    stretch = 1.0 + 1.5 * irregularity
    reach = 5.0 * params.edge_mm
    candidates = np.flatnonzero(
        (sd >= -inner * stretch - reach) & (sd <= outward * stretch + reach)
    )
    margin = np.full(sd.shape, -np.inf, np.float32)
    if candidates.size:
        points = _points_of(crop, candidates)
        # ... and only those near the segment: a margin >= -reach needs |s| <= length / 2 + reach
        # and rho <= radius * 1.6 + outward + reach, so the voxel lies within their sum of the
        # segment middle (a chord is never longer than its arc)
        middle, beyond = _segment_middle(geometry)
        bound = 0.5 * length + 2.0 * reach + radius * 1.6 + outward + beyond + 1.0
        near = np.einsum("ij,ij->i", points - middle, points - middle) <= np.float32(bound**2)
        candidates, points = candidates[near], points[near]
    if candidates.size:
        s, angle, rho = _segment_coordinates(
            params, points, radius * 1.6 + outward + reach, 0.5 * length + reach
        )
        close = np.isfinite(rho) & (np.abs(s) <= np.float32(0.5 * length + reach))
        candidates, s, angle, rho = candidates[close], s[close], angle[close], rho[close]
    if candidates.size:
        margin[candidates] = _inside_margin(params, geometry, sd[candidates], s, angle, rho)
    return margin


def _points_of(crop: Crop, flat: np.ndarray) -> np.ndarray:
    """World mm (float32) of the crop voxels at flat indices `flat` (as `crop_points` has them)."""
    index = np.stack(np.unravel_index(flat, crop.shape), axis=1).astype(np.float32)
    index += np.asarray(crop.start, np.float32)
    affine = np.asarray(crop.affine)
    return index @ affine[:3, :3].astype(np.float32).T + affine[:3, 3].astype(np.float32)


def _inside_margin(
    params: TumorParams,
    geometry: WallGeometry,
    sd: np.ndarray,
    s: np.ndarray,
    angle: np.ndarray,
    rho: np.ndarray,
) -> np.ndarray:
    length = geometry.length_mm
    rng = np.random.default_rng(params.seed)
    harmonics = smooth_bumps(rng)
    bumps = np.clip(
        bump_field(angle, s * np.float32(2 * math.pi / max(length, 1.0)), harmonics), -1.5, 1.5
    )
    scale = 1.0 + np.float32(geometry.irregularity) * bumps
    axial_margin = np.float32(0.5 * length) - np.abs(s)
    shoulder = np.clip(axial_margin / np.float32(max(geometry.taper_mm, 1e-3)), 0.0, 1.0)
    profile = (0.4 + 0.6 * np.sqrt(shoulder)) * scale  # thinner at the shoulders
    margins = [
        sd + np.float32(geometry.inner_depth_mm) * profile,
        np.float32(geometry.outward_mm) * profile - sd,
        axial_margin,
        np.float32(geometry.organ_radius_mm * 1.6 + geometry.outward_mm) - rho,
    ]
    if geometry.arc_deg < 360.0:
        half_arc = np.float32(math.radians(0.5 * geometry.arc_deg))
        margins.append((half_arc - np.abs(angle)) * np.maximum(rho, np.float32(3.0)))
    return np.minimum.reduce(margins)
