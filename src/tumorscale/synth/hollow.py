"""Tumors of the hollow organs (colon, esophagus): wall thickening along the centreline, and the
colon's polypoid mass.

The organ mask is split by HU and depth into lumen (air < -300 HU, or anything deeper than the wall
shell) and wall (the non-air outer shell, `wall_shell_mm` deep); the wall's median HU is the
reference of `contrast_hu`. The centreline is tracked through an mm point cloud of the mask
(cross-section centroids, heading from a PCA of the organ's deeper half within ~20-40 mm), so the
tortuous colon and the z-running esophagus are handled alike.

Wall thickening is a segment of the tube, annular (360 deg) or eccentric (90-270 deg arc), whose
inner boundary lies `inner_depth_mm` below the organ surface (it fills the wall and part of the
lumen, narrowing it) and whose outer boundary lies `outward_mm` outside it (reported as
`organ_growth`, so the lesion stays inside the grown organ mask). The segment's polyline, arc and
depths are stored in `TumorParams.extra`: the record alone rebuilds the tumor.

Profile numbers and their sources (synthesis-notes = ../shared/reference/synthesis-notes.md):

Each number, its value, and its source (§ = synthesis-notes section; [assumption] = not sourced):

- lumen air threshold: < -300 HU. §7 colon row.
- wall shell: 3 mm (normal wall 1-5 mm). §6 colon (1-2 mm distended, <= 5 mm collapsed);
  §7 "outer 2-5 mm shell".
- colon tumor HU: 40-90 HU absolute. §7 colon row ([assumption] there).
- esophagus tumor HU: 40-80 HU absolute. §7 esophagus row ([assumption] there).
- colon length: 20-80 mm (small class: 10-30 mm). §7 colon row; §6 "focal (< 5 cm)";
  small-class range [assumption].
- colon thickness: 8-25 mm (small class: 5-10 mm). §7 colon row; small range [assumption].
- esophagus length: 30-80 mm (small class: 12-30 mm). §7 esophagus row (§6: 3-8 cm,
  unverified); small range [assumption].
- esophagus thickness: 10-25 mm, > 13.5 mm typical (small class: 5-10 mm). §6 Durmaz 2020
  cut-off 13.5 mm; §7 esophagus row.
- annular share: colon 0.6, esophagus 0.5 (small class 0.15). §6 "annular most common"
  (colon), "often eccentric" (esophagus); shares [assumption].
- arc of an eccentric thickening: 90-270 deg. §7 colon row.
- polyp share: colon small 0.5, medium 0.3, never large. §6 colon morphology; CTC masses
  3-8 cm; shares [assumption].
- mass effect: none. A radial push from the tube centre would drive lumen gas into the
  thickened wall; the lumen narrowing is the mass effect [assumption].
- esophagus site: lower and middle thirds weighted x3. §7 esophagus row [assumption].
- outward growth: only into voxels of -300 HU .. wall median + 20 HU. §7 "keep fat planes to
  the aorta" [assumption].
- edge blur sigma: 0.8-1.5 mm (polyp 0.6-1.0 mm), 0.3 mm against lumen gas. §8.4 "0.5-2 mm
  mask blur"; gas face [assumption].
- size bins: small < 20, medium 20-50, large > 50 mm. The paper; tumorscale.sizes.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from tumorscale.io import Volume
from tumorscale.sizes import size_bin
from tumorscale.synth.centerline import (
    OrganCloud,
    bump_field,
    crop_points,
    crop_to_mask,
    depth_mm,
    direction_bump_field,
    ellipsoid_margin,
    equivalent_diameter_of,
    mask_bounds,
    perpendicular,
    polyline_coordinates,
    resample_polyline,
    signed_distance_mm,
    smooth_bumps,
    soft_occupancy,
    spacing_of_affine,
    track_centreline,
    world_to_voxel,
)
from tumorscale.synth.types import Crop, CropContext, TumorParams, TumorShape

HOLLOW_ORGANS = ("colon", "esophagus")
HOLLOW_KINDS = ("wall_thickening", "polyp")  # polyp: colon only

LUMEN_AIR_HU = -300.0  # synthesis-notes §7
WALL_SHELL_MM = 3.0
LOCAL_WALL_RADIUS_MM = 40.0  # the wall median is measured this close to the tumor
AIR_EDGE_MM = 0.3  # blur of the tumor's face against lumen gas  # §6/§7: normal wall 1-5 mm
GROWTH_MAX_ABOVE_WALL_HU = (
    20.0  # outward growth stops at brighter tissue (enhanced organs, vessels)
)
MIN_ORGAN_MM3 = 1500.0  # below this no segment can be tracked
POLYLINE_STEP_MM = 6.0
END_MARGIN_MM = 12.0  # polyline beyond each segment end (taper + blur)
# Sampling works on the organ's box plus this margin: more than any tumor reaches outside the
# organ (outward growth <= 24 mm x 1.18 irregularity, + 5 blur sigmas = 36 mm).
SAMPLING_MARGIN_MM = 45.0
SIZE_CLASS_TO_BIN = {"small": "<20", "medium": "20-50", "large": ">50"}
TARGET_DIAMETER_MM = {"small": (10.0, 19.0), "medium": (22.0, 46.0), "large": (53.0, 72.0)}

PROFILES: dict[str, dict[str, object]] = {
    "colon": {
        "target_hu": (40.0, 90.0),
        "length_mm": {"small": (10.0, 30.0), "medium": (20.0, 80.0), "large": (30.0, 80.0)},
        "thickness_mm": {"small": (5.0, 10.0), "medium": (8.0, 18.0), "large": (12.0, 25.0)},
        "annular": {"small": 0.15, "medium": 0.6, "large": 0.6},
        "polyp": {"small": 0.5, "medium": 0.3, "large": 0.0},
        "inward_fraction": (0.6, 0.85),  # the colon lumen is wide: most growth is inward
        "residual_lumen_mm": (2.0, 5.0),
        "search_radius_mm": 30.0,
    },
    "esophagus": {
        "target_hu": (40.0, 80.0),
        "length_mm": {"small": (12.0, 30.0), "medium": (30.0, 80.0), "large": (30.0, 80.0)},
        "thickness_mm": {"small": (5.0, 10.0), "medium": (10.0, 20.0), "large": (13.5, 25.0)},
        "annular": {"small": 0.15, "medium": 0.5, "large": 0.5},
        "polyp": {"small": 0.0, "medium": 0.0, "large": 0.0},
        "inward_fraction": (0.3, 0.6),  # a narrow lumen: the wall mostly thickens outward
        "residual_lumen_mm": (1.0, 2.5),
        "search_radius_mm": 15.0,
    },
}


# ----------------------------------------------------------------------------- wall / lumen


def split_wall_lumen(
    ct_hu: np.ndarray,
    organ_mask: np.ndarray,
    spacing_mm: tuple[float, float, float],
    shell_mm: float = WALL_SHELL_MM,
) -> tuple[np.ndarray, np.ndarray]:
    """Wall and lumen (bool arrays) of a hollow organ: lumen = air (< -300 HU) or deeper than the
    wall shell; wall = the rest (the outer `shell_mm`, non-air). A collapsed organ (no air) still
    gets a central lumen from depth."""
    organ = np.asarray(organ_mask).astype(bool)
    depth = depth_mm(organ, np.asarray(spacing_mm, float))
    lumen = organ & ((ct_hu < LUMEN_AIR_HU) | (depth > shell_mm))
    return organ & ~lumen, lumen


def wall_median_hu(
    ct_hu: np.ndarray, organ_mask: np.ndarray, spacing_mm: tuple[float, float, float]
) -> float | None:
    """Median HU of the hollow organ's wall (the reference of contrast_hu); None if no wall."""
    bounds = mask_bounds(organ_mask)
    if bounds is None:
        return None
    box = tuple(slice(max(a - 1, 0), b + 1) for a, b in zip(*bounds, strict=True))
    organ = np.asarray(organ_mask)[box].astype(bool)
    ct_box = np.asarray(ct_hu)[box]
    wall, _ = split_wall_lumen(ct_box, organ, spacing_mm)
    values = ct_box[wall]
    if values.size < 10:
        values = ct_box[organ & (ct_box >= LUMEN_AIR_HU)]
    return float(np.median(values)) if values.size else None


