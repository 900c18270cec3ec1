"""Tumors of the uterus: endometrial carcinoma filling and expanding the cavity, and fibroids
(leiomyomas: intramural, submucosal or subserosal).

The uterus long axis is the first principal axis (PCA) of the mask in mm; the cavity is taken as
the organ's central ridge: the centroid of its deepest voxels (distance transform >= 75 % of the
maximum) with the medial axis through it along the long axis. An endometrial mass is an
elongated, slightly lobulated ellipsoid on that axis (long > transverse > AP), hypodense against
the myometrium; a fibroid is a well-defined sphere whose centre depth sets its type: intramural
(deep, off the axis, fully inside), submucosal (on the medial axis, bulging into the cavity),
subserosal (centre near the surface, bulging outward: the part outside the uterus is reported as
`organ_growth`).

Profile numbers and their sources (synthesis-notes = ../shared/reference/synthesis-notes.md):

Each number, its value, and its source (§ = synthesis-notes section; [assumption] = not sourced):

- endometrial contrast: -20 .. -60 HU vs myometrium. §7 uterus row; §6 "hypoattenuating
  mass" (JCAT 2017;41:713).
- endometrial AP thickness: >= 6 mm (semi-axis >= 3 mm). §6 AP threshold 6.0 mm; §7.
- endometrial transverse: 20-60 mm, capped by the uterus. §6 threshold 19.5 mm; §7.
- endometrial shape ratios: transverse/long 0.55-0.8, AP/long 0.3-0.5. §6 "central, in the
  cavity"; the flat cavity [assumption].
- fibroid contrast: -10 .. +10 HU vs myometrium. §7 uterus row ([assumption] there).
- fibroid size: 10-100 mm. §6/§7 "millimetres to very large".
- fibroid location mix: intramural 0.5, subserosal 0.3, submucosal 0.2. §6 lists the types;
  shares [assumption].
- kind mix: endometrial 0.5, fibroid 0.5 [assumption].
- edge blur sigma: endometrial 1.0-2.0 mm (irregular myometrial border), fibroid 0.5-0.8 mm
  (well-defined). §7 shape column; §8.4 "0.5-2 mm".
- outward growth: only into -300 HU .. organ median + 20 HU: fat, not bowel gas or enhancing
  organs [assumption].
- size classes: small < 20, medium 20-50, large > 50 mm. The paper; tumorscale.sizes.

The uterus' axes and cavity (`UterusAnatomy`) are prepared once per scan on the `OrganHost`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from tumorscale.geometry import spacing_of
from tumorscale.io import Volume
from tumorscale.sizes import in_size_class
from tumorscale.synth.centerline import (
    OrganCloud,
    crop_points,
    crop_to_mask,
    direction_bump_field,
    ellipsoid_margin,
    equivalent_diameter_of,
    principal_axes,
    smooth_bumps,
    soft_occupancy,
)
from tumorscale.synth.draws import pick_weighted, uniform
from tumorscale.synth.host import OrganHost, union_of_others
from tumorscale.synth.phase_contrast import contrast_for, draw_contrast, floor_hu_for
from tumorscale.synth.types import (
    Crop,
    CropContext,
    EndometrialGeometry,
    FibroidGeometry,
    NoRoom,
    TumorFamily,
    TumorParams,
    TumorShape,
)

Range = tuple[float, float]
UTERUS_KINDS = ("endometrial", "fibroid")
FIBROID_LOCATIONS = ("intramural", "submucosal", "subserosal")
FIBROID_LOCATION_MIX = (0.5, 0.2, 0.3)
MIN_UTERUS_MM3 = 3000.0
AIR_HU = -300.0
GROWTH_MAX_ABOVE_MEDIAN_HU = 20.0
# Sampling works on the uterus' box plus this margin: more than any tumor reaches outside it (a
# subserosal fibroid centred on the surface: radius <= 45 x 1.26 x 0.95 mm, x 1.06 lobes = 57 mm).
SAMPLING_MARGIN_MM = 64.0
_ATTEMPTS = 4


@dataclass(frozen=True)
class UterusKindProfile:
    """One uterus tumor kind (numbers and sources: module docstring)."""

    name: str
    probability: float
    diameter_mm: dict[str, Range]  # per size class
    texture_sd_hu: Range
    texture_grain_mm: float
    edge_mm: Range
    irregularity: Range


PROFILES: dict[str, UterusKindProfile] = {
    "endometrial": UterusKindProfile(
        "endometrial",
        0.5,
        diameter_mm={"small": (10.0, 19.0), "medium": (21.0, 46.0), "large": (52.0, 65.0)},
        texture_sd_hu=(6.0, 10.0),
        texture_grain_mm=3.0,
        edge_mm=(1.0, 2.0),
        irregularity=(0.05, 0.15),
    ),
    "fibroid": UterusKindProfile(
        "fibroid",
        0.5,
        diameter_mm={"small": (10.0, 19.0), "medium": (21.0, 48.0), "large": (52.0, 90.0)},
        texture_sd_hu=(4.0, 8.0),
        texture_grain_mm=2.0,
        edge_mm=(0.5, 0.8),
        irregularity=(0.0, 0.04),
    ),
}


def _semi_axes(params: TumorParams) -> tuple[float, float, float]:
    geometry = params.geometry
    if isinstance(geometry, FibroidGeometry):
        return geometry.radius_mm, geometry.radius_mm, geometry.radius_mm
    if isinstance(geometry, EndometrialGeometry):
        return geometry.long_mm, geometry.transverse_mm, geometry.ap_mm
    raise ValueError(f"a uterus record needs an Endometrial- or FibroidGeometry; got {geometry!r}")


def _extent_mm(params: TumorParams) -> float:
    irregularity = getattr(params.geometry, "irregularity", 0.0)
    return max(_semi_axes(params)) * (1.0 + irregularity * 1.5)


def crop_radius_mm(params: TumorParams) -> float:
    """Half-size (mm) of a box around `params.center_mm` holding the tumor plus a 1.3 r margin."""
    return float(_extent_mm(params) * params.mass_effect_extent + 3.0 * params.edge_mm + 2.0)


def max_reach_mm(organ: str, size_class: str) -> float:
    """Upper bound (mm) of a record's reach: the largest semi-axis of the class (a subserosal
    fibroid is drawn 1.2x larger), lobes, the 1.3 push margin and the blur."""
    largest = max(0.5 * kind.diameter_mm[size_class][1] for kind in PROFILES.values())
    semi = largest * 2.0 ** (1.0 / 3.0) * 0.95 * 1.25  # subserosal growth, elongated axes
    return float(semi * (1.0 + 0.15 * 1.5) * 1.3 + 3.0 * 2.0 + 2.0)


def build_shape(params: TumorParams, crop: Crop, ctx: CropContext) -> TumorShape:
    """Soft occupancy (and organ growth) of an endometrial mass or fibroid on `crop`; pure."""
    geometry = params.geometry
    semi_axes = _semi_axes(params)
    organ = np.asarray(ctx.organ).astype(bool)
    forbidden = np.asarray(ctx.forbidden).astype(bool)
    frame = params.rotation_matrix  # rows: long axis, transverse, AP (the uterus PCA axes)
    local = (crop_points(crop) - np.asarray(params.center_mm, np.float32)) @ frame.T.astype(
        np.float32
    )
    harmonics = smooth_bumps(np.random.default_rng(params.seed))
    irregularity = np.float32(geometry.irregularity)  # type: ignore[union-attr]
    lobes = 1.0 + irregularity * np.clip(direction_bump_field(local, harmonics), -1.5, 1.5)
    margin = ellipsoid_margin(local, semi_axes, lobes).reshape(crop.shape)
    scaled = local / np.asarray(semi_axes, np.float32)
    normalised_radius = (np.sqrt(np.einsum("ij,ij->i", scaled, scaled)) / lobes).reshape(crop.shape)
    occupancy = soft_occupancy(margin, params.edge_mm)
    grows = isinstance(geometry, EndometrialGeometry) or geometry.location == "subserosal"  # type: ignore[union-attr]
    if grows:  # bulge outward only into fat / soft tissue, never air or brighter organs / vessels
        ct = np.asarray(ctx.ct)
        blocked = ~organ & ((ct < AIR_HU) | (ct > geometry.growth_max_hu))  # type: ignore[union-attr]
    else:
        blocked = ~organ
    occupancy[forbidden | blocked] = 0.0
    growth = (occupancy >= 0.5) & ~organ
    return TumorShape(
        occupancy=occupancy,
        organ_growth=growth if growth.any() else None,
        normalised_radius=normalised_radius.astype(np.float32),
    )


# ----------------------------------------------------------------------------- anatomy


class UterusAnatomy:
    """The uterus' box (+ margin), PCA frame, half-lengths along it (mm), cavity centre / medial
    axis and median HU; prepared once per scan."""

    def __init__(
        self, host: OrganHost, box: tuple[slice, ...], ct: Volume, organ_mask: np.ndarray
    ) -> None:
        # what it needs of the host, not the host: it is memoised on it (no reference cycle)
        self.masks, self.names = host.masks, host.names
        self.start = tuple(b.start for b in box)
        self.ct, self.mask, self.phase = ct, organ_mask, host.phase.phase
        self.median_hu = float(np.median(np.asarray(ct.array)[organ_mask]))
        self.cloud = OrganCloud(organ_mask, ct.affine)
        points, depth = self.cloud.points, self.cloud.depth
        self.centroid, self.axes, deviations = principal_axes(points)
        self.half_lengths = math.sqrt(5.0) * deviations  # a uniform ellipsoid has variance a^2/5
        self.max_depth = float(depth.max())
        deep = depth >= 0.75 * self.max_depth
        self.cavity_centre = points[deep].mean(axis=0)

    def forbidden(self, crop: tuple[slice, ...]) -> np.ndarray:
        """The other structures (bool) on `crop`, a box of this anatomy's volume."""
        return union_of_others(self.masks, self.names, crop, self.start)

    def distance_to_medial_axis(self, points: np.ndarray) -> np.ndarray:
        offset = points - self.cavity_centre
        along = offset @ self.axes[0]
        return np.sqrt(np.maximum(np.einsum("ij,ij->i", offset, offset) - along**2, 0.0))


