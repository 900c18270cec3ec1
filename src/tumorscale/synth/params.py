"""Drawing a tumor's parameter record from an organ profile and a Generator (the random step).

`sample_params` returns a `TumorParams` (everything `apply_tumor` needs, no arrays) or a skip
reason string. Hollow organs and the uterus are delegated to `hollow.py` / `uterus.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from tumorscale.io import Volume
from tumorscale.synth import location
from tumorscale.synth.profiles import (
    CYST_MIN_HU,
    HOLLOW_ORGANS,
    MIN_ORGAN_VOLUME_MM3,
    NECROSIS_MIN_DIAMETER_MM,
    PROFILES,
    SOLID_TUMOR_MIN_HU,
    SYNTH_ORGANS,
    KindProfile,
    OrganProfile,
)
from tumorscale.synth.shape import AIR_HU, SHAPE_DIAMETER_KEY, ellipsoid_frame, reach_mm
from tumorscale.synth.types import DEFAULT_SIZE_MIX, SIZE_CLASSES, Crop, TumorParams

SizeMix = Sequence[float] | Mapping[str, float]
_FIT_STEPS = (1.0, 0.75, 0.5)  # preferred depth (tumor radii), relaxed when nothing fits
_VESSEL_STEPS = (1.0, 0.5, 0.0)  # liver vessel clearance (tumor radii), relaxed alongside
_MAX_SHAPE_GROWTH = 1.3  # a bulging tumor's ellipsoid is at most this much larger than intended
_FIT_POINTS = 40_000
_EXOPHYTIC_DEPTH = 0.35  # exophytic centres lie at most this many radii inside the kidney


def organ_mask_names(organ: str, masks: Mapping[str, np.ndarray]) -> tuple[str, ...]:
    """The mask files that make up `organ` in `masks` (kidney: 'kidney' or left + right)."""
    from tumorscale.organs import ORGANS

    entry = ORGANS[organ]
    whole = tuple(name for name in entry.mask_files if name in masks)
    return whole or tuple(name for name in entry.mask_part_files if name in masks)


def size_weights(size_mix: SizeMix) -> np.ndarray:
    """Probabilities of small / medium / large from a 3-sequence or a {class: weight} mapping."""
    if isinstance(size_mix, Mapping):
        weights = [float(size_mix.get(name, 0.0)) for name in SIZE_CLASSES]
    else:
        weights = [float(v) for v in size_mix]
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(
            f"size_mix needs three non-negative weights (small:medium:large); got {size_mix!r}"
        )
    return np.asarray(weights) / sum(weights)


def draw_size_class(rng: np.random.Generator, size_mix: SizeMix = DEFAULT_SIZE_MIX) -> str:
    return SIZE_CLASSES[int(rng.choice(3, p=size_weights(size_mix)))]


def random_rotation(rng: np.random.Generator) -> tuple[float, ...]:
    """A uniformly random 3x3 rotation (unit quaternion from 4 normals), row-major."""
    w, x, y, z = (q := rng.standard_normal(4)) / np.linalg.norm(q)
    matrix = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    return tuple(float(v) for v in matrix.ravel())


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _pick_kind(profile: OrganProfile, rng: np.random.Generator, kind: str | None) -> KindProfile:
    names = [k.name for k in profile.kinds]
    draw = rng.random()  # drawn even when the kind is given: same stream either way
    if kind is not None:
        if kind not in names:
            raise ValueError(
                f"unknown {profile.organ} tumor kind {kind!r}; choose from {', '.join(names)}"
            )
        return profile.kinds[names.index(kind)]
    cumulative = np.cumsum([k.probability for k in profile.kinds])
    return profile.kinds[int(np.searchsorted(cumulative / cumulative[-1], draw, side="right"))]


def sample_params(
    organ: str,
    ct: Volume,
    masks: Mapping[str, np.ndarray],
    rng: np.random.Generator,
    size_class: str | None = None,
    size_mix: SizeMix = DEFAULT_SIZE_MIX,
    kind: str | None = None,
) -> TumorParams | str:
    """Draw one tumor for `organ` on canonical `ct` with full-volume `masks`; a str is the reason
    no tumor can be placed (missing / empty / tiny organ, no room, organ at the border)."""
    if organ not in SYNTH_ORGANS:
        raise ValueError(f"unknown tumor organ {organ!r}; choose from {', '.join(SYNTH_ORGANS)}")
    if size_class is None:
        size_class = draw_size_class(rng, size_mix)
    elif size_class not in SIZE_CLASSES:
        raise ValueError(f"size_class must be one of {', '.join(SIZE_CLASSES)}; got {size_class!r}")
    seed = int(rng.integers(2**31))
    names = organ_mask_names(organ, masks)
    if not names:
        return f"no {organ} mask"
    if organ in PROFILES:
        return _sample_parenchymal(PROFILES[organ], ct, masks, names, rng, size_class, kind, seed)
    return _sample_delegated(organ, ct, masks, names[0], rng, size_class, kind, seed)


def _sample_delegated(
    organ: str, ct: Volume, masks: Mapping[str, np.ndarray], name: str,
    rng: np.random.Generator, size_class: str, kind: str | None, seed: int,
) -> TumorParams | str:
    mask = masks[name]
    box = location.mask_box(mask)
    if box is None:
        return f"empty {organ} mask"
    forbidden = _other_masks_near(masks, name, box, ct)
    if organ in HOLLOW_ORGANS:
        from tumorscale.synth.hollow import sample_hollow_params

        drawn = sample_hollow_params(organ, rng, ct, mask, size_class, kind=kind,
                                     forbidden=forbidden)
    else:
        from tumorscale.synth.uterus import sample_uterus_params

        drawn = sample_uterus_params(rng, ct, mask, size_class, kind=kind, forbidden=forbidden)
    return drawn if isinstance(drawn, str) else replace(drawn, seed=seed)


def _other_masks_near(
    masks: Mapping[str, np.ndarray], name: str, box: tuple[slice, ...], ct: Volume
) -> np.ndarray:
    """Union of the other masks around the organ's box (30 mm margin); zero elsewhere (cheap)."""
    margin = [int(np.ceil(30.0 / s)) for s in ct.spacing]
    near = tuple(
        slice(max(b.start - m, 0), min(b.stop + m, n))
        for b, m, n in zip(box, margin, ct.shape, strict=True)
    )
    forbidden = np.zeros(ct.shape, dtype=bool)
    view = forbidden[near]
    for other, array in masks.items():
        if other != name:
            np.logical_or(view, array[near], out=view)  # in place: no temporary per mask (1.4x)
    return forbidden


