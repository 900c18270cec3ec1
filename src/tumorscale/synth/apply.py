"""Applying a tumor record to a scan (the pure step): crop, shape, mass effect, paint, label.

Everything happens in a crop around the tumor; the rest of the volume is never read beyond a
strided HU-range sample. The same record on the same inputs gives bit-identical outputs: the
only randomness is `np.random.default_rng([params.seed, stream])`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from tumorscale.io import Volume
from tumorscale.sizes import equivalent_diameter_mm
from tumorscale.synth import shape as ellipsoid
from tumorscale.synth.families import family_of
from tumorscale.synth.host import organ_mask_names
from tumorscale.synth.intensity import paint_tumor
from tumorscale.synth.mass_effect import push_image, push_mask, radial_push
from tumorscale.synth.profiles import HOLLOW_ORGANS, PROFILES
from tumorscale.synth.reference import reference_median_hu
from tumorscale.synth.types import Crop, CropContext, TumorParams, TumorRecord

TUMOR_KEY = "\0tumors"  # previous tumors of this call: avoided and pushed like any mask


@dataclass
class SynthesisResult:
    """A scan with synthetic tumors: CT (source geometry kept), masks, tumor mask, records."""

    ct: Volume
    masks: dict[str, np.ndarray]
    tumor_mask: np.ndarray  # uint8 on the ct grid
    records: list[TumorRecord] = field(default_factory=list)


class Scene:
    """Working arrays of one synthesis call; masks are copied on first write (copy=True) so
    untouched masks cost nothing and the caller's arrays are never modified."""

    def __init__(self, ct: Volume, masks: Mapping[str, np.ndarray], copy: bool = True) -> None:
        self.source = ct
        # In place only where the caller's arrays can be written (read-only views are copied).
        in_place = not copy and ct.array.flags.writeable
        self.ct = ct.array if in_place else np.array(ct.array, copy=True)
        self.masks: dict[str, np.ndarray] = dict(masks)
        # Written in place (copy=False) only where the mask allows it: a writeable array, or
        # a mask decoded on demand that says `writeable`; the others are copied on first write.
        self._owned: set[str] = (
            set() if copy else {n for n, a in self.masks.items() if _writes_in_place(a)}
        )
        self.tumor = np.zeros(ct.shape, dtype=np.uint8)
        strided = ct.array[::4, ::4, ::4]
        self.hu_range = (float(strided.min()), float(strided.max())) if strided.size else (0.0, 0.0)

    @property
    def volume(self) -> Volume:
        return self.source.with_array(self.ct)

    def writable(self, name: str) -> np.ndarray:
        if name not in self._owned:
            self.masks[name] = np.array(self.masks[name], copy=True)
            self._owned.add(name)
        return self.masks[name]

    def result(self, records: list[TumorRecord]) -> SynthesisResult:
        masks = {}
        for name, array in self.masks.items():
            if name in self._owned or not isinstance(array, np.ndarray):
                masks[name] = array
            else:  # untouched: a read-only view, so the caller's input stays untouched
                view = array.view()
                view.flags.writeable = False
                masks[name] = view
        return SynthesisResult(self.volume, masks, self.tumor, records)


def _writes_in_place(mask: object) -> bool:
    if isinstance(mask, np.ndarray):
        return bool(mask.flags.writeable)
    return bool(getattr(mask, "writeable", False))


def _push_radius_mm(params: TumorParams) -> float:
    if params.mass_effect <= 0:
        return 0.0
    r_max = ellipsoid.radius_mm(params) * max(params.semi_axis_scale)
    extent = params.mass_effect_extent * (r_max + ellipsoid.ELASTIC_CLIP * params.elastic_mm)
    return extent + 1.0


def crop_radius_for(params: TumorParams) -> float:
    """Half-size (mm) of the crop a record is applied in: nothing outside it ever changes."""
    return max(family_of(params).crop_radius_mm(params), _push_radius_mm(params))


