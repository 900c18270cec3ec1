"""The parenchymal family (liver, pancreas, kidney): a lobulated ellipsoid inside the organ.

Drawing follows the organ's profile (`profiles.py`): kind, size, axes jitter, rotation, contrast
for the scan's phase (`phase_contrast.py`), texture, edge, necrotic core, rim; then a centre that
satisfies the placement rules (`location.py`), relaxed step by step. A bulging tumor (pancreas)
is drawn larger so that the part its neighbours leave has the intended size. The shape is the
ellipsoid of `shape.py` with its necrotic core and rim shells.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tumorscale.synth import location
from tumorscale.synth.draws import pick_weighted, random_rotation, uniform
from tumorscale.synth.host import OrganHost
from tumorscale.synth.phase_contrast import contrast_for, draw_contrast, floor_hu_for
from tumorscale.synth.profiles import (
    CYST_MIN_HU,
    MIN_ORGAN_VOLUME_MM3,
    NECROSIS_MIN_DIAMETER_MM,
    PROFILES,
    KindProfile,
    OrganProfile,
)
from tumorscale.synth.shape import (
    AIR_HU,
    EDGE_CUTOFF,
    ELASTIC_CLIP,
    crop_radius_mm,
    ellipsoid_frame,
    lobulated_signed_distance_mm,
    reach_mm,
    soft_inside,
)
from tumorscale.synth.types import (
    Crop,
    CropContext,
    EllipsoidGeometry,
    NoRoom,
    TumorFamily,
    TumorParams,
    TumorShape,
)

_FIT_STEPS = (1.0, 0.75, 0.5)  # preferred depth (tumor radii), relaxed when nothing fits
_VESSEL_STEPS = (1.0, 0.5, 0.0)  # liver vessel clearance (tumor radii), relaxed alongside
_MAX_SHAPE_GROWTH = 1.5  # a bulging tumor's ellipsoid is at most this much larger than intended
_FIT_POINTS = 40_000
_EXOPHYTIC_DEPTH = 0.35  # exophytic centres lie at most this many radii inside the kidney
_AXIS_SCALE_MAX = 1.25  # per-axis jitter U(0.75, 1.25): the largest semi-axis factor


# ----------------------------------------------------------------------------- sampling


def sample(
    host: OrganHost, rng: np.random.Generator, size_class: str, kind: str | None, seed: int
) -> TumorParams:
    """Draw one tumor for the host's parenchymal organ, or raise `NoRoom`."""
    profile = PROFILES[host.organ]
    part = _pick_part(host, rng)
    view = _view(host, part)
    chosen = _pick_kind(profile, rng, kind)
    diameter = uniform(rng, profile.diameter_mm[size_class])
    radius = 0.5 * diameter
    scale = rng.uniform(0.75, 1.25, 3)  # per-axis jitter U(0.75, 1.25) (SynTumor, §1a step 4)
    scale /= np.cbrt(np.prod(scale))
    rotation = random_rotation(rng)
    elastic = uniform(rng, profile.elastic_fraction) * radius
    grain = max(3.0, float(rng.uniform(0.5, 1.0)) * radius)
    organ_median = view.median_hu()
    # Contrast for the scan's phase; a floor (no solid tumor darker than soft tissue, no cyst
    # darker than fluid) may raise it, and the record keeps by how much.
    drawn = draw_contrast(
        contrast_for(profile.organ, chosen.name, host.phase.phase),
        organ_median,
        floor_hu_for(profile.organ, chosen.name),
        rng,
    )
    texture_sd = uniform(rng, chosen.texture_sd_hu)
    texture_grain = uniform(rng, chosen.texture_grain_mm)
    edge = uniform(rng, chosen.edge_mm)
    necrosis_draw, rim_draw, exo_draw, head_draw = rng.random(4)
    necrosis_hu = necrosis_fraction = necrosis_shift = 0.0
    if diameter > NECROSIS_MIN_DIAMETER_MM and necrosis_draw < chosen.necrosis_probability:
        drawn_core = uniform(rng, chosen.necrosis_hu)
        necrosis_hu = drawn_core
        if np.isfinite(organ_median):  # a necrotic core is fluid, not fat
            necrosis_hu = min(max(drawn_core, CYST_MIN_HU - organ_median - drawn.applied_hu), 0.0)
        necrosis_shift = necrosis_hu - drawn_core
        necrosis_fraction = uniform(rng, chosen.necrosis_fraction)
    rim_hu = rim_mm = 0.0
    if rim_draw < chosen.rim_probability:
        rim_hu = uniform(rng, chosen.rim_hu)
        rim_mm = min(uniform(rng, chosen.rim_mm), 0.15 * radius)  # thin on small tumors
    exophytic = size_class != "small" and exo_draw < profile.exophytic_probability
    params = TumorParams(
        organ=profile.organ,
        kind=chosen.name,
        seed=seed,
        center_mm=(0.0, 0.0, 0.0),
        diameter_mm=diameter,
        size_class=size_class,
        semi_axis_scale=tuple(float(v) for v in scale),  # type: ignore[arg-type]
        rotation=rotation,
        elastic_mm=elastic,
        elastic_grain_mm=grain,
        contrast_hu=drawn.applied_hu,
        texture_sd_hu=texture_sd,
        texture_grain_mm=texture_grain,
        edge_mm=edge,
        necrosis_hu=necrosis_hu,
        necrosis_fraction=necrosis_fraction,
        rim_hu=rim_hu,
        rim_mm=rim_mm,
        exophytic=bool(exophytic),
        mass_effect=uniform(rng, profile.mass_effect),
        mass_effect_extent=profile.mass_effect_extent,
        phase=host.phase.phase.value,
        floor_shift_hu=drawn.floor_shift_hu,
        necrosis_floor_shift_hu=necrosis_shift,
    )
    params = _placed(profile, host, part, view, params, rng, head_draw < profile.head_prior)
    if profile.boundary == "bulge":
        params = _compensate_cut(params, host)
    return params


