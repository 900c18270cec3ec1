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
    crop_points,
    crop_to_mask,
    direction_bump_field,
    ellipsoid_margin,
    equivalent_diameter_of,
    principal_axes,
    smooth_bumps,
    soft_occupancy,
    spacing_of_affine,
)
from tumorscale.synth.types import Crop, CropContext, TumorParams, TumorShape

UTERUS_KINDS = ("endometrial", "fibroid")
FIBROID_LOCATIONS = ("intramural", "submucosal", "subserosal")  # extra "location" = index
FIBROID_LOCATION_MIX = (0.5, 0.2, 0.3)
MIN_UTERUS_MM3 = 3000.0
AIR_HU = -300.0
GROWTH_MAX_ABOVE_MEDIAN_HU = 20.0
SIZE_CLASS_TO_BIN = {"small": "<20", "medium": "20-50", "large": ">50"}
ENDOMETRIAL_DIAMETER_MM = {"small": (10.0, 19.0), "medium": (21.0, 46.0), "large": (52.0, 65.0)}
FIBROID_DIAMETER_MM = {"small": (10.0, 19.0), "medium": (21.0, 48.0), "large": (52.0, 90.0)}
# Sampling works on the uterus' box plus this margin: more than any tumor reaches outside it (a
# subserosal fibroid centred on the surface: radius <= 45 x 1.26 x 0.95 mm, x 1.06 lobes = 57 mm).
SAMPLING_MARGIN_MM = 64.0


def _extra(**values: float) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((name, float(value)) for name, value in values.items()))


def _semi_axes(params: TumorParams) -> tuple[float, float, float]:
    if params.kind == "fibroid":
        radius = params.extra_value("radius_mm")
        return radius, radius, radius
    return (
        params.extra_value("long_mm"),
        params.extra_value("transverse_mm"),
        params.extra_value("ap_mm"),
    )


def uterus_crop_radius_mm(params: TumorParams) -> float:
    """Half-size (mm) of a box around `params.center_mm` holding the tumor plus a 1.3 r margin."""
    extent = max(_semi_axes(params)) * (1.0 + params.extra_value("irregularity", 0.0) * 1.5)
    return float(extent * params.mass_effect_extent + 3.0 * params.edge_mm + 2.0)


def build_uterus_shape(params: TumorParams, crop: Crop, ctx: CropContext) -> TumorShape:
    """Soft occupancy (and organ growth) of an endometrial mass or fibroid on `crop`; pure."""
    if params.kind not in UTERUS_KINDS:
        raise ValueError(
            f"not a uterus tumor kind: {params.kind!r} (expected one of {UTERUS_KINDS})"
        )
    organ = np.asarray(ctx.organ).astype(bool)
    forbidden = np.asarray(ctx.forbidden).astype(bool)
    frame = params.rotation_matrix  # rows: long axis, transverse, AP (the uterus PCA axes)
    local = (crop_points(crop) - np.asarray(params.center_mm, np.float32)) @ frame.T.astype(
        np.float32
    )
    rng = np.random.default_rng(params.seed)
    harmonics = smooth_bumps(rng)
    irregularity = np.float32(params.extra_value("irregularity", 0.0))
    lobes = 1.0 + irregularity * np.clip(direction_bump_field(local, harmonics), -1.5, 1.5)
    semi_axes = _semi_axes(params)
    margin = ellipsoid_margin(local, semi_axes, lobes).reshape(crop.shape)
    scaled = local / np.asarray(semi_axes, np.float32)
    normalised_radius = (np.sqrt(np.einsum("ij,ij->i", scaled, scaled)) / lobes).reshape(crop.shape)
    occupancy = soft_occupancy(margin, params.edge_mm)
    grows = (
        params.kind == "endometrial"
        or FIBROID_LOCATIONS[int(params.extra_value("location"))] == "subserosal"
    )
    if grows:  # bulge outward only into fat / soft tissue, never air or brighter organs / vessels
        ct = np.asarray(ctx.ct)
        blocked = ~organ & ((ct < AIR_HU) | (ct > params.extra_value("growth_max_hu")))
    else:
        blocked = ~organ
    occupancy[forbidden | blocked] = 0.0
    growth = (occupancy >= 0.5) & ~organ
    return TumorShape(
        occupancy=occupancy,
        organ_growth=growth if growth.any() else None,
        normalised_radius=normalised_radius.astype(np.float32),
    )


# ----------------------------------------------------------------------------- sampling