def _sample_parenchymal(
    profile: OrganProfile, ct: Volume, masks: Mapping[str, np.ndarray], names: tuple[str, ...],
    rng: np.random.Generator, size_class: str, kind: str | None, seed: int,
) -> TumorParams | str:
    organ = profile.organ
    present = [name for name in names if np.any(masks[name])]
    # Kidneys: a tumor grows in one of them; each side equally likely.
    part = present[int(rng.integers(len(present)))] if present else None
    if part is None:
        return f"empty {organ} mask"
    view = location.organ_view(ct, masks[part])
    if view is None:  # pragma: no cover - present parts are non-empty
        return f"empty {organ} mask"
    if view.organ_volume_mm3 < MIN_ORGAN_VOLUME_MM3:
        return (
            f"{organ} mask too small ({view.organ_volume_mm3:.0f} mm³ < "
            f"{MIN_ORGAN_VOLUME_MM3:.0f} mm³)"
        )
    chosen = _pick_kind(profile, rng, kind)
    diameter = _uniform(rng, profile.diameter_mm[size_class])
    radius = 0.5 * diameter
    scale = rng.uniform(0.75, 1.25, 3)  # per-axis jitter U(0.75, 1.25) (SynTumor, §1a step 4)
    scale /= np.cbrt(np.prod(scale))
    rotation = random_rotation(rng)
    elastic = _uniform(rng, profile.elastic_fraction) * radius
    grain = max(3.0, float(rng.uniform(0.5, 1.0)) * radius)
    if chosen.contrast_normal is not None:
        mean, sd = chosen.contrast_normal
        contrast = float(np.clip(rng.normal(mean, sd), *chosen.contrast_hu))
    else:
        contrast = _uniform(rng, chosen.contrast_hu)
    if chosen.absolute_hu is not None:  # cysts: toward a fixed absolute HU
        target_hu = _uniform(rng, chosen.absolute_hu)
        contrast = float(np.clip(target_hu - view.median_hu(), *chosen.contrast_hu))
    # Profiles are portal-venous; on a dark (unenhanced, fatty) organ a hypodense tumor must
    # not become fat: its HU stays above a floor (the record keeps the contrast it gets).
    floor_hu = CYST_MIN_HU if chosen.absolute_hu is not None else SOLID_TUMOR_MIN_HU
    organ_median = view.median_hu()
    if np.isfinite(organ_median):
        contrast = max(contrast, floor_hu - organ_median)
    texture_sd = _uniform(rng, chosen.texture_sd_hu)
    texture_grain = _uniform(rng, chosen.texture_grain_mm)
    edge = _uniform(rng, chosen.edge_mm)
    necrosis_draw, rim_draw, exo_draw, head_draw = rng.random(4)
    necrosis_hu = necrosis_fraction = 0.0
    if diameter > NECROSIS_MIN_DIAMETER_MM and necrosis_draw < chosen.necrosis_probability:
        necrosis_hu = _uniform(rng, chosen.necrosis_hu)
        if np.isfinite(organ_median):  # a necrotic core is fluid, not fat
            necrosis_hu = min(max(necrosis_hu, CYST_MIN_HU - organ_median - contrast), 0.0)
        necrosis_fraction = _uniform(rng, chosen.necrosis_fraction)
    rim_hu = rim_mm = 0.0
    if rim_draw < chosen.rim_probability:
        rim_hu = _uniform(rng, chosen.rim_hu)
        rim_mm = min(_uniform(rng, chosen.rim_mm), 0.15 * radius)  # thin on small tumors
    exophytic = size_class != "small" and exo_draw < profile.exophytic_probability
    params = TumorParams(
        organ=organ, kind=chosen.name, seed=seed, center_mm=(0.0, 0.0, 0.0),
        diameter_mm=diameter, size_class=size_class,
        semi_axis_scale=tuple(float(v) for v in scale),  # type: ignore[arg-type]
        rotation=rotation, elastic_mm=elastic, elastic_grain_mm=grain, contrast_hu=contrast,
        texture_sd_hu=texture_sd, texture_grain_mm=texture_grain, edge_mm=edge,
        necrosis_hu=necrosis_hu, necrosis_fraction=necrosis_fraction, rim_hu=rim_hu,
        rim_mm=rim_mm, exophytic=bool(exophytic),
        mass_effect=_uniform(rng, profile.mass_effect),
        mass_effect_extent=profile.mass_effect_extent,
    )
    center = _place(profile, view, params, rng, head_draw < profile.head_prior)
    may_grow_out = profile.exophytic_probability > 0 and size_class != "small"
    if center is None and not params.exophytic and may_grow_out:
        params = replace(params, exophytic=True)  # too big for the kidney: let it grow out
        center = _place(profile, view, params, rng, False)
    if center is None:
        where = " (the organ touches the scan border)" if view.touches_border else ""
        return f"no valid location for a {diameter:.0f} mm tumor in the {organ}{where}"
    params = replace(params, center_mm=tuple(float(v) for v in center))  # type: ignore[arg-type]
    if profile.boundary == "bulge":
        params = _compensate_cut(params, ct, masks, names)
    return params