def anatomy(host: OrganHost) -> UterusAnatomy:
    """The host's `UterusAnatomy`, prepared on first use; `NoRoom` when it has no usable uterus."""
    return host.prepared("uterus", lambda: _prepare(host))


def _prepare(host: OrganHost) -> UterusAnatomy:
    if not host.names:
        raise NoRoom("no uterus mask")
    name = host.names[0]
    found = crop_to_mask(host.masks[name], host.ct.affine, SAMPLING_MARGIN_MM)
    if found is None:
        raise NoRoom("uterus: organ mask too small (0 voxels, 0 mm3)")
    box, box_affine = found
    mask = np.asarray(host.masks[name])[box].astype(bool)
    ct = Volume(np.asarray(host.ct.array)[box], box_affine)
    organ_mm3 = float(mask.sum()) * float(np.prod(spacing_of(ct.affine)))
    if organ_mm3 < MIN_UTERUS_MM3:
        raise NoRoom(
            f"uterus: organ mask too small ({int(mask.sum())} voxels, {organ_mm3:.0f} mm3)"
        )
    return UterusAnatomy(host, box, ct, mask)


# ----------------------------------------------------------------------------- sampling


def _measure(params: TumorParams, found: UterusAnatomy) -> float:
    # only voxels with margin >= 0 count: within the lobed ellipsoid, so no mass-effect margin
    # (the crop that the pipeline builds on is larger; these voxels are the same there)
    ct = found.ct
    crop = Crop.around(np.asarray(params.center_mm), _extent_mm(params) + 2.0, ct.shape, ct.affine)
    ctx = CropContext(
        ct=ct.array[crop.slices].astype(np.float32),
        organ=found.mask[crop.slices],
        forbidden=found.forbidden(crop.slices),
        organ_median_hu=0.0,
    )
    shape = build_shape(params, crop, ctx)
    return equivalent_diameter_of(shape.occupancy >= 0.5, np.asarray(crop.spacing_mm))


