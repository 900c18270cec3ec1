"""On-the-fly synthesis for one training patch of a healthy case.

Reading a whole case per sample is too slow (0.3 s), so only a region is read: a random voxel of
the host organ is its centre, and it reaches, on each side, the larger of half the patch and the
largest reach of a tumor of the drawn size class as the organ's tumor family states it
(`tumorscale.synth.max_reach_mm`: the tumor, its blur and its mass effect fit), plus a placement
window (`PLACEMENT_WINDOW_MM`), cut to the scan. The voxel is uniform over the organ, so tumors
still spread over all of it; the region only bounds how far from that voxel the family can put
the centre (a parenchymal one keeps its reach inside the region, so within the window when the
reach exceeds half the patch). The synthesizer places one tumor in that region (in place,
`copy=False`), the lesion bit of the organ is set where it went, and the patch is cut around the
tumor centre (clipped into the region). When the synthesizer skips (organ too small, no room),
the patch is a random one of the region and `SynthPatch.skipped` says why. Everything random
comes from the sample's generator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tumorscale.data.cache import (
    LESION_STRUCTURES,
    STRUCTURE_BITS,
    BitMask,
    PreprocessedCache,
    scale_intensity,
    structure_bit,
)
from tumorscale.data.sampling import Shape3, random_start
from tumorscale.geometry import margin_voxels
from tumorscale.io import Volume
from tumorscale.organs import ORGANS
from tumorscale.synth import (
    DEFAULT_SIZE_MIX,
    TumorRecord,
    draw_size_class,
    insert_tumors,
    max_reach_mm,
)
from tumorscale.synth.phase import PhaseEstimate


@dataclass
class SynthPatch:
    """A patch of a healthy case with (usually) one synthetic tumor.

    image: float32 (X, Y, Z), windowed and scaled like `PreprocessedCache.read_patch`.
    bits: uint64 (X, Y, Z) structure bits, the organ's lesion bit set on the tumor.
    organ: host organ (None when the case has none of the configured organs).
    record: the synthesizer's record (None without a host organ); `skipped` is set on a skip.
    """

    image: np.ndarray
    bits: np.ndarray
    organ: str | None
    record: TumorRecord | None
    skipped: str | None


# How far (mm) from the sampled organ voxel a tumor's centre may go, beyond its reach. The region
# used to be the patch plus the reach per side: a large tumor's region, read and prepared (depth
# maps, centrelines), held up to ~4x the voxels, and a synthesized patch took 1.5x as long.
PLACEMENT_WINDOW_MM = 15.0


def region_box(
    centre: Sequence[int], patch_size: Shape3, reach_mm: float, spacing_mm: Sequence[float],
    window_mm: float = PLACEMENT_WINDOW_MM,
) -> tuple[Shape3, Shape3]:
    """(start, size) voxels of the region around `centre`: per side, the larger of `reach_mm`
    and half the patch, plus `window_mm`."""
    half = np.maximum(margin_voxels(reach_mm, spacing_mm), (np.asarray(patch_size, int) + 1) // 2)
    half = half + margin_voxels(window_mm, spacing_mm)
    start = np.asarray(centre, int) - half
    return tuple(int(v) for v in start), tuple(int(v) for v in 2 * half)  # type: ignore[return-value]


def clip_region(
    start: Shape3, size: Shape3, image_shape: Shape3, patch_size: Shape3
) -> tuple[Shape3, Shape3]:
    """The region cut to the scan: outside it there is no tissue to synthesize into, and a
    padded region cost more to read than the tumor to make. Each axis stays at least as long
    as the patch (kept inside the scan where it fits, padded around a thinner scan)."""
    out_start, out_size = [], []
    for first, length, extent, patch in zip(start, size, image_shape, patch_size, strict=True):
        low, high = max(first, 0), min(first + length, extent)
        want = max(high - low, patch)
        if want <= extent:  # grow about the kept part, inside the scan
            low = int(np.clip(low - (want - (high - low)) // 2, 0, extent - want))
        else:  # the scan is thinner than the patch: the whole scan, centred in the patch
            low = -((want - extent) // 2)
        out_start.append(low)
        out_size.append(want)
    return tuple(out_start), tuple(out_size)  # type: ignore[return-value]


def region_masks(
    bits: np.ndarray, names: Sequence[str], organ: str, centre: Sequence[int]
) -> dict[str, BitMask]:
    """Masks of the named structures present in the region (absent ones are left out), decoded
    on demand (`BitMask`). A two-part organ (kidney) keeps only the part at `centre` (region
    voxel): the synthesizer would otherwise pick either side, often a sliver. The masks write
    into `bits` in place (the synthesizer changes only its crop)."""
    present = np.bitwise_or.reduce(bits, axis=None)
    at_centre = bits[tuple(int(c) for c in centre)]
    parts = ORGANS[organ].mask_part_files
    keep = [part for part in parts if at_centre & structure_bit(part)]
    dropped = set(parts) - set(keep) if keep else set()
    return {name: BitMask(bits, structure_bit(name), writeable=True) for name in names
            if name in STRUCTURE_BITS and name not in dropped and present & structure_bit(name)}


def write_back_bits(
    bits: np.ndarray, masks: Mapping[str, np.ndarray], box: tuple[slice, ...]
) -> np.ndarray:
    """A copy of `bits[box]` with every written mask's bit replaced by the (pushed / grown) mask,
    and two-sided organs' whole-organ bit (kidney) rebuilt from their parts. `BitMask`s are
    already right in `bits`: never written, or written in place."""
    out = np.array(bits[box], copy=True)
    for name, mask in masks.items():
        if isinstance(mask, BitMask):
            continue
        bit = structure_bit(name)
        out &= ~bit
        out |= mask[box].astype(np.uint64) * bit
    for organ in ORGANS.values():
        parts = organ.mask_part_files
        if any(part in masks for part in parts) and organ.name not in masks:
            any_part = np.uint64(0)
            for part in parts:
                any_part |= structure_bit(part)
            whole = structure_bit(organ.name)
            out &= ~whole
            np.bitwise_or(out, whole, out=out, where=(out & any_part) != 0)
    return out


def _region_affine(affine: np.ndarray, start: Shape3) -> np.ndarray:
    shift = np.eye(4)
    shift[:3, 3] = start
    return affine @ shift


def _patch_box(
    rng: np.random.Generator, record: TumorRecord | None, affine: np.ndarray,
    region_size: Shape3, patch_size: Shape3,
) -> tuple[slice, ...]:
    """The patch inside the region: centred on the tumor (clipped into the region) or random."""
    if record is None or record.skipped or record.params is None:
        start = random_start(rng, region_size, patch_size)
    else:
        centre = np.linalg.solve(affine, np.append(record.params.center_mm, 1.0))[:3]
        start = tuple(
            int(np.clip(round(c) - p // 2, min(0, n - p), max(0, n - p)))
            for c, n, p in zip(centre, region_size, patch_size, strict=True)
        )
    return tuple(slice(s, s + p) for s, p in zip(start, patch_size, strict=True))


def _case_phase(cache: PreprocessedCache, case_id: str) -> PhaseEstimate | None:
    """The contrast phase estimated on the whole case at preprocessing (None in caches made
    before it was recorded: the synthesizer then estimates it on the region)."""
    record = cache.case_meta(case_id).get("contrast_phase")
    return PhaseEstimate.from_record(record) if record else None


def synthesize_patch(
    cache: PreprocessedCache,
    case_id: str,
    patch_size: Shape3,
    organs: Sequence[str],
    rng: np.random.Generator,
    size_mix: Sequence[float] = DEFAULT_SIZE_MIX,
) -> SynthPatch:
    """A patch of healthy case `case_id` with one tumor synthesized into one of `organs` that the
    case has (chosen uniformly), its size class drawn from `size_mix` (small:medium:large)."""
    hosts = [organ for organ in organs if len(cache.foreground_locations(case_id, organ))]
    if not hosts:
        start = random_start(rng, cache.image_shape(case_id), patch_size)
        image, bits = cache.read_patch(case_id, start, patch_size)
        wanted = " / ".join(organs) if organs else "host organ (no confirmed control organ)"
        return SynthPatch(image, bits, None, None, f"no {wanted} in {case_id}")
    organ = hosts[int(rng.integers(len(hosts)))]
    locations = cache.foreground_locations(case_id, organ)
    centre = locations[int(rng.integers(len(locations)))]
    size_class = draw_size_class(rng, size_mix)
    spacing = cache.settings.preprocessing.spacing_mm
    start, size = region_box(centre, patch_size, max_reach_mm(organ, size_class), spacing)
    start, size = clip_region(start, size, cache.image_shape(case_id), patch_size)
    hu, bits = cache.read_region_hu(case_id, start, size)
    names = cache.case_meta(case_id)["synthesis_masks"]
    masks = region_masks(bits, names, organ, np.asarray(centre) - np.asarray(start))
    affine = _region_affine(cache.affine(case_id), start)
    ct = Volume(hu.astype(np.float32), affine)
    phase = _case_phase(cache, case_id)
    result = insert_tumors(ct, masks, organ, rng, count=1, size_mix={size_class: 1.0}, copy=False,
                           phase=phase)
    record = result.records[0]
    box = _patch_box(rng, record, affine, size, patch_size)
    patch_bits = write_back_bits(bits, result.masks, box)
    lesion = structure_bit(LESION_STRUCTURES[organ])
    np.bitwise_or(patch_bits, lesion, out=patch_bits, where=result.tumor_mask[box] != 0)
    image = scale_intensity(result.ct.array[box], cache.settings)
    return SynthPatch(image, patch_bits, organ, record, record.skipped)