def _local_wall_median(ct: Volume, organ_mask: np.ndarray, centre: np.ndarray) -> float:
    """Wall median HU within LOCAL_WALL_RADIUS_MM of `centre` (the whole organ if none there)."""
    box = Crop.around(centre, LOCAL_WALL_RADIUS_MM, ct.shape, ct.affine).slices
    array = np.asarray(ct.array)  # sliced before any conversion: never the whole volume
    value = wall_median_hu(array[box].astype(np.float32), organ_mask[box], ct.spacing)
    if value is None:
        value = wall_median_hu(array, organ_mask, ct.spacing)
    return float(value) if value is not None else 40.0


def _pipeline_reference_hu(
    ct: Volume, organ_mask: np.ndarray, params: TumorParams, fallback: float
) -> float:
    """The reference median the insertion pipeline will measure around this tumor (so that the
    intended contrast is the achieved one); the wall median when that pipeline is not importable."""
    try:
        from tumorscale.synth.apply import reference_median_hu
    except ImportError:
        return fallback
    radius = hollow_crop_radius_mm(params)
    value = reference_median_hu(
        np.asarray(ct.array),
        [organ_mask],
        params.center_mm,
        radius,
        np.asarray(ct.affine),
        hollow=True,
    )
    return float(value) if np.isfinite(value) else fallback