def _common(
    kind: UterusKindProfile,
    rng: np.random.Generator,
    size_class: str,
    seed: int,
    target: float,
    centre: np.ndarray,
    found: UterusAnatomy,
) -> dict[str, object]:
    """The record fields both kinds draw the same way (contrast for the scan's phase)."""
    phase = found.phase
    drawn = draw_contrast(
        contrast_for("uterus", kind.name, phase),
        found.median_hu,
        floor_hu_for("uterus", kind.name),
        rng,
    )
    return dict(
        organ="uterus",
        kind=kind.name,
        seed=seed,
        center_mm=tuple(float(v) for v in centre),
        diameter_mm=target,
        size_class=size_class,
        rotation=tuple(float(v) for v in found.axes.reshape(-1)),
        contrast_hu=drawn.applied_hu,
        phase=phase.value,
        floor_shift_hu=drawn.floor_shift_hu,
        texture_sd_hu=uniform(rng, kind.texture_sd_hu),
        texture_grain_mm=kind.texture_grain_mm,
        edge_mm=uniform(rng, kind.edge_mm),
        mass_effect=0.3,
        mass_effect_extent=1.3,
    )


def _sample_endometrial(
    rng: np.random.Generator, found: UterusAnatomy, size_class: str, seed: int
) -> TumorParams:
    kind = PROFILES["endometrial"]
    target = uniform(rng, kind.diameter_mm[size_class])
    ratios = np.array([1.0, rng.uniform(0.55, 0.8), rng.uniform(0.3, 0.5)])
    caps = found.half_lengths * (1.0 if size_class == "large" else 0.85)
    volume_factor = (target / 2.0) ** 3  # product of the semi-axes
    axes = ratios * (volume_factor / ratios.prod()) ** (1.0 / 3.0)
    for _ in range(4):  # clip to the uterus, give the rest to the axes with room
        clipped = np.minimum(axes, caps)
        free = clipped < caps - 1e-6
        if not free.any() or np.allclose(clipped, axes):
            axes = clipped
            break
        missing = volume_factor / clipped.prod()
        axes = np.where(free, clipped * missing ** (1.0 / free.sum()), clipped)
    axes = np.maximum(np.minimum(axes, caps), 3.0)
    if axes.prod() < 0.7 * volume_factor:
        raise NoRoom(f"uterus: too small for a {target:.0f} mm endometrial mass")
    room = max(found.half_lengths[0] - axes[0], 0.0)
    centre = found.cavity_centre + found.axes[0] * rng.uniform(-0.3, 0.3) * room
    fields = _common(kind, rng, size_class, seed, target, centre, found)
    geometry = EndometrialGeometry(
        float(axes[0]),
        float(axes[1]),
        float(axes[2]),
        uniform(rng, kind.irregularity),
        found.median_hu + GROWTH_MAX_ABOVE_MEDIAN_HU,
    )
    return TumorParams(
        **fields,
        geometry=geometry,  # type: ignore[arg-type]
        semi_axis_scale=tuple(float(v) for v in axes / axes.prod() ** (1 / 3)),
    )