class UterusAnatomy:
    """The uterus' PCA frame, half-lengths along it (mm) and the cavity centre / medial axis."""

    def __init__(self, organ_mask: np.ndarray, affine: np.ndarray):
        self.cloud = OrganCloud(organ_mask, affine)
        points, depth = self.cloud.points, self.cloud.depth
        self.centroid, self.axes, deviations = principal_axes(points)
        self.half_lengths = math.sqrt(5.0) * deviations  # a uniform ellipsoid has variance a^2/5
        self.max_depth = float(depth.max())
        deep = depth >= 0.75 * self.max_depth
        self.cavity_centre = points[deep].mean(axis=0)

    def distance_to_medial_axis(self, points: np.ndarray) -> np.ndarray:
        offset = points - self.cavity_centre
        along = offset @ self.axes[0]
        return np.sqrt(np.maximum(np.einsum("ij,ij->i", offset, offset) - along**2, 0.0))


def _measure(
    params: TumorParams, ct: Volume, organ: np.ndarray, forbidden: np.ndarray | None
) -> float:
    # only voxels with margin >= 0 count: within the lobed ellipsoid, so no mass-effect margin
    # (the crop that the pipeline builds on is larger; these voxels are the same there)
    extent = max(_semi_axes(params)) * (1.0 + params.extra_value("irregularity", 0.0) * 1.5)
    crop = Crop.around(np.asarray(params.center_mm), extent + 2.0, ct.shape, ct.affine)
    blocked = (
        np.zeros(crop.shape, bool)
        if forbidden is None
        else np.asarray(forbidden[crop.slices]).astype(bool)
    )
    ctx = CropContext(
        ct=ct.array[crop.slices].astype(np.float32),
        organ=organ[crop.slices],
        forbidden=blocked,
        organ_median_hu=0.0,
    )
    shape = build_uterus_shape(params, crop, ctx)
    return equivalent_diameter_of(shape.occupancy >= 0.5, np.asarray(crop.spacing_mm))


def _sample_endometrial(
    rng: np.random.Generator, anatomy: UterusAnatomy, size_class: str, growth_max_hu: float
) -> TumorParams | str:
    target = rng.uniform(*ENDOMETRIAL_DIAMETER_MM[size_class])
    ratios = np.array([1.0, rng.uniform(0.55, 0.8), rng.uniform(0.3, 0.5)])
    caps = anatomy.half_lengths * (1.0 if size_class == "large" else 0.85)
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
        return f"uterus: too small for a {target:.0f} mm endometrial mass"
    room = max(anatomy.half_lengths[0] - axes[0], 0.0)
    centre = anatomy.cavity_centre + anatomy.axes[0] * rng.uniform(-0.3, 0.3) * room
    return TumorParams(
        organ="uterus",
        kind="endometrial",
        seed=int(rng.integers(0, 2**31 - 1)),
        center_mm=tuple(float(v) for v in centre),
        diameter_mm=target,
        size_class=size_class,
        semi_axis_scale=tuple(float(v) for v in axes / axes.prod() ** (1 / 3)),
        rotation=tuple(float(v) for v in anatomy.axes.reshape(-1)),
        contrast_hu=float(rng.uniform(-60.0, -20.0)),
        texture_sd_hu=float(rng.uniform(6.0, 10.0)),
        texture_grain_mm=3.0,
        edge_mm=float(rng.uniform(1.0, 2.0)),
        mass_effect=0.3,
        mass_effect_extent=1.3,
        extra=_extra(
            long_mm=axes[0],
            transverse_mm=axes[1],
            ap_mm=axes[2],
            irregularity=rng.uniform(0.05, 0.15),
            growth_max_hu=growth_max_hu,
        ),
    )


def _fibroid_candidates(anatomy: UterusAnatomy, location: str, radius: float) -> np.ndarray:
    cloud = anatomy.cloud
    axis_distance = anatomy.distance_to_medial_axis(cloud.points)
    along = np.abs((cloud.points - anatomy.cavity_centre) @ anatomy.axes[0])
    if location == "intramural":  # deep enough to stay inside, off the cavity
        return (cloud.depth >= radius + 1.0) & (axis_distance >= 0.6 * radius + 3.0)
    if location == "submucosal":  # on the medial axis: bulges into the cavity
        return (
            (axis_distance <= max(0.35 * radius, 4.0))
            & (along <= 0.5 * anatomy.half_lengths[0])
            & (cloud.depth >= 0.6 * min(radius, anatomy.max_depth))
        )
    return cloud.depth <= min(0.35 * radius, 0.5 * anatomy.max_depth)  # subserosal: at the surface