# ----------------------------------------------------------------------------- records


def _extra(**values: float) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((name, float(value)) for name, value in values.items()))


def _polyline_from(params: TumorParams) -> np.ndarray:
    count = int(params.extra_value("polyline_count"))
    return np.asarray(
        [[params.extra_value(f"p{i:02d}_{axis}") for axis in "xyz"] for i in range(count)]
    )


def hollow_crop_radius_mm(params: TumorParams) -> float:
    """Half-size (mm) of a box around `params.center_mm` holding the tumor (plus the mass-effect
    margin, `mass_effect_extent` radii, when the record pushes at all)."""
    centre = np.asarray(params.center_mm, float)
    blur = 3.0 * params.edge_mm
    if params.kind == "polyp":
        extent = 1.1 * max(params.extra_value("height_mm"), params.extra_value("base_radius_mm"))
        scale = params.mass_effect_extent if params.mass_effect > 0 else 1.0
        return float(extent * scale + blur + 2.0)
    polyline = _polyline_from(params)
    reach = float(np.linalg.norm(polyline - centre, axis=1).max())
    radial = params.extra_value("organ_radius_mm") * 1.6 + params.extra_value("outward_mm") * 1.2
    margin = radial * (params.mass_effect_extent - 1.0) if params.mass_effect > 0 else 0.0
    return float(max(reach, radial) + margin + blur + 2.0)


# ----------------------------------------------------------------------------- builders


def _segment_polyline(params: TumorParams) -> tuple[np.ndarray, int]:
    """The part of the stored polyline within END_MARGIN_MM of the segment (fewer vertices)."""
    polyline = _polyline_from(params)
    centre_index = int(params.extra_value("centre_index"))
    arcs = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(polyline, axis=0), axis=1))])
    arcs -= arcs[centre_index]
    low = params.extra_value("segment_start_mm") - END_MARGIN_MM
    high = params.extra_value("segment_end_mm") + END_MARGIN_MM
    first = max(int(np.searchsorted(arcs, low, side="right")) - 1, 0)
    last = min(int(np.searchsorted(arcs, high, side="left")), len(polyline) - 1)
    first, last = min(first, centre_index), max(last, centre_index)
    if last == first:  # one vertex: add a neighbour so that there is a segment
        if last < len(polyline) - 1:
            last += 1
        else:
            first -= 1
    return polyline[first : last + 1], centre_index - first


def _segment_middle(params: TumorParams) -> tuple[np.ndarray, float]:
    """The polyline point at the segment's middle (float32 mm) and how far (mm) the middle lies
    beyond the polyline's ends (0 when on it)."""
    polyline, centre_index = _segment_polyline(params)
    arcs = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(polyline, axis=0), axis=1))])
    arcs -= arcs[centre_index]
    mid = 0.5 * (params.extra_value("segment_start_mm") + params.extra_value("segment_end_mm"))
    clamped = float(np.clip(mid, arcs[0], arcs[-1]))
    point = np.array([np.interp(clamped, arcs, polyline[:, k]) for k in range(3)])
    return point.astype(np.float32), abs(mid - clamped)