def _fibroid_candidates(found: UterusAnatomy, location: str, radius: float) -> np.ndarray:
    cloud = found.cloud
    axis_distance = found.distance_to_medial_axis(cloud.points)
    along = np.abs((cloud.points - found.cavity_centre) @ found.axes[0])
    if location == "intramural":  # deep enough to stay inside, off the cavity
        return (cloud.depth >= radius + 1.0) & (axis_distance >= 0.6 * radius + 3.0)
    if location == "submucosal":  # on the medial axis: bulges into the cavity
        return (
            (axis_distance <= max(0.35 * radius, 4.0))
            & (along <= 0.5 * found.half_lengths[0])
            & (cloud.depth >= 0.6 * min(radius, found.max_depth))
        )
    return cloud.depth <= min(0.35 * radius, 0.5 * found.max_depth)  # subserosal: at the surface


def _sample_fibroid(
    rng: np.random.Generator,
    found: UterusAnatomy,
    size_class: str,
    seed: int,
    location_name: str | None,
) -> TumorParams:
    kind = PROFILES["fibroid"]
    target = uniform(rng, kind.diameter_mm[size_class])
    radius = 0.5 * target
    first = int(rng.choice(3, p=FIBROID_LOCATION_MIX))
    order = [first] + [i for i in (2, 0, 1) if i != first]  # fall back, subserosal first
    if location_name is not None:
        order = [FIBROID_LOCATIONS.index(location_name)]
    for location in order:
        pick = np.flatnonzero(_fibroid_candidates(found, FIBROID_LOCATIONS[location], radius))
        if pick.size:
            break
    else:
        where = "" if location_name is None else f" {location_name}"
        raise NoRoom(f"uterus: no position fits a {target:.0f} mm{where} fibroid")
    centre = found.cloud.points[int(rng.choice(pick))]
    if FIBROID_LOCATIONS[location] == "subserosal":
        radius *= 2.0 ** (1.0 / 3.0) * 0.95  # about half of it is outside the uterus or cut
    fields = _common(kind, rng, size_class, seed, target, centre, found)
    geometry = FibroidGeometry(
        float(radius),
        FIBROID_LOCATIONS[location],
        uniform(rng, kind.irregularity),
        found.median_hu + GROWTH_MAX_ABOVE_MEDIAN_HU,
    )
    return TumorParams(**fields, geometry=geometry)  # type: ignore[arg-type]