def _compensate_cut(
    params: TumorParams, ct: Volume, masks: Mapping[str, np.ndarray], names: tuple[str, ...]
) -> TumorParams:
    """Grow the ellipsoid of a bulging tumor so that the part neighbours leave (organ, or
    non-air tissue of no other organ) has the intended equivalent diameter (coarse estimate)."""
    reach = 0.5 * params.diameter_mm * max(params.semi_axis_scale) * _MAX_SHAPE_GROWTH + 2.0
    box = Crop.around(np.asarray(params.center_mm), reach, ct.shape, ct.affine)
    step = max(1, int(np.ceil((np.prod(box.shape) / _FIT_POINTS) ** (1 / 3))))
    strided = tuple(slice(s.start, s.stop, step) for s in box.slices)
    organ = np.zeros([len(range(s.start, s.stop, step)) for s in box.slices], dtype=bool)
    forbidden = np.zeros_like(organ)
    for name, mask in masks.items():
        target = organ if name in names else forbidden
        target |= mask[strided] > 0
    allowed = organ | (~forbidden & (np.asarray(ct.array[strided]) > AIR_HU))
    coarse_affine = np.asarray(ct.affine, float) @ np.diag([step, step, step, 1.0])
    coarse_affine[:3, 3] = (ct.affine @ np.append(np.asarray(box.start, float), 1.0))[:3]
    coarse = Crop((0, 0, 0), allowed.shape, coarse_affine)  # type: ignore[arg-type]
    diameter = params.diameter_mm
    for _ in range(3):
        trial = replace(params, extra=((SHAPE_DIAMETER_KEY, diameter),))
        inside = ellipsoid_frame(trial, coarse)[0] <= 1.0
        kept = np.count_nonzero(inside & allowed) / max(np.count_nonzero(inside), 1)
        if kept <= 0:
            return params
        # Kept volume = kept fraction x ellipsoid volume: solve for the intended volume.
        grown = params.diameter_mm * kept ** (-1 / 3)
        diameter = float(min(grown, _MAX_SHAPE_GROWTH * params.diameter_mm))
    if diameter <= params.diameter_mm * 1.02:
        return params
    return replace(params, extra=tuple(sorted({**dict(params.extra),
                                               SHAPE_DIAMETER_KEY: diameter}.items())))


def _place(
    profile: OrganProfile, view: location.OrganView, params: TumorParams,
    rng: np.random.Generator, in_head: bool,
) -> np.ndarray | None:
    """A centre satisfying the profile's rules (relaxed step by step), or None."""
    radius = 0.5 * params.diameter_mm
    depth = location.depth_mm(view)
    room = location.border_room_mm(view) >= reach_mm(params)
    region = view.organ & room
    if in_head:
        head = region & location.head_region(view)
        region = head if head.any() else region
    if params.exophytic:
        band = region & (depth >= 1.0) & (depth <= max(_EXOPHYTIC_DEPTH * radius, 1.5))
        return location.pick_point(view, band, rng) if band.any() else None
    clearance = None
    if profile.vessel_margin_hu is not None:
        clearance = location.vessel_clearance_mm(view, profile.vessel_margin_hu)
    for fit, vessel in zip(_FIT_STEPS, _VESSEL_STEPS, strict=True):
        need = max(profile.interior_margin_mm, fit * profile.fit_fraction * radius)
        candidates = region & (depth >= need)
        if clearance is not None:
            candidates &= clearance >= vessel * radius
        if candidates.any():
            return location.pick_point(view, candidates, rng)
    return None
