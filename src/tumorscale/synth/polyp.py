"""The polyp family (colon): a lobulated half-ellipsoid on the inner wall, growing into the lumen.

Sampling finds a tube position, marches from its centre to the wall along a random direction,
and sets the polyp's base there with its axis pointing into the lumen; a polyp that would fill
more than the lumen is refused. Numbers and sources: `hollow.py`.
"""

from __future__ import annotations

import numpy as np

from tumorscale.sizes import in_size_class
from tumorscale.synth.centerline import (
    crop_points,
    direction_bump_field,
    ellipsoid_margin,
    smooth_bumps,
    world_to_voxel,
)
from tumorscale.synth.draws import uniform
from tumorscale.synth.hollow import (
    POLYP_EDGE_MM,
    TARGET_DIAMETER_MM,
    anatomy,
    built_diameter_mm,
    draw_target_hu,
    finalise,
    local_tube,
    local_wall_median,
    occupancy_against_air,
    pick_start,
    random_frame,
)
from tumorscale.synth.host import OrganHost
from tumorscale.synth.types import (
    Crop,
    CropContext,
    NoRoom,
    PolypGeometry,
    TumorFamily,
    TumorParams,
    TumorShape,
)

_ATTEMPTS = 8
_WALL_CUT = 1.08  # about 20 % of the ellipsoid is cut by the wall: the base is drawn larger


def _geometry(params: TumorParams) -> PolypGeometry:
    if not isinstance(params.geometry, PolypGeometry):
        raise ValueError(f"a polyp record needs a PolypGeometry; got {params.geometry!r}")
    return params.geometry


def crop_radius_mm(params: TumorParams) -> float:
    """Half-size (mm) of a box around the polyp's centre holding it (and its push margin)."""
    geometry = _geometry(params)
    extent = 1.1 * max(geometry.height_mm, geometry.base_radius_mm)
    scale = params.mass_effect_extent if params.mass_effect > 0 else 1.0
    return float(extent * scale + 3.0 * params.edge_mm + 2.0)


def max_reach_mm(organ: str, size_class: str) -> float:
    """Upper bound (mm) of a polyp's reach: its largest base radius or height, plus blur."""
    diameter = TARGET_DIAMETER_MM[size_class][1]
    largest = 0.5 * diameter * _WALL_CUT * 1.3 ** (2.0 / 3.0)  # height at the largest elongation
    return float(1.1 * largest + 3.0 * POLYP_EDGE_MM[1] + 2.0)


def build_shape(params: TumorParams, crop: Crop, ctx: CropContext) -> TumorShape:
    """The polyp's soft occupancy on `crop` (pure); it never leaves the organ mask."""
    geometry = _geometry(params)
    organ = np.asarray(ctx.organ).astype(bool)
    forbidden = np.asarray(ctx.forbidden).astype(bool)
    frame = params.rotation_matrix  # rows: two base directions, then the inward normal
    offset = crop_points(crop) - np.asarray(params.center_mm, np.float32)
    local = offset @ frame.T.astype(np.float32)
    base, height = geometry.base_radius_mm, geometry.height_mm
    harmonics = smooth_bumps(np.random.default_rng(params.seed))
    lobes = 1.0 + np.float32(geometry.lobulation) * np.clip(
        direction_bump_field(local, harmonics), -1.5, 1.5
    )
    margin = ellipsoid_margin(local, (base, base, height), lobes).reshape(crop.shape)
    occupancy = occupancy_against_air(margin, params.edge_mm, np.asarray(ctx.ct))
    occupancy[~organ | forbidden] = 0.0  # a polyp grows into the lumen, never through the wall
    return TumorShape(occupancy=occupancy, organ_growth=None)


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


def sample(
    host: OrganHost, rng: np.random.Generator, size_class: str, kind: str | None, seed: int
) -> TumorParams:
    """Draw one colon polyp, or raise `NoRoom`."""
    if host.organ != "colon":
        raise ValueError(f"{host.organ}: polypoid tumors are synthesized in the colon only")
    if size_class == "large":
        raise NoRoom("colon: large (> 50 mm) polyps do not fit the lumen; use wall_thickening")
    found = anatomy(host)
    last_reason = "no wall point with lumen in front of it"
    for _attempt in range(_ATTEMPTS):
        tube = local_tube(found.cloud, "colon", pick_start(found.cloud, "colon", rng))
        if tube is None:
            continue
        centre, tangent, radius = tube
        wall_median = local_wall_median(found.ct, found.mask, centre)
        frame = random_frame(tangent, rng)
        surface = _surface_point(found.mask, found.ct.affine, centre, frame[1], 3.0 * radius + 10)
        if surface is None:
            continue
        target_d = uniform(rng, TARGET_DIAMETER_MM[size_class])
        elongation = rng.uniform(0.85, 1.3)  # height / base radius
        base = 0.5 * target_d / elongation ** (1.0 / 3.0) * _WALL_CUT
        height = base * elongation
        if 1.7 * height > 2.0 * radius - 3.0:
            last_reason = (
                f"a {target_d:.0f} mm polyp does not fit a lumen of radius {radius:.0f} mm"
            )
            continue
        inward = -frame[1]
        target_hu = draw_target_hu("colon", found.phase, "polyp", rng)
        params = TumorParams(
            organ="colon",
            kind="polyp",
            seed=seed,
            center_mm=tuple(float(v) for v in surface + inward * (0.7 * height)),  # type: ignore[arg-type]
            diameter_mm=target_d,
            size_class=size_class,
            rotation=tuple(
                float(v) for v in np.stack([tangent, np.cross(inward, tangent), inward]).reshape(-1)
            ),
            contrast_hu=0.0,
            texture_sd_hu=uniform(rng, (5.0, 9.0)),
            texture_grain_mm=2.5,
            edge_mm=uniform(rng, POLYP_EDGE_MM),
            mass_effect=0.0,
            phase=found.phase.value,
            mass_effect_extent=1.3,
            geometry=PolypGeometry(
                float(base), float(height), float(rng.uniform(0.0, 0.1)), float(radius), target_hu
            ),
        )
        radius_mm = crop_radius_mm(params)
        achieved = built_diameter_mm(params, found, radius_mm, build_shape, wall_median)
        if not in_size_class(achieved, size_class):
            last_reason = f"built polyp of {achieved:.0f} mm, outside the {size_class} class"
            continue
        return finalise(params, achieved, found, radius_mm, target_hu, wall_median)
    raise NoRoom(f"colon: {last_reason}")


FAMILY = TumorFamily(
    name="polyp",
    organs=("colon",),
    kinds=("polyp",),
    sample=sample,
    shape=build_shape,
    crop_radius_mm=crop_radius_mm,
    max_reach_mm=max_reach_mm,
)