def _pick_part(host: OrganHost, rng: np.random.Generator) -> str:
    """The organ part a tumor grows in (kidneys: one side, each equally likely)."""
    present = host.prepared(
        "present", lambda: [name for name in host.names if np.any(host.masks[name])]
    )
    if not present:
        raise NoRoom(f"empty {host.organ} mask")
    return present[int(rng.integers(len(present)))]


def _view(host: OrganHost, part: str) -> location.OrganView:
    view = host.prepared(f"view:{part}", lambda: location.organ_view(host.ct, host.masks[part]))
    if view is None:  # pragma: no cover - present parts are non-empty
        raise NoRoom(f"empty {host.organ} mask")
    if view.organ_volume_mm3 < MIN_ORGAN_VOLUME_MM3:
        raise NoRoom(
            f"{host.organ} mask too small ({view.organ_volume_mm3:.0f} mm³ < "
            f"{MIN_ORGAN_VOLUME_MM3:.0f} mm³)"
        )
    return view


def _pick_kind(profile: OrganProfile, rng: np.random.Generator, kind: str | None) -> KindProfile:
    names = [k.name for k in profile.kinds]
    chosen = pick_weighted(
        names, [k.probability for k in profile.kinds], rng, kind, f"{profile.organ} tumor kind"
    )
    return profile.kinds[names.index(chosen)]


def _placed(
    profile: OrganProfile,
    host: OrganHost,
    part: str,
    view: location.OrganView,
    params: TumorParams,
    rng: np.random.Generator,
    in_head: bool,
) -> TumorParams:
    center = _place(profile, host, part, view, params, rng, in_head)
    may_grow_out = profile.exophytic_probability > 0 and params.size_class != "small"
    if center is None and not params.exophytic and may_grow_out:
        params = replace(params, exophytic=True)  # too big for the kidney: let it grow out
        center = _place(profile, host, part, view, params, rng, False)
    if center is None:
        where = " (the organ touches the scan border)" if view.touches_border else ""
        raise NoRoom(
            f"no valid location for a {params.diameter_mm:.0f} mm tumor in the "
            f"{profile.organ}{where}"
        )
    return replace(params, center_mm=tuple(float(v) for v in center))  # type: ignore[arg-type]


def _place(
    profile: OrganProfile,
    host: OrganHost,
    part: str,
    view: location.OrganView,
    params: TumorParams,
    rng: np.random.Generator,
    in_head: bool,
) -> np.ndarray | None:
    """A centre satisfying the profile's rules (relaxed step by step), or None."""
    radius = 0.5 * params.diameter_mm
    depth = host.prepared(f"depth:{part}", lambda: location.depth_mm(view))
    border = host.prepared(f"border:{part}", lambda: location.border_room_mm(view))
    region = view.organ & (border >= reach_mm(params))
    if in_head:
        head = region & host.prepared(f"head:{part}", lambda: location.head_region(view))
        region = head if head.any() else region
    if params.exophytic:
        band = region & (depth >= 1.0) & (depth <= max(_EXOPHYTIC_DEPTH * radius, 1.5))
        return location.pick_point(view, band, rng) if band.any() else None
    clearance = None
    if profile.vessel_margin_hu is not None:
        margin = profile.vessel_margin_hu
        clearance = host.prepared(
            f"vessels:{part}", lambda: location.vessel_clearance_mm(view, margin)
        )
    for fit, vessel in zip(_FIT_STEPS, _VESSEL_STEPS, strict=True):
        need = max(profile.interior_margin_mm, fit * profile.fit_fraction * radius)
        candidates = region & (depth >= need)
        if clearance is not None:
            candidates &= clearance >= vessel * radius
        if candidates.any():
            return location.pick_point(view, candidates, rng)
    return None