def _segment_coordinates(
    params: TumorParams, points_mm: np.ndarray, max_rho_mm: float = math.inf
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    polyline, centre_index = _segment_polyline(params)
    reference = params.rotation_matrix[1]
    s, angle, rho = polyline_coordinates(points_mm, polyline, centre_index, reference, max_rho_mm)
    start, end = params.extra_value("segment_start_mm"), params.extra_value("segment_end_mm")
    arc_mid = math.radians(params.extra_value("start_deg") + 0.5 * params.extra_value("arc_deg"))
    relative = np.angle(np.exp(1j * (angle.astype(np.float64) - arc_mid))).astype(np.float32)
    return s - np.float32(0.5 * (start + end)), relative, rho


def wall_segment_coordinates(
    params: TumorParams, crop: Crop
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arc length from the segment middle (mm), angle from the arc middle (rad, in [-pi, pi]) and
    distance from the centreline (mm) of every crop voxel (flattened)."""
    return _segment_coordinates(params, crop_points(crop))


def _occupancy_against_air(margin: np.ndarray, edge_mm: float, ct: np.ndarray) -> np.ndarray:
    """Soft occupancy with the record's blur, but a sharp face where the tumor meets lumen gas:
    a tissue/air boundary is already as sharp as the scanner makes it, and a blurred one would
    paint half-air voxels that drag the tumor's median HU."""
    occupancy = soft_occupancy(margin, edge_mm)
    air = ct < LUMEN_AIR_HU
    if air.any():
        occupancy[air] = soft_occupancy(margin[air], min(edge_mm, AIR_EDGE_MM))
    return occupancy


def _wall_thickening_shape(params: TumorParams, crop: Crop, ctx: CropContext) -> TumorShape:
    spacing = np.asarray(crop.spacing_mm, float)
    organ = np.asarray(ctx.organ).astype(bool)
    forbidden = np.asarray(ctx.forbidden).astype(bool)
    sd = signed_distance_mm(organ, spacing).reshape(-1)
    length = params.extra_value("segment_end_mm") - params.extra_value("segment_start_mm")
    arc_deg = params.extra_value("arc_deg")
    inner = params.extra_value("inner_depth_mm")
    outward = params.extra_value("outward_mm")
    radius = params.extra_value("organ_radius_mm")
    taper = params.extra_value("taper_mm")
    irregularity = params.extra_value("irregularity")
    # only voxels in the (widest possible) band around the organ surface can be tumor
    stretch = 1.0 + 1.5 * irregularity
    reach = 5.0 * params.edge_mm
    candidates = np.flatnonzero(
        (sd >= -inner * stretch - reach) & (sd <= outward * stretch + reach)
    )
    margin = np.full(sd.shape, -np.inf, np.float32)
    if candidates.size:
        points = crop_points(crop)[candidates]
        # ... and only those near the segment: a margin >= -reach needs |s| <= length / 2 + reach
        # and rho <= radius * 1.6 + outward + reach, so the voxel lies within their sum of the
        # segment middle (a chord is never longer than its arc)
        middle, beyond = _segment_middle(params)
        bound = 0.5 * length + 2.0 * reach + radius * 1.6 + outward + beyond + 1.0
        near = np.einsum("ij,ij->i", points - middle, points - middle) <= np.float32(bound**2)
        candidates, points = candidates[near], points[near]
    if candidates.size:
        # rho > radius * 1.6 + outward + reach or |s| > length / 2 + reach: margin < -reach as
        # well (left out, like the voxels outside the band)
        s, angle, rho = _segment_coordinates(params, points, radius * 1.6 + outward + reach)
        close = np.isfinite(rho) & (np.abs(s) <= np.float32(0.5 * length + reach))
        candidates, s, angle, rho = candidates[close], s[close], angle[close], rho[close]
    if candidates.size:
        sd_c = sd[candidates]
        rng = np.random.default_rng(params.seed)
        harmonics = smooth_bumps(rng)
        bumps = np.clip(
            bump_field(angle, s * np.float32(2 * math.pi / max(length, 1.0)), harmonics), -1.5, 1.5
        )
        scale = 1.0 + np.float32(irregularity) * bumps
        axial_margin = np.float32(0.5 * length) - np.abs(s)
        shoulder = np.clip(axial_margin / np.float32(max(taper, 1e-3)), 0.0, 1.0)
        profile = (0.4 + 0.6 * np.sqrt(shoulder)) * scale  # thinner at the shoulders
        margins = [
            sd_c + np.float32(inner) * profile,
            np.float32(outward) * profile - sd_c,
            axial_margin,
            np.float32(radius * 1.6 + outward) - rho,
        ]
        if arc_deg < 360.0:
            half_arc = np.float32(math.radians(0.5 * arc_deg))
            margins.append((half_arc - np.abs(angle)) * np.maximum(rho, np.float32(3.0)))
        margin[candidates] = np.minimum.reduce(margins)
    ct = np.asarray(ctx.ct)
    occupancy = _occupancy_against_air(margin.reshape(crop.shape), params.edge_mm, ct)
    # outward growth only into fat / soft tissue: not air (lung, airway), brighter organs, vessels
    blocked = ~organ & ((ct < LUMEN_AIR_HU) | (ct > params.extra_value("growth_max_hu")))
    occupancy[forbidden | blocked] = 0.0
    growth = (occupancy >= 0.5) & ~organ
    return TumorShape(occupancy=occupancy, organ_growth=growth)


def _polyp_shape(params: TumorParams, crop: Crop, ctx: CropContext) -> TumorShape:
    organ = np.asarray(ctx.organ).astype(bool)
    forbidden = np.asarray(ctx.forbidden).astype(bool)
    frame = params.rotation_matrix  # rows: two base directions, then the inward normal
    offset = crop_points(crop) - np.asarray(params.center_mm, np.float32)
    local = offset @ frame.T.astype(np.float32)
    base = params.extra_value("base_radius_mm")
    height = params.extra_value("height_mm")
    rng = np.random.default_rng(params.seed)
    harmonics = smooth_bumps(rng)
    lobes = 1.0 + np.float32(params.extra_value("lobulation")) * np.clip(
        direction_bump_field(local, harmonics), -1.5, 1.5
    )
    margin = ellipsoid_margin(local, (base, base, height), lobes).reshape(crop.shape)
    occupancy = _occupancy_against_air(margin, params.edge_mm, np.asarray(ctx.ct))
    occupancy[~organ | forbidden] = 0.0  # a polyp grows into the lumen, never through the wall
    return TumorShape(occupancy=occupancy, organ_growth=None)


def build_hollow_shape(params: TumorParams, crop: Crop, ctx: CropContext) -> TumorShape:
    """The tumor's soft occupancy (and organ growth) on `crop`; pure: a function of the record."""
    if params.kind == "polyp":
        return _polyp_shape(params, crop, ctx)
    if params.kind == "wall_thickening":
        return _wall_thickening_shape(params, crop, ctx)
    raise ValueError(
        f"not a hollow-organ tumor kind: {params.kind!r} (expected one of {HOLLOW_KINDS})"
    )


# ----------------------------------------------------------------------------- sampling


def _measure(
    params: TumorParams,
    ct: Volume,
    organ: np.ndarray,
    organ_median: float,
    forbidden: np.ndarray | None,
) -> float:
    """Equivalent diameter (mm) of the built tumor (occupancy >= 0.5)."""
    crop = Crop.around(
        np.asarray(params.center_mm), hollow_crop_radius_mm(params), ct.shape, ct.affine
    )
    blocked = (
        np.zeros(crop.shape, bool)
        if forbidden is None
        else np.asarray(forbidden[crop.slices]).astype(bool)
    )
    ctx = CropContext(
        ct=ct.array[crop.slices].astype(np.float32),
        organ=organ[crop.slices],
        forbidden=blocked,
        organ_median_hu=organ_median,
    )
    shape = build_hollow_shape(params, crop, ctx)
    return equivalent_diameter_of(shape.occupancy >= 0.5, np.asarray(crop.spacing_mm))


def _frame(tangent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    u = perpendicular(tangent)
    v = np.cross(tangent, u)
    turn = rng.uniform(0.0, 2 * math.pi)
    u, v = math.cos(turn) * u + math.sin(turn) * v, -math.sin(turn) * u + math.cos(turn) * v
    return np.stack([tangent, u, v])


def _pick_start(cloud: OrganCloud, organ: str, rng: np.random.Generator) -> np.ndarray:
    weights = np.ones(len(cloud.points))
    if organ == "esophagus":  # lower and middle thirds favoured (§7 [assumption])
        z = cloud.points[:, 2]
        relative = (z - z.min()) / max(float(np.ptp(z)), 1e-6)
        weights = np.where(relative < 2.0 / 3.0, 3.0, 1.0)
    weights = weights * (cloud.depth > 0.5 * float(np.percentile(cloud.depth, 90)))
    if weights.sum() <= 0:
        weights = np.ones(len(cloud.points))
    return cloud.points[rng.choice(len(cloud.points), p=weights / weights.sum())]


def _local_tube(
    cloud: OrganCloud, organ: str, point: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Centre, axis and radius (mm) of the tube at `point`."""
    search = float(PROFILES[organ]["search_radius_mm"])  # type: ignore[arg-type]
    near = cloud.near(point, search)
    if near.sum() < 8:
        return None
    radius = max(float(cloud.depth[near].max()), 2.0)
    axis = cloud.local_axis(point, max(20.0, 2.0 * radius))
    if axis is None:
        return None
    tangent = axis[1]
    found = cloud.recentre(point, tangent, 3.0, 1.5 * radius)
    if found is None:
        return None
    centre, radius = found
    return centre, tangent, max(radius, 2.0)


def _track(
    cloud: OrganCloud, centre: np.ndarray, tangent: np.ndarray, radius: float, reach: float
) -> tuple[np.ndarray, int]:
    step = 4.0
    pca = max(20.0, 2.0 * radius)
    forward = track_centreline(cloud, centre, tangent, 1.5 * radius, step, reach, pca)
    backward = track_centreline(cloud, centre, -tangent, 1.5 * radius, step, reach, pca)
    back_line, _ = (
        resample_polyline(backward, POLYLINE_STEP_MM) if len(backward) > 1 else (backward, None)
    )
    fwd_line, _ = (
        resample_polyline(forward, POLYLINE_STEP_MM) if len(forward) > 1 else (forward, None)
    )
    polyline = np.concatenate([back_line[::-1], fwd_line[1:]])
    return polyline, len(back_line) - 1


def _sample_wall_thickening(
    organ: str,
    rng: np.random.Generator,
    ct: Volume,
    organ_mask: np.ndarray,
    cloud: OrganCloud,
    size_class: str,
    forbidden: np.ndarray | None,
) -> TumorParams | str:
    profile = PROFILES[organ]
    target_low, target_high = profile["target_hu"]  # type: ignore[misc]
    length_range = profile["length_mm"][size_class]  # type: ignore[index]
    thickness_range = profile["thickness_mm"][size_class]  # type: ignore[index]
    last_reason = "no tube-shaped part of the organ found"
    for _attempt in range(6):
        tube = _local_tube(cloud, organ, _pick_start(cloud, organ, rng))
        if tube is None:
            continue
        centre, tangent, radius = tube
        wall_median = _local_wall_median(ct, organ_mask, centre)
        polyline, centre_index = _track(
            cloud, centre, tangent, radius, length_range[1] / 2 + END_MARGIN_MM
        )
        if len(polyline) < 3:
            last_reason = "the organ is too short along its centreline here"
            continue
        arcs = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(polyline, axis=0), axis=1))])
        arcs -= arcs[centre_index]
        available = (arcs[0] + END_MARGIN_MM * 0.5, arcs[-1] - END_MARGIN_MM * 0.5)
        if available[1] - available[0] < length_range[0]:
            last_reason = (
                f"only {available[1] - available[0]:.0f} mm of centreline here; "
                f"{size_class} needs {length_range[0]:.0f} mm"
            )
            continue
        target_d = rng.uniform(*TARGET_DIAMETER_MM[size_class])
        target_volume = math.pi / 6.0 * target_d**3
        chosen = None
        annular_share = profile["annular"][size_class]  # type: ignore[index]
        for _draw in range(40):
            annular = rng.random() < annular_share
            arc = 360.0 if annular else rng.uniform(90.0, 270.0)
            thickness = rng.uniform(*thickness_range)
            residual = rng.uniform(*profile["residual_lumen_mm"])  # type: ignore[misc]
            cap = radius - residual if annular else radius - 1.0
            inner = float(
                np.clip(thickness * rng.uniform(*profile["inward_fraction"]), 1.0, max(cap, 1.0))
            )  # type: ignore[misc]
            outward = max(thickness - inner, 0.5)
            area = arc / 360.0 * math.pi * ((radius + outward) ** 2 - max(radius - inner, 0.0) ** 2)
            length = target_volume / (0.85 * area)
            if length_range[0] <= length <= min(length_range[1], available[1] - available[0]):
                chosen = (arc, thickness, inner, outward, length)
                break
        if chosen is None:
            last_reason = (
                f"no {size_class} wall thickening fits a tube of radius {radius:.0f} mm here"
            )
            continue
        arc, thickness, inner, outward, length = chosen
        frame = _frame(tangent, rng)
        seed = int(rng.integers(0, 2**31 - 1))
        slack = (available[1] - available[0]) - length
        start = available[0] + rng.uniform(0.0, slack)
        base = {
            "arc_deg": arc,
            "start_deg": rng.uniform(0.0, 360.0) if arc < 360 else 0.0,
            "inner_depth_mm": inner,
            "outward_mm": outward,
            "thickness_mm": inner + outward,
            "organ_radius_mm": radius,
            "irregularity": rng.uniform(0.03, 0.12),
            "growth_max_hu": wall_median + GROWTH_MAX_ABOVE_WALL_HU,
            "centre_index": centre_index,
            "polyline_count": len(polyline),
        }
        base.update(
            {
                f"p{i:02d}_{axis}": polyline[i, k]
                for i in range(len(polyline))
                for k, axis in enumerate("xyz")
            }
        )
        target_hu = float(rng.uniform(target_low, target_high))
        texture_sd, edge = float(rng.uniform(6.0, 10.0)), float(rng.uniform(0.8, 1.5))
        params = None
        for _fit in range(3):  # rescale the length until the built tumor has the sampled size
            mid = start + 0.5 * length
            center = np.array([np.interp(mid, arcs, polyline[:, k]) for k in range(3)])
            values = dict(
                base,
                segment_start_mm=start,
                segment_end_mm=start + length,
                length_mm=length,
                taper_mm=min(8.0, 0.25 * length),
            )
            params = TumorParams(
                organ=organ,
                kind="wall_thickening",
                seed=seed,
                center_mm=tuple(float(v) for v in center),
                diameter_mm=target_d,
                size_class=size_class,
                rotation=tuple(float(v) for v in frame.reshape(-1)),
                contrast_hu=target_hu - wall_median,
                texture_sd_hu=texture_sd,
                texture_grain_mm=3.0,
                edge_mm=edge,
                mass_effect=0.0,
                mass_effect_extent=1.3,
                extra=_extra(**values, target_hu=target_hu),
            )
            achieved = _measure(params, ct, organ_mask, wall_median, forbidden)
            if (
                size_bin(achieved) == SIZE_CLASS_TO_BIN[size_class]
                and abs(achieved - target_d) < 0.15 * target_d
            ):
                break
            if achieved <= 0:
                break
            new_length = float(
                np.clip(
                    length * (target_d / achieved) ** 3,
                    length_range[0],
                    min(length_range[1], available[1] - available[0]),
                )
            )
            start = float(
                np.clip(
                    start + 0.5 * (length - new_length), available[0], available[1] - new_length
                )
            )
            length = new_length
        assert params is not None  # the last record built above, and `achieved` its size
        if size_bin(achieved) != SIZE_CLASS_TO_BIN[size_class]:
            last_reason = f"built {achieved:.0f} mm, outside the {size_class} class"
            continue
        return _finalise(params, achieved, ct, organ_mask, wall_median)
    return f"{organ}: {last_reason}"


def _finalise(
    params: TumorParams, diameter_mm: float, ct: Volume, organ_mask: np.ndarray, wall_median: float
) -> TumorParams:
    """Record the built diameter, and the contrast that brings the tumor to its target HU."""
    reference = _pipeline_reference_hu(ct, organ_mask, params, wall_median)
    return replace(
        params,
        diameter_mm=float(diameter_mm),
        contrast_hu=float(params.extra_value("target_hu") - reference),
    )


def _surface_point(
    organ_mask: np.ndarray,
    affine: np.ndarray,
    centre: np.ndarray,
    direction: np.ndarray,
    max_mm: float,
) -> np.ndarray | None:
    """The last organ point marching from `centre` along `direction` (0.5 mm steps)."""
    steps = np.arange(0.0, max_mm, 0.5)
    points = centre + steps[:, None] * direction
    voxels = np.rint(world_to_voxel(affine, points)).astype(int)
    inside_volume = np.all((voxels >= 0) & (voxels < np.asarray(organ_mask.shape)), axis=1)
    inside = np.zeros(len(steps), bool)
    inside[inside_volume] = organ_mask[tuple(voxels[inside_volume].T)]
    if not inside[0] or inside.all():
        return None
    return points[int(np.argmin(inside)) - 1]


def _sample_polyp(
    rng: np.random.Generator,
    ct: Volume,
    organ_mask: np.ndarray,
    cloud: OrganCloud,
    size_class: str,
    forbidden: np.ndarray | None,
) -> TumorParams | str:
    profile = PROFILES["colon"]
    target_low, target_high = profile["target_hu"]  # type: ignore[misc]
    last_reason = "no wall point with lumen in front of it"
    for _attempt in range(8):
        tube = _local_tube(cloud, "colon", _pick_start(cloud, "colon", rng))
        if tube is None:
            continue
        centre, tangent, radius = tube
        wall_median = _local_wall_median(ct, organ_mask, centre)
        frame = _frame(tangent, rng)
        outward_direction = frame[1]
        surface = _surface_point(
            organ_mask, ct.affine, centre, outward_direction, 3.0 * radius + 10.0
        )
        if surface is None:
            continue
        target_d = rng.uniform(*TARGET_DIAMETER_MM[size_class])
        elongation = rng.uniform(0.85, 1.3)  # height / base radius
        base = (
            0.5 * target_d / elongation ** (1.0 / 3.0) * 1.08
        )  # ~20 % of the ellipsoid is cut by the wall
        height = base * elongation
        if 1.7 * height > 2.0 * radius - 3.0:
            last_reason = (
                f"a {target_d:.0f} mm polyp does not fit a lumen of radius {radius:.0f} mm"
            )
            continue
        inward = -outward_direction
        polyp_centre = surface + inward * (0.7 * height)
        rotation = np.stack([tangent, np.cross(inward, tangent), inward])
        params = TumorParams(
            organ="colon",
            kind="polyp",
            seed=int(rng.integers(0, 2**31 - 1)),
            center_mm=tuple(float(v) for v in polyp_centre),
            diameter_mm=target_d,
            size_class=size_class,
            rotation=tuple(float(v) for v in rotation.reshape(-1)),
            contrast_hu=0.0,
            texture_sd_hu=float(rng.uniform(5.0, 9.0)),
            texture_grain_mm=2.5,
            edge_mm=float(rng.uniform(0.6, 1.0)),
            mass_effect=0.0,
            mass_effect_extent=1.3,
            extra=_extra(
                base_radius_mm=base,
                height_mm=height,
                lobulation=rng.uniform(0.0, 0.1),
                organ_radius_mm=radius,
                target_hu=rng.uniform(target_low, target_high),
            ),
        )
        achieved = _measure(params, ct, organ_mask, wall_median, forbidden)
        if size_bin(achieved) != SIZE_CLASS_TO_BIN[size_class]:
            last_reason = f"built polyp of {achieved:.0f} mm, outside the {size_class} class"
            continue
        return _finalise(params, achieved, ct, organ_mask, wall_median)
    return f"colon: {last_reason}"


def sample_hollow_params(
    organ: str,
    rng: np.random.Generator,
    ct: Volume,
    organ_mask: np.ndarray,
    size_class: str,
    kind: str | None = None,
    forbidden: np.ndarray | None = None,
) -> TumorParams | str:
    """Draw one colon/esophagus tumor record, or return why none fits (never raises on bad masks).

    `diameter_mm` is the equivalent diameter of the tumor as built here; pass `forbidden` (other
    organs, bool on the CT grid) so that it counts the cut the pipeline will make."""
    if organ not in HOLLOW_ORGANS:
        return f"{organ}: not a hollow organ (expected one of {HOLLOW_ORGANS})"
    if size_class not in TARGET_DIAMETER_MM:
        return f"{organ}: unknown size class {size_class!r}"
    if kind is not None and kind not in HOLLOW_KINDS:
        return f"{organ}: unknown tumor kind {kind!r} (expected one of {HOLLOW_KINDS})"
    if kind == "polyp" and organ != "colon":
        return f"{organ}: polypoid tumors are synthesized in the colon only"
    if np.shape(organ_mask) != ct.shape or (
        forbidden is not None and np.shape(forbidden) != ct.shape
    ):
        return f"{organ}: mask shape {np.shape(organ_mask)} does not match the CT {ct.shape}"
    # Everything below works on the organ's box (+ SAMPLING_MARGIN_MM): the record is in world
    # mm, so it is the same as on the whole volume, without full-volume passes.
    found = crop_to_mask(organ_mask, ct.affine, SAMPLING_MARGIN_MM)
    if found is None:
        return f"{organ}: organ mask too small (0 voxels, 0 mm3)"
    box, box_affine = found
    mask = np.asarray(organ_mask)[box].astype(bool)
    ct = Volume(np.asarray(ct.array)[box], box_affine)
    if forbidden is not None:
        forbidden = np.asarray(forbidden)[box]
    voxel_mm3 = float(np.prod(spacing_of_affine(ct.affine)))
    organ_mm3 = float(mask.sum()) * voxel_mm3
    if organ_mm3 < MIN_ORGAN_MM3:
        return f"{organ}: organ mask too small ({int(mask.sum())} voxels, {organ_mm3:.0f} mm3)"
    if not (np.asarray(ct.array)[mask] >= LUMEN_AIR_HU).any():
        return f"{organ}: no soft-tissue wall in the organ mask (all air)"
    cloud = OrganCloud(mask, ct.affine)
    if kind is None:
        polyp_share = PROFILES[organ]["polyp"][size_class]  # type: ignore[index]
        kind = "polyp" if rng.random() < polyp_share else "wall_thickening"
    if kind == "polyp":
        if size_class == "large":
            return "colon: large (> 50 mm) polyps do not fit the lumen; use wall_thickening"
        return _sample_polyp(rng, ct, mask, cloud, size_class, forbidden)
    return _sample_wall_thickening(organ, rng, ct, mask, cloud, size_class, forbidden)
