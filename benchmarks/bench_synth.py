"""Tumor synthesis speed against an anchor-style baseline, per organ and size class, one thread.

Phantom: `generate_phantom(0, 1, ...)` (female, no reference tumors) at 0.8×0.8×1.0 mm, placed on
a 512×512×300 grid (air padding in-plane; of its ~356 slices, the 300 that keep most of every
organ: the esophagus at the top and the uterus near the bottom each lose a little).
For each organ and size class (small < 20 mm, medium 20-50 mm, large > 50 mm) it times, in
interleaved pairs (same seed, order alternating, one untimed warm-up pair; medians of `--pairs`):
- ours: `insert_tumors(..., count=1, copy=False)` with the size mix forcing the class (drawing the
  parameters + applying them in place; what an on-the-fly data loader calls), on fresh copies of
  the arrays made outside the timing;
- anchor: `anchor_style_synth.anchor_insert` (a faithful model of the public SyntheticTumors
  generator's cost, written from facts, see that module), one tumor per call, on a fresh CT +
  organ label map; its once-per-process texture is made before any timing and reported apart.
Both on the whole 512×512×300 volume and on a 96³ crop around the organ (its largest piece: one
kidney), the crop a training data loader would use. Ratio = anchor / ours (higher = we are
faster). Also, outside the pairs: apply (`apply_tumor(params, ..., copy=False)` alone, parameters
drawn beforehand) and +copy (`insert_tumors` with the default copy=True, which copies the CT).
Size classes are matched: the anchor draws its equivalent diameter uniformly from the organ's own
range (`PROFILES[organ].diameter_mm`) for liver / pancreas / kidney, and from 10-19 / 22-46 /
53-72 mm for colon / esophagus / uterus. The anchor puts an ellipsoid into every organ's mask (it
has no hollow-organ or uterus logic: fine for speed, not realistic tumors).
Then, per organ: our mean time over the size classes relative to the parenchymal organs' mean
(target: hollow organs and uterus within 2×), and the anchor's fixed cost per call (0 tumors).
Targets: small ≤ 50 ms, large ≤ 300 ms, 96³ crop ≤ 30 ms.

    python benchmarks/bench_synth.py [--pairs 7] [--quick] [--organs liver,pancreas]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_variable] = "1"  # one core, set before numpy is imported

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import cc3d  # noqa: E402
import numpy as np  # noqa: E402

# benchmarks/ is on sys.path (the script's folder)
from anchor_style_synth import (  # noqa: E402
    AnchorTexture,
    anchor_insert,
    bounding_box,
    precompute_texture,
)
from scipy import ndimage  # noqa: E402

from tumorscale.io import Volume  # noqa: E402
from tumorscale.organs import ORGANS, TUMOR_ORGANS  # noqa: E402
from tumorscale.phantom import PhantomOptions, generate_phantom  # noqa: E402
from tumorscale.sizes import SIZE_CLASS_NAMES  # noqa: E402
from tumorscale.synth import NoRoom, apply_tumor, insert_tumors, sample_params  # noqa: E402
from tumorscale.synth.profiles import PARENCHYMAL_ORGANS, PROFILES  # noqa: E402

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # the environment variables above still hold numpy / scipy to one thread
    threadpool_limits = None
else:
    threadpool_limits(limits=1)

SHAPE = (512, 512, 300)
PATCH = 96
MIXES = {"small": (1.0, 0.0, 0.0), "medium": (0.0, 1.0, 0.0), "large": (0.0, 0.0, 1.0)}
TARGET_MS = {"small": 50.0, "medium": None, "large": 300.0}
PATCH_TARGET_MS = 30.0
WARM_UP_SEED = 10_000
# Anchor diameters for the organs without a parenchymal profile (equivalent diameter, mm).
OTHER_DIAMETER_MM = {"small": (10.0, 19.0), "medium": (22.0, 46.0), "large": (53.0, 72.0)}


def organ_mask(masks: dict[str, np.ndarray], organ: str) -> np.ndarray:
    entry = ORGANS[organ]
    names = [n for n in entry.mask_files if n in masks] or [
        n for n in entry.mask_part_files if n in masks
    ]
    union = np.zeros(next(iter(masks.values())).shape, bool)
    for name in names:
        union |= masks[name].astype(bool)
    return union


def build_phantom() -> tuple[Volume, dict[str, np.ndarray]]:
    """The benchmark phantom: canonical (RAS) CT and masks on a 512×512×300 grid at 0.8×0.8×1.0."""
    options = PhantomOptions(inplane_spacing_mm=(0.8, 0.8), slice_spacing_mm=(1.0, 1.0),
                             female_fraction=1.0, tumor_fraction=0.0, orientations=("RAS",))
    case = generate_phantom(0, 1, options)
    ct = case.ct.to_canonical()
    masks = {
        name: Volume(np.asarray(case.masks[name]), case.ct.affine).to_canonical().array
        for name in case.masks
        if not name.endswith("_lesion")
    }
    # Fit the grid to 512×512×300: pad (air) or crop in-plane around the centre; along z keep the
    # 300 slices that keep the largest share of the least-kept organ (the phantom spans ~356 mm:
    # esophagus at the top, uterus near the bottom).
    extents = []
    for organ in TUMOR_ORGANS:
        rows = np.flatnonzero(organ_mask(masks, organ).any(axis=(0, 1)))
        extents.append((rows[0], rows[-1] + 1))

    def kept(start: int) -> float:
        return min((min(high, start + SHAPE[2]) - max(low, start)) / (high - low)
                   for low, high in extents)

    z_start = max(range(max(1, ct.shape[2] - SHAPE[2] + 1)), key=kept)
    starts = [(ct.shape[0] - SHAPE[0]) // 2, (ct.shape[1] - SHAPE[1]) // 2, z_start]
    if ct.shape[2] < SHAPE[2]:
        starts[2] = (ct.shape[2] - SHAPE[2]) // 2

    def refit(array: np.ndarray, fill: float) -> np.ndarray:
        out = np.full(SHAPE, fill, dtype=array.dtype)
        source, target = [], []
        for axis in range(3):
            low = max(starts[axis], 0)
            high = min(starts[axis] + SHAPE[axis], array.shape[axis])
            source.append(slice(low, high))
            target.append(slice(low - starts[axis], high - starts[axis]))
        out[tuple(target)] = array[tuple(source)]
        return out

    shift = np.eye(4)
    shift[:3, 3] = starts
    affine = np.asarray(ct.affine) @ shift
    ct_array = refit(np.asarray(ct.array, dtype=np.float32), -1000.0)
    return (Volume(ct_array, affine),
            {name: refit(mask, 0) for name, mask in masks.items()})


def crop_patch(ct: Volume, masks: dict[str, np.ndarray], organ: str,
               size: int = PATCH) -> tuple[Volume, dict[str, np.ndarray]]:
    """A size³ patch (CT and masks) centred on the organ's largest piece (one kidney)."""
    largest = cc3d.largest_k(organ_mask(masks, organ), k=1, connectivity=26) > 0
    centre = np.round(ndimage.center_of_mass(largest)).astype(int)
    start = np.clip(centre - size // 2, 0, np.asarray(ct.shape) - size)
    box = tuple(slice(int(s), int(s) + size) for s in start)
    shift = np.eye(4)
    shift[:3, 3] = start
    patch = Volume(np.ascontiguousarray(ct.array[box]), np.asarray(ct.affine) @ shift)
    return patch, {name: np.ascontiguousarray(mask[box]) for name, mask in masks.items()}


def fresh(ct: Volume, masks: dict[str, np.ndarray]) -> tuple[Volume, dict[str, np.ndarray]]:
    """Private copies, so in-place insertion (copy=False) never accumulates tumors."""
    return ct.with_array(ct.array.copy()), {name: mask.copy() for name, mask in masks.items()}


def anchor_diameter_range(organ: str, size_class: str) -> tuple[float, float]:
    """The anchor's equivalent-diameter range for a size class, matched to ours (see docstring)."""
    if organ in PROFILES:
        return PROFILES[organ].diameter_mm[size_class]
    return OTHER_DIAMETER_MM[size_class]


def label_map(masks: dict[str, np.ndarray], organ: str) -> np.ndarray:
    """The anchor's input: a uint8 label map with the organ as 1 (what its loader hands it)."""
    return organ_mask(masks, organ).astype(np.uint8)


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1e3


def ours_run(ct: Volume, masks: dict[str, np.ndarray], organ: str, seed: int,
             mix: tuple[float, float, float], skipped: list[str]) -> Callable[[], None]:
    """`insert_tumors(count=1, copy=False)` (the data-loader path) on copies made outside timing."""
    ct_copy, masks_copy = fresh(ct, masks)

    def run() -> None:
        result = insert_tumors(ct_copy, masks_copy, organ, np.random.default_rng(seed), count=1,
                               size_mix=mix, copy=False)
        skipped.extend(r.skipped for r in result.records if r.skipped)
    return run


def anchor_run(ct: Volume, label: np.ndarray, texture: AnchorTexture, seed: int,
               diameters: tuple[float, float], count: int = 1) -> Callable[[], None]:
    """The anchor-style baseline on copies (CT + label map) made outside timing."""
    ct_copy, label_copy = ct.array.copy(), label.copy()
    spacing = tuple(ct.spacing)

    def run() -> None:
        anchor_insert(ct_copy, label_copy, texture, spacing, diameters,
                      np.random.default_rng(seed), count=count)
    return run


def interleaved_pairs(pairs: int, make_ours: Callable[[int], Callable[[], None]],
                      make_anchor: Callable[[int], Callable[[], None]]) -> tuple[float, float]:
    """Median ms of ours and of the anchor, timed in interleaved pairs (same seed per pair, the
    order alternating), after one untimed warm-up pair."""
    ours_ms: list[float] = []
    anchor_ms: list[float] = []
    for index in range(-1, pairs):
        seed = WARM_UP_SEED if index < 0 else index
        order = ("ours", "anchor") if index % 2 == 0 else ("anchor", "ours")
        for who in order:
            if who == "ours":
                elapsed = timed(make_ours(seed))
                if index >= 0:
                    ours_ms.append(elapsed)
            else:
                elapsed = timed(make_anchor(seed))
                if index >= 0:
                    anchor_ms.append(elapsed)
    return statistics.median(ours_ms), statistics.median(anchor_ms)


def median_ms(repeats: int, make: Callable[[int], Callable[[], object] | None]) -> float:
    """Median time of `make(seed)()` over seeds; a seed whose `make` gives None is left out."""
    warm_up = make(WARM_UP_SEED)
    if warm_up is not None:
        warm_up()
    del warm_up  # its private copies of the volume are freed before the next are made
    times = []
    for seed in range(repeats):
        run = make(seed)
        if run is not None:
            times.append(timed(run))
        del run  # one set of private copies at a time (each holds the CT and every mask)
    return statistics.median(times) if times else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=7,
                        help="interleaved ours/anchor pairs per cell (median; default 7)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 pair per cell, no apply / +copy columns")
    parser.add_argument("--organs", default=",".join(TUMOR_ORGANS))
    args = parser.parse_args()
    organs = [o for o in args.organs.split(",") if o]
    pairs = 1 if args.quick else max(1, args.pairs)
    extras = not args.quick

    start = time.perf_counter()
    ct, masks = build_phantom()
    threads = "one thread (env" + (", threadpoolctl)" if threadpool_limits else ")")
    print(f"phantom {ct.shape} at {tuple(round(s, 3) for s in ct.spacing)} mm "
          f"(built in {time.perf_counter() - start:.1f} s); {threads}; medians of {pairs} "
          f"interleaved pairs (+1 warm-up)")

    # The anchor's once-per-process texture, large enough for the largest organ box.
    labels = {organ: label_map(masks, organ) for organ in organs}
    boxes = [bounding_box(labels[organ] > 0) for organ in organs]
    extent = np.max([[s.stop - s.start for s in box] for box in boxes if box is not None], axis=0)
    texture = precompute_texture(np.maximum(extent, PATCH))
    print(f"anchor one-time texture: {texture.array.shape} float32, "
          f"{texture.nbytes / 2**20:.0f} MiB, {texture.seconds:.2f} s once per process "
          f"(outside the timings; the public one is ~70 s and 3.1 GB)")
    print()

    head = (f"{'':18}|{'full volume 512x512x300':^42}|{'':19}|{'96^3 crop':^35}|")
    header = (f"{'organ':10} {'size':7} | {'ours ms':>8} {'anchor ms':>9} {'ratio':>6} "
              f"{'target':>9}   | {'apply ms':>8} {'+copy ms':>8} | {'ours ms':>8} "
              f"{'anchor ms':>9} {'ratio':>6} {'tgt':>6}  | skipped")
    print(head)
    print(header)
    print("-" * len(header))
    ours_full: dict[str, list[float]] = {}
    ours_patch: dict[str, list[float]] = {}
    anchor_fixed: dict[str, tuple[float, float]] = {}
    ratios_full: list[float] = []
    ratios_patch: list[float] = []
    for organ in organs:
        patch, patch_masks = crop_patch(ct, masks, organ)
        patch_label = label_map(patch_masks, organ)
        # The anchor's fixed cost per call (count=0: organ mask, box, crop, write-back).
        anchor_fixed[organ] = (
            median_ms(pairs, lambda seed, organ=organ: anchor_run(
                ct, labels[organ], texture, seed, (10.0, 10.0), count=0)),
            median_ms(pairs, lambda seed, patch=patch, patch_label=patch_label: anchor_run(
                patch, patch_label, texture, seed, (10.0, 10.0), count=0)),
        )
        for size_class in SIZE_CLASS_NAMES:
            mix = MIXES[size_class]
            diameters = anchor_diameter_range(organ, size_class)
            skipped: list[str] = []
            patch_skipped: list[str] = []
            full_ours, full_anchor = interleaved_pairs(
                pairs,
                lambda seed, organ=organ, mix=mix, skipped=skipped: ours_run(
                    ct, masks, organ, seed, mix, skipped),
                lambda seed, organ=organ, diameters=diameters: anchor_run(
                    ct, labels[organ], texture, seed, diameters),
            )
            crop_ours, crop_anchor = interleaved_pairs(
                pairs,
                lambda seed, organ=organ, mix=mix, patch=patch, patch_masks=patch_masks,
                skipped=patch_skipped: ours_run(patch, patch_masks, organ, seed, mix, skipped),
                lambda seed, patch=patch, patch_label=patch_label, diameters=diameters:
                anchor_run(patch, patch_label, texture, seed, diameters),
            )
            apply_text = copy_text = "-"
            if extras:

                def apply(seed: int, organ=organ, size_class=size_class):
                    try:
                        params = sample_params(organ, ct, masks, np.random.default_rng(seed),
                                               size_class=size_class)
                    except NoRoom:
                        return None  # nothing to apply: left out of the median
                    ct_copy, masks_copy = fresh(ct, masks)
                    return lambda: apply_tumor(params, ct_copy, masks_copy, copy=False)

                def insert_copying(seed: int, mix=mix, organ=organ):
                    return lambda: insert_tumors(ct, masks, organ, np.random.default_rng(seed),
                                                 count=1, size_mix=mix)

                apply_text = f"{median_ms(pairs, apply):.1f}"
                copy_text = f"{median_ms(max(1, min(pairs, 3)), insert_copying):.1f}"
            ours_full.setdefault(organ, []).append(full_ours)
            ours_patch.setdefault(organ, []).append(crop_ours)
            # Most of ours' calls placed nothing: it did less work, the ratio is not like for like.
            flag_full = "*" if len(skipped) > (pairs + 1) / 2 else " "
            flag_patch = "*" if len(patch_skipped) > (pairs + 1) / 2 else " "
            if flag_full == " ":
                ratios_full.append(full_anchor / full_ours)
            if flag_patch == " ":
                ratios_patch.append(crop_anchor / crop_ours)
            target = TARGET_MS[size_class]
            mark = "" if target is None else ("ok" if full_ours <= target else "MISS")
            target_text = "-" if target is None else f"{target:.0f}"
            patch_mark = "ok" if crop_ours <= PATCH_TARGET_MS else "MISS"
            reasons = sorted(set(skipped + patch_skipped))
            print(f"{organ:10} {size_class:7} | {full_ours:8.1f} {full_anchor:9.1f} "
                  f"{full_anchor / full_ours:6.2f}{flag_full}{target_text:>4} {mark:4}  | "
                  f"{apply_text:>8} {copy_text:>8} | {crop_ours:8.1f} {crop_anchor:9.1f} "
                  f"{crop_anchor / crop_ours:6.2f}{flag_patch}{PATCH_TARGET_MS:2.0f} "
                  f"{patch_mark:4} | "
                  f"{len(skipped)}/{len(patch_skipped)}"
                  f"{': ' + '; '.join(reasons)[:60] if reasons else ''}",
                  flush=True)
    print()
    def geometric_mean(values: list[float]) -> str:
        return f"{statistics.geometric_mean(values):.2f}" if values else "-"

    print(f"ratio = anchor ms / ours ms (higher = we are faster); geometric mean "
          f"{geometric_mean(ratios_full)} full volume, {geometric_mean(ratios_patch)} 96^3 crop,")
    print("without the cells marked *: there ours placed nothing in most calls (no room for that")
    print("size in the organ or crop), so it did less work than the anchor and the ratio is not")
    print("like for like.")
    print("ours: insert_tumors(count=1, copy=False) on fresh copies (the data-loader path);")
    print("anchor: benchmarks/anchor_style_synth.py, one tumor per call, same size bins;")
    print("apply: apply_tumor on drawn parameters; +copy: insert_tumors with copy=True (copies the")
    print("CT first); skipped: full / crop calls of ours (warm-up included) that placed nothing")
    print("(their time is still counted), of 1 warm-up + the pairs.")

    parenchymal = [o for o in PARENCHYMAL_ORGANS if o in ours_full]
    print()
    print("per organ, ours (mean over the three size classes) relative to the parenchymal mean;")
    print("target: hollow organs and uterus within 2x (skipped calls, fast, are in these means);")
    print("anchor fixed = the anchor's cost per call with 0 tumors (organ mask, box, crop,")
    print("write-back)")
    summary = (f"{'organ':10} | {'full ms':>8} {'x par.':>6} | {'crop ms':>8} {'x par.':>6} | "
               f"{'anchor fixed full':>17} {'crop':>6}")
    print(summary)
    print("-" * len(summary))
    mean_full = {o: statistics.fmean(v) for o, v in ours_full.items()}
    mean_patch = {o: statistics.fmean(v) for o, v in ours_patch.items()}
    par_full = statistics.fmean(mean_full[o] for o in parenchymal) if parenchymal else float("nan")
    par_patch = (statistics.fmean(mean_patch[o] for o in parenchymal) if parenchymal
                 else float("nan"))
    for organ in organs:
        rel_full = mean_full[organ] / par_full
        rel_patch = mean_patch[organ] / par_patch
        flag = ""
        if organ not in PARENCHYMAL_ORGANS:
            flag = "ok" if max(rel_full, rel_patch) <= 2.0 else "MISS"
        print(f"{organ:10} | {mean_full[organ]:8.1f} {rel_full:6.2f} | "
              f"{mean_patch[organ]:8.1f} {rel_patch:6.2f} | {anchor_fixed[organ][0]:17.1f} "
              f"{anchor_fixed[organ][1]:6.1f}  {flag}")


if __name__ == "__main__":
    main()