def sample(
    host: OrganHost,
    rng: np.random.Generator,
    size_class: str,
    kind: str | None,
    seed: int,
    fibroid_location: str | None = None,
) -> TumorParams:
    """Draw one uterus tumor record, or raise `NoRoom`.

    `fibroid_location` (intramural / submucosal / subserosal) forces a fibroid's type; by default
    it is drawn from FIBROID_LOCATION_MIX, falling back to a type that fits the uterus.
    `diameter_mm` is the equivalent diameter of the tumor as built (other structures cut out)."""
    if fibroid_location is not None:
        if fibroid_location not in FIBROID_LOCATIONS:
            raise ValueError(
                f"uterus: fibroid location {fibroid_location!r} not one of {FIBROID_LOCATIONS}"
            )
        if kind == "endometrial":
            raise ValueError("uterus: a fibroid location is for fibroids only, not endometrial")
        kind = "fibroid"
    found = anatomy(host)
    chosen = pick_weighted(
        UTERUS_KINDS,
        [PROFILES[k].probability for k in UTERUS_KINDS],
        rng,
        kind,
        "uterus tumor kind",
    )
    reason = "no tumor fits"
    for attempt in range(_ATTEMPTS):
        if attempt:  # a retry draws a new lobe pattern too, not only a new size and place
            seed = int(rng.integers(2**31))
        try:
            if chosen == "endometrial":
                params = _sample_endometrial(rng, found, size_class, seed)
            else:
                params = _sample_fibroid(rng, found, size_class, seed, fibroid_location)
        except NoRoom as why:
            reason = why.reason
            continue
        achieved = _measure(params, found)
        if in_size_class(achieved, size_class):
            return replace(params, diameter_mm=float(achieved))
        reason = f"uterus: built {params.kind} of {achieved:.0f} mm, outside the {size_class} class"
    raise NoRoom(reason)


FAMILY = TumorFamily(
    name="uterus",
    organs=("uterus",),
    kinds=UTERUS_KINDS,
    sample=sample,
    shape=build_shape,
    crop_radius_mm=crop_radius_mm,
    max_reach_mm=max_reach_mm,
)