def _compensate_cut(params: TumorParams, host: OrganHost) -> TumorParams:
    """Grow the ellipsoid of a bulging tumor so that the part neighbours leave (organ, or
    non-air tissue of no other organ) has the intended equivalent diameter (coarse estimate)."""
    ct = host.ct
    reach = 0.5 * params.diameter_mm * max(params.semi_axis_scale) * _MAX_SHAPE_GROWTH + 2.0
    box = Crop.around(np.asarray(params.center_mm), reach, ct.shape, ct.affine)
    step = max(1, int(np.ceil((np.prod(box.shape) / _FIT_POINTS) ** (1 / 3))))
    strided = tuple(slice(s.start, s.stop, step) for s in box.slices)
    organ = np.zeros([len(range(s.start, s.stop, step)) for s in box.slices], dtype=bool)
    forbidden = np.zeros_like(organ)
    for name, mask in host.masks.items():
        target = organ if name in host.names else forbidden
        target |= mask[strided] > 0
    allowed = organ | (~forbidden & (np.asarray(ct.array[strided]) > AIR_HU))
    coarse_affine = np.asarray(ct.affine, float) @ np.diag([step, step, step, 1.0])
    coarse_affine[:3, 3] = (ct.affine @ np.append(np.asarray(box.start, float), 1.0))[:3]
    coarse = Crop((0, 0, 0), allowed.shape, coarse_affine)  # type: ignore[arg-type]
    diameter = params.diameter_mm
    for _ in range(3):
        trial = replace(params, geometry=EllipsoidGeometry(diameter))
        inside = ellipsoid_frame(trial, coarse)[0] <= 1.0
        kept = np.count_nonzero(inside & allowed) / max(np.count_nonzero(inside), 1)
        if kept <= 0:
            return params
        # Kept volume = kept fraction x ellipsoid volume: solve for the intended volume.
        grown = params.diameter_mm * kept ** (-1 / 3)
        diameter = float(min(grown, _MAX_SHAPE_GROWTH * params.diameter_mm))
    if diameter <= params.diameter_mm * 1.02:
        return params
    return replace(params, geometry=EllipsoidGeometry(diameter))


# ----------------------------------------------------------------------------- shape


def build_shape(params: TumorParams, crop: Crop, ctx: CropContext) -> TumorShape:
    """The lobulated ellipsoid with its necrotic core and rim shells on `crop` (pure)."""
    sd, rho_t, ray = lobulated_signed_distance_mm(params, crop)
    occupancy = soft_inside(sd, params.edge_mm)
    reach = sd < np.float32(EDGE_CUTOFF * max(params.edge_mm, 0.3))  # where occupancy > 0
    necrosis = rim = growth = None
    if params.necrosis_hu != 0 and params.necrosis_fraction > 0:
        core_sd = (rho_t - np.float32(params.necrosis_fraction)) * ray
        necrosis = soft_inside(core_sd, max(params.edge_mm, 1.5))
    if params.rim_hu != 0 and params.rim_mm > 0:
        # A shell from the boundary to `rim_mm` inside it (0.6 mm soft inner edge).
        rim = soft_inside(-(sd + np.float32(params.rim_mm)), 0.6) * reach
    profile = PROFILES.get(params.organ)
    if profile is not None and profile.boundary == "bulge":
        growth = (occupancy >= 0.5) & ~ctx.organ & ~ctx.forbidden & (ctx.ct > AIR_HU)
    return TumorShape(occupancy, necrosis, rim, growth, normalised_radius=rho_t)


def max_reach_mm(organ: str, size_class: str) -> float:
    """Upper bound (mm) of any record's extent from its centre, mass effect included."""
    profile = PROFILES[organ]
    radius = 0.5 * profile.diameter_mm[size_class][1] * _AXIS_SCALE_MAX
    elastic = ELASTIC_CLIP * profile.elastic_fraction[1] * radius
    edge = EDGE_CUTOFF * max(k.edge_mm[1] for k in profile.kinds)
    grown = _MAX_SHAPE_GROWTH if profile.boundary == "bulge" else 1.0
    return (
        max(
            grown * radius + elastic + edge, profile.mass_effect_extent * (grown * radius + elastic)
        )
        + 1.0
    )


FAMILY = TumorFamily(
    name="parenchymal",
    organs=tuple(PROFILES),
    kinds=tuple(kind.name for profile in PROFILES.values() for kind in profile.kinds),
    sample=sample,
    shape=build_shape,
    crop_radius_mm=crop_radius_mm,
    max_reach_mm=max_reach_mm,
)
