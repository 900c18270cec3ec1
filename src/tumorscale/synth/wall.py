"""The wall-thickening family (colon, esophagus): a segment of the tube, annular or eccentric.

Its inner boundary lies `inner_depth_mm` below the organ surface (it fills the wall and part of
the lumen, narrowing it) and its outer boundary `outward_mm` outside it (reported as organ
growth). Sampling tracks the centreline from a deep point of the organ, draws arc, thickness and
depths, solves the segment length for the drawn equivalent diameter and refits it on the built
shape (up to three times). Numbers and sources: `hollow.py`.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from tumorscale.sizes import in_size_class
from tumorscale.synth.centerline import (
    OrganCloud,
    resample_polyline,
    track_centreline,
)
from tumorscale.synth.draws import uniform
from tumorscale.synth.hollow import (
    EDGE_MM,
    END_MARGIN_MM,
    GROWTH_MAX_ABOVE_WALL_HU,
    PROFILES,
    TARGET_DIAMETER_MM,
    HollowAnatomy,
    anatomy,
    built_diameter_mm,
    draw_target_hu,
    finalise,
    local_tube,
    local_wall_median,
    pick_start,
    random_frame,
)
from tumorscale.synth.host import OrganHost
from tumorscale.synth.profiles import HOLLOW_ORGANS
from tumorscale.synth.types import (
    NoRoom,
    TumorFamily,
    TumorParams,
    WallGeometry,
)
from tumorscale.synth.wall_shape import build_shape, crop_radius_mm, max_reach_mm, wall_geometry

POLYLINE_STEP_MM = 6.0
_TRACK_STEP_MM = 4.0
_ATTEMPTS = 6  # tube positions tried before giving up
_DRAWS = 40  # arc / thickness draws tried per position for a length that fits


# ----------------------------------------------------------------------------- sampling


def _track(
    cloud: OrganCloud, centre: np.ndarray, tangent: np.ndarray, radius: float, reach: float
) -> tuple[np.ndarray, int]:
    pca = max(20.0, 2.0 * radius)
    lines = []
    for direction in (tangent, -tangent):
        line = track_centreline(cloud, centre, direction, 1.5 * radius, _TRACK_STEP_MM, reach, pca)
        lines.append(resample_polyline(line, POLYLINE_STEP_MM)[0] if len(line) > 1 else line)
    forward, backward = lines
    return np.concatenate([backward[::-1], forward[1:]]), len(backward) - 1


def sample(
    host: OrganHost, rng: np.random.Generator, size_class: str, kind: str | None, seed: int
) -> TumorParams:
    """Draw one wall thickening in the host's colon or esophagus, or raise `NoRoom`."""
    found = anatomy(host)
    last_reason = "no tube-shaped part of the organ found"
    for _attempt in range(_ATTEMPTS):
        try:
            return _sample_at(found, rng, size_class, seed)
        except NoRoom as why:
            last_reason = why.reason
    raise NoRoom(f"{host.organ}: {last_reason}")