def _sample_fibroid(
    rng: np.random.Generator,
    anatomy: UterusAnatomy,
    size_class: str,
    growth_max_hu: float,
    location_name: str | None,
) -> TumorParams | str:
    target = rng.uniform(*FIBROID_DIAMETER_MM[size_class])
    radius = 0.5 * target
    first = int(rng.choice(3, p=FIBROID_LOCATION_MIX))
    order = [first] + [i for i in (2, 0, 1) if i != first]  # fall back, subserosal first
    if location_name is not None:
        order = [FIBROID_LOCATIONS.index(location_name)]
    for location in order:
        pick = np.flatnonzero(_fibroid_candidates(anatomy, FIBROID_LOCATIONS[location], radius))
        if pick.size:
            break
    else:
        where = "" if location_name is None else f" {location_name}"
        return f"uterus: no position fits a {target:.0f} mm{where} fibroid"
    centre = anatomy.cloud.points[int(rng.choice(pick))]
    if FIBROID_LOCATIONS[location] == "subserosal":
        radius *= 2.0 ** (1.0 / 3.0) * 0.95  # about half of it is outside the uterus or cut
    return TumorParams(
        organ="uterus",
        kind="fibroid",
        seed=int(rng.integers(0, 2**31 - 1)),
        center_mm=tuple(float(v) for v in centre),
        diameter_mm=target,
        size_class=size_class,
        rotation=tuple(float(v) for v in anatomy.axes.reshape(-1)),
        contrast_hu=float(rng.uniform(-10.0, 10.0)),
        texture_sd_hu=float(rng.uniform(4.0, 8.0)),
        texture_grain_mm=2.0,
        edge_mm=float(rng.uniform(0.5, 0.8)),
        mass_effect=0.3,
        mass_effect_extent=1.3,
        extra=_extra(
            radius_mm=radius,
            location=location,
            irregularity=rng.uniform(0.0, 0.04),
            growth_max_hu=growth_max_hu,
        ),
    )


def sample_uterus_params(
    rng: np.random.Generator,
    ct: Volume,
    organ_mask: np.ndarray,
    size_class: str,
    kind: str | None = None,
    forbidden: np.ndarray | None = None,
    fibroid_location: str | None = None,
) -> TumorParams | str:
    """Draw one uterus tumor record, or return why none fits (never raises on bad masks).

    `fibroid_location` (intramural / submucosal / subserosal) forces a fibroid's type; by default
    it is drawn from FIBROID_LOCATION_MIX, falling back to a type that fits the uterus.
    `diameter_mm` is the equivalent diameter of the tumor as built here; pass `forbidden` (other
    organs, bool on the CT grid) so that it counts the cut the pipeline will make."""
    if size_class not in ENDOMETRIAL_DIAMETER_MM:
        return f"uterus: unknown size class {size_class!r}"
    if kind is not None and kind not in UTERUS_KINDS:
        return f"uterus: unknown tumor kind {kind!r} (expected one of {UTERUS_KINDS})"
    if fibroid_location is not None and (
        fibroid_location not in FIBROID_LOCATIONS or kind == "endometrial"
    ):
        return (
            f"uterus: fibroid location {fibroid_location!r} not one of {FIBROID_LOCATIONS} "
            "(fibroids only)"
        )
    if fibroid_location is not None:
        kind = "fibroid"
    if np.shape(organ_mask) != ct.shape or (
        forbidden is not None and np.shape(forbidden) != ct.shape
    ):
        return f"uterus: mask shape {np.shape(organ_mask)} does not match the CT {ct.shape}"
    # Everything below works on the uterus' box (+ SAMPLING_MARGIN_MM): the record is in world
    # mm, so it is the same as on the whole volume, without full-volume passes.
    found = crop_to_mask(organ_mask, ct.affine, SAMPLING_MARGIN_MM)
    if found is None:
        return "uterus: organ mask too small (0 voxels, 0 mm3)"
    box, box_affine = found
    mask = np.asarray(organ_mask)[box].astype(bool)
    ct = Volume(np.asarray(ct.array)[box], box_affine)
    if forbidden is not None:
        forbidden = np.asarray(forbidden)[box]
    organ_mm3 = float(mask.sum()) * float(np.prod(spacing_of_affine(ct.affine)))
    if organ_mm3 < MIN_UTERUS_MM3:
        return f"uterus: organ mask too small ({int(mask.sum())} voxels, {organ_mm3:.0f} mm3)"
    median = float(np.median(np.asarray(ct.array)[mask]))
    anatomy = UterusAnatomy(mask, ct.affine)
    if kind is None:
        kind = UTERUS_KINDS[int(rng.random() < 0.5)]
    reason = "no tumor fits"
    for _attempt in range(4):
        if kind == "endometrial":
            params = _sample_endometrial(
                rng, anatomy, size_class, median + GROWTH_MAX_ABOVE_MEDIAN_HU
            )
        else:
            params = _sample_fibroid(
                rng, anatomy, size_class, median + GROWTH_MAX_ABOVE_MEDIAN_HU, fibroid_location
            )
        if isinstance(params, str):
            reason = params
            continue
        achieved = _measure(params, ct, mask, forbidden)
        if size_bin(achieved) == SIZE_CLASS_TO_BIN[size_class]:
            return replace(params, diameter_mm=float(achieved))
        reason = f"uterus: built {params.kind} of {achieved:.0f} mm, outside the {size_class} class"
    return reason