def apply_in_scene(params: TumorParams, scene: Scene) -> TumorRecord:
    """Insert one tumor into the scene's arrays; the record says what was achieved or skipped."""
    organ = params.organ
    names = organ_mask_names(organ, scene.masks)
    if not names:
        return TumorRecord(params, organ, skipped=f"no {organ} mask")
    builder = family_of(params).shape
    radius = crop_radius_for(params)
    affine = np.asarray(scene.source.affine)
    if organ in PROFILES:  # the ellipsoid's own box: tighter than the cube of its radius
        crop = ellipsoid.ellipsoid_crop(params, scene.ct.shape, affine)
    else:
        crop = Crop.around(np.asarray(params.center_mm), radius, scene.ct.shape, affine)
    if min(crop.shape) <= 0:
        return TumorRecord(params, organ, skipped="tumor centre outside the scan")
    region = crop.slices
    ct_crop = scene.ct[region].astype(np.float32)
    crops = {name: scene.masks[name][region] for name in scene.masks}
    crops[TUMOR_KEY] = scene.tumor[region]
    organ_crop = _union(crops, names, crop.shape)
    if not organ_crop.any():
        return TumorRecord(params, organ, skipped=f"no {organ} voxels around the tumor centre")
    others = [name for name in crops if name not in names and np.any(crops[name])]
    for name in [*names, *others]:  # contiguous: flat gathers then need no hidden copies
        crops[name] = np.ascontiguousarray(crops[name])
    forbidden = _union(crops, others, crop.shape)
    median = reference_median_hu(
        scene.ct, [scene.masks[n] for n in names], params.center_mm, radius, affine,
        hollow=organ in HOLLOW_ORGANS, tumors=scene.tumor,
    )
    if not np.isfinite(median):
        return TumorRecord(params, organ, skipped=f"no {organ} reference tissue near the tumor")
    tumor_shape = builder(params, crop, CropContext(ct_crop, organ_crop, forbidden, median))

    # Mass effect: neighbours are pushed (CT linear, masks nearest), then the tumor goes on top.
    rho = tumor_shape.normalised_radius
    if rho is None and params.mass_effect > 0:  # no push: the radius is not needed
        rho = ellipsoid.ellipsoid_frame(params, crop)[0]
    centre = ellipsoid.center_voxel(params, affine) - np.asarray(crop.start)
    push = radial_push(rho, centre, params.mass_effect, params.mass_effect_extent)
    pushed, changed = {}, set()
    for name in [*names, *others]:
        pushed[name], moved = push_mask(crops[name], push)
        if moved:
            changed.add(name)
    organ_pushed = push_mask(organ_crop, push)[0]
    forbidden_pushed = push_mask(forbidden, push)[0]
    # The CT under the tumor's core (full occupancy, surely allowed) is overwritten: not pushed.
    core = (tumor_shape.occupancy >= 1.0) & organ_pushed & ~forbidden_pushed
    integer = np.issubdtype(scene.ct.dtype, np.integer)
    pushed_ct = push_image(ct_crop, push, whole_numbers=integer, skip=core)
    allowed = organ_pushed.copy()
    growth = tumor_shape.organ_growth
    if growth is not None:
        allowed |= growth
    if params.exophytic:
        allowed |= pushed_ct > ellipsoid.AIR_HU
    allowed &= ~forbidden_pushed
    occupancy = np.multiply(tumor_shape.occupancy, allowed, dtype=np.float32)
    tumor = occupancy >= 0.5
    if not tumor.any():
        return TumorRecord(params, organ, organ_median_hu=median,
                           skipped="no tumor voxels inside the allowed region")
    hu_range = (min(scene.hu_range[0], float(ct_crop.min())),
                max(scene.hu_range[1], float(ct_crop.max())))
    painted = paint_tumor(
        params, pushed_ct, ct_crop, occupancy, tumor, tumor_shape.necrosis, tumor_shape.rim,
        median, crop.spacing_mm, hu_range, integer,
    )
    if painted is not None:
        pushed_ct[painted.box] = painted.values

    # Write back: CT, pushed masks, organ growth, tumor.
    scene.ct[region] = pushed_ct.astype(scene.ct.dtype)
    for name in changed - {TUMOR_KEY}:
        scene.writable(name)[region] = pushed[name]
    if growth is not None:
        gained = growth & ~forbidden_pushed & ~organ_pushed
        if gained.any():
            target = _part_for_growth(names, pushed, tumor)
            grown = scene.writable(target)
            grown[region] |= gained.astype(grown.dtype)
    previous = pushed.get(TUMOR_KEY, crops[TUMOR_KEY])
    scene.tumor[region] = previous | tumor.astype(np.uint8)
    voxels = np.count_nonzero(tumor)
    diameter = float(equivalent_diameter_mm(voxels * scene.source.voxel_volume_mm3))
    contrast = painted.achieved_contrast_hu if painted is not None else None
    return TumorRecord(params, organ, contrast, diameter, median)


def _union(arrays: dict[str, np.ndarray], names, shape: tuple[int, ...]) -> np.ndarray:
    """Voxels where any of the named masks is set (OR in the masks' own dtype, one compare)."""
    names = list(names)
    if not names:
        return np.zeros(shape, dtype=bool)
    union = np.array(arrays[names[0]], copy=True)
    for name in names[1:]:
        other = arrays[name]
        if other.dtype == union.dtype:
            union |= other
        else:
            union = (union > 0) | (other > 0)
    return union > 0


def _part_for_growth(
    names: tuple[str, ...], pushed: dict[str, np.ndarray], tumor: np.ndarray
) -> str:
    """The organ part (kidney side) that holds most of the tumor."""
    if len(names) == 1:
        return names[0]
    overlap = [np.count_nonzero(pushed[n].astype(bool) & tumor) for n in names]
    return names[int(np.argmax(overlap))]


def apply_tumor(
    params: TumorParams, ct: Volume, masks: Mapping[str, np.ndarray], *, copy: bool = True
) -> SynthesisResult:
    """Insert the tumor described by `params` into canonical `ct` / `masks` (the pure step).

    Returns new arrays (inputs untouched; unchanged masks come back as read-only views);
    `copy=False` writes into the caller's arrays instead (fast path for data loaders).
    """
    scene = Scene(ct, masks, copy=copy)
    return scene.result([apply_in_scene(params, scene)])