def _sample_at(
    found: HollowAnatomy, rng: np.random.Generator, size_class: str, seed: int
) -> TumorParams:
    """One try at a random position of the organ."""
    organ, profile = found.organ, PROFILES[found.organ]
    tube = local_tube(found.cloud, organ, pick_start(found.cloud, organ, rng))
    if tube is None:
        raise NoRoom("no tube-shaped part of the organ found")
    centre, tangent, radius = tube
    wall_median = local_wall_median(found.ct, found.mask, centre)
    length_range = profile.length_mm[size_class]
    polyline, centre_index = _track(
        found.cloud, centre, tangent, radius, length_range[1] / 2 + END_MARGIN_MM
    )
    if len(polyline) < 3:
        raise NoRoom("the organ is too short along its centreline here")
    arcs = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(polyline, axis=0), axis=1))])
    arcs -= arcs[centre_index]
    available = (arcs[0] + END_MARGIN_MM * 0.5, arcs[-1] - END_MARGIN_MM * 0.5)
    if available[1] - available[0] < length_range[0]:
        raise NoRoom(
            f"only {available[1] - available[0]:.0f} mm of centreline here; "
            f"{size_class} needs {length_range[0]:.0f} mm"
        )
    target_d = uniform(rng, TARGET_DIAMETER_MM[size_class])
    arc, inner, outward, length = _cross_section(
        profile, rng, size_class, radius, target_d, available
    )
    frame = random_frame(tangent, rng)
    start = available[0] + rng.uniform(0.0, (available[1] - available[0]) - length)
    start_deg = rng.uniform(0.0, 360.0) if arc < 360 else 0.0
    irregularity = rng.uniform(0.03, 0.12)
    target_hu = draw_target_hu(found.organ, found.phase, "wall_thickening", rng)
    texture_sd, edge = uniform(rng, (6.0, 10.0)), uniform(rng, EDGE_MM)
    geometry = WallGeometry(
        polyline_mm=tuple(tuple(float(v) for v in point) for point in polyline),  # type: ignore[misc]
        centre_index=int(centre_index),
        segment_start_mm=float(start),
        segment_end_mm=float(start + length),
        taper_mm=min(8.0, 0.25 * length),
        arc_deg=float(arc),
        start_deg=float(start_deg),
        inner_depth_mm=inner,
        outward_mm=outward,
        organ_radius_mm=float(radius),
        irregularity=float(irregularity),
        growth_max_hu=wall_median + GROWTH_MAX_ABOVE_WALL_HU,
        target_hu=target_hu,
    )
    params = TumorParams(
        organ=organ,
        kind="wall_thickening",
        seed=seed,
        center_mm=(0.0, 0.0, 0.0),
        diameter_mm=target_d,
        size_class=size_class,
        rotation=tuple(float(v) for v in frame.reshape(-1)),
        contrast_hu=target_hu - wall_median,
        texture_sd_hu=texture_sd,
        texture_grain_mm=3.0,
        edge_mm=edge,
        mass_effect=0.0,
        phase=found.phase.value,
        mass_effect_extent=1.3,
        geometry=geometry,
    )
    params, achieved = _fit_length(
        params, found, arcs, polyline, available, length_range, wall_median
    )
    if not in_size_class(achieved, size_class):
        raise NoRoom(f"built {achieved:.0f} mm, outside the {size_class} class")
    return finalise(params, achieved, found, crop_radius_mm(params), target_hu, wall_median)


def _cross_section(
    profile,
    rng: np.random.Generator,
    size_class: str,
    radius: float,
    target_d: float,
    available: tuple[float, float],
) -> tuple[float, float, float, float]:
    """(arc deg, inner depth, outward, length) whose volume matches `target_d`, or NoRoom."""
    length_range = profile.length_mm[size_class]
    target_volume = math.pi / 6.0 * target_d**3
    for _draw in range(_DRAWS):
        annular = rng.random() < profile.annular[size_class]
        arc = 360.0 if annular else rng.uniform(90.0, 270.0)
        thickness = uniform(rng, profile.thickness_mm[size_class])
        residual = uniform(rng, profile.residual_lumen_mm)
        cap = radius - residual if annular else radius - 1.0
        inner = float(
            np.clip(thickness * uniform(rng, profile.inward_fraction), 1.0, max(cap, 1.0))
        )
        outward = max(thickness - inner, 0.5)
        area = arc / 360.0 * math.pi * ((radius + outward) ** 2 - max(radius - inner, 0.0) ** 2)
        length = target_volume / (0.85 * area)
        if length_range[0] <= length <= min(length_range[1], available[1] - available[0]):
            return arc, inner, outward, length
    raise NoRoom(f"no {size_class} wall thickening fits a tube of radius {radius:.0f} mm here")


def _fit_length(
    params: TumorParams,
    found: HollowAnatomy,
    arcs: np.ndarray,
    polyline: np.ndarray,
    available: tuple[float, float],
    length_range: tuple[float, float],
    wall_median: float,
) -> tuple[TumorParams, float]:
    """Rescale the segment length until the built tumor has the drawn size (three tries)."""
    geometry = wall_geometry(params)
    start, length = geometry.segment_start_mm, geometry.length_mm
    target_d = params.diameter_mm
    achieved = 0.0
    for _fit in range(3):
        mid = start + 0.5 * length
        center = tuple(float(np.interp(mid, arcs, polyline[:, k])) for k in range(3))
        geometry = replace(
            geometry,
            segment_start_mm=float(start),
            segment_end_mm=float(start + length),
            taper_mm=min(8.0, 0.25 * length),
        )
        params = replace(params, center_mm=center, geometry=geometry)  # type: ignore[arg-type]
        achieved = built_diameter_mm(
            params, found, crop_radius_mm(params), build_shape, wall_median
        )
        if (
            in_size_class(achieved, params.size_class)
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
            np.clip(start + 0.5 * (length - new_length), available[0], available[1] - new_length)
        )
        length = new_length
    return params, achieved


FAMILY = TumorFamily(
    name="wall thickening",
    organs=HOLLOW_ORGANS,
    kinds=("wall_thickening",),
    sample=sample,
    shape=build_shape,
    crop_radius_mm=crop_radius_mm,
    max_reach_mm=max_reach_mm,
)
