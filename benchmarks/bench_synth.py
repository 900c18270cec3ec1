"""Tumor synthesis speed: time per tumor for each organ and size class, one core.

Phantom: `generate_phantom(0, 1, ...)` (female, no reference tumors) at 0.8×0.8×1.0 mm, placed on
a 512×512×300 grid (air padding in-plane; of its ~356 slices, the 300 that keep most of every
organ: the esophagus at the top and the uterus near the bottom each lose a little).
For each organ and size class (small < 20 mm, medium 20-50 mm, large > 50 mm) it times:
- insert: `insert_tumors(..., count=1, copy=False)` with the size mix forcing the class
  (drawing the parameters + applying them in place; what an on-the-fly data loader calls), on
  fresh copies of the arrays made outside the timing;
- apply: `apply_tumor(params, ..., copy=False)` alone, parameters drawn beforehand;
- +copy: `insert_tumors` with the default copy=True (it first copies the whole CT);
- patch: `insert_tumors(copy=False)` on a 96³ patch (CT + masks cropped around the organ), the
  training situation.
Baseline measured in the same run: the naive approach of public code (SynTumor-style) that
filters the whole volume: a full-volume ellipsoid mask blurred with `scipy.ndimage.gaussian_filter`
plus a full-volume Gaussian-filtered noise texture, composited into the CT. It is timed on the
512×512×300 volume (against insert/apply) and on the 96³ patch (against patch).
Figures are medians over `--repeats` (different seeds). Targets: small ≤ 50 ms, large ≤ 300 ms,
96³ patch ≤ 30 ms.

    python benchmarks/bench_synth.py [--repeats 5] [--organs liver,pancreas]
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
from scipy import ndimage  # noqa: E402

from tumorscale.io import Volume  # noqa: E402
from tumorscale.organs import ORGANS, TUMOR_ORGANS  # noqa: E402
from tumorscale.phantom import PhantomOptions, generate_phantom  # noqa: E402
from tumorscale.synth import apply_tumor, insert_tumors, sample_params  # noqa: E402
from tumorscale.synth.types import SIZE_CLASSES  # noqa: E402

SHAPE = (512, 512, 300)
PATCH = 96
MIXES = {"small": (1.0, 0.0, 0.0), "medium": (0.0, 1.0, 0.0), "large": (0.0, 0.0, 1.0)}
TARGET_MS = {"small": 50.0, "medium": None, "large": 300.0}
PATCH_TARGET_MS = 30.0


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


def naive_insert(ct: np.ndarray, spacing, centre_voxel, diameter_mm: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Public-code style: full-volume mask, full-volume Gaussian blur and texture, composite."""
    grid = np.ogrid[tuple(slice(0, n) for n in ct.shape)]
    distance2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre_voxel, spacing, strict=True))
    mask = (distance2 <= (diameter_mm / 2) ** 2).astype(np.float32)
    blurred = ndimage.gaussian_filter(mask, sigma=[1.0 / s for s in spacing])
    texture = ndimage.gaussian_filter(rng.standard_normal(ct.shape, dtype=np.float32),
                                      sigma=[3.0 / s for s in spacing])
    texture /= max(float(texture.std()), 1e-6)
    return ct + blurred * (-40.0 + 8.0 * texture)


def fresh(ct: Volume, masks: dict[str, np.ndarray]) -> tuple[Volume, dict[str, np.ndarray]]:
    """Private copies, so in-place insertion (copy=False) never accumulates tumors."""
    return ct.with_array(ct.array.copy()), {name: mask.copy() for name, mask in masks.items()}


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1e3


def median_ms(repeats: int, make: Callable[[int], Callable[[], object] | None]) -> float:
    """Median time of `make(seed)()` over seeds; a seed whose `make` gives None is left out."""
    warm_up = make(10_000)  # imports, caches
    if warm_up is not None:
        warm_up()
    times = [timed(run) for seed in range(repeats) if (run := make(seed)) is not None]
    return statistics.median(times) if times else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--organs", default=",".join(TUMOR_ORGANS))
    args = parser.parse_args()
    organs = [o for o in args.organs.split(",") if o]

    start = time.perf_counter()
    ct, masks = build_phantom()
    print(f"phantom {ct.shape} at {tuple(round(s, 3) for s in ct.spacing)} mm "
          f"(built in {time.perf_counter() - start:.1f} s); one core; medians of {args.repeats}")

    centre = np.asarray(ct.shape) / 2
    naive_full = median_ms(
        max(1, min(args.repeats, 3)),
        lambda seed: lambda: naive_insert(ct.array, ct.spacing, centre, 30.0,
                                          np.random.default_rng(seed)),
    )
    patch_ct, _ = crop_patch(ct, masks, organs[0])
    naive_patch = median_ms(
        args.repeats,
        lambda seed: lambda: naive_insert(patch_ct.array, patch_ct.spacing, [PATCH / 2] * 3, 30.0,
                                          np.random.default_rng(seed)),
    )
    print(f"naive full-volume baseline: {naive_full:.0f} ms per tumor on 512x512x300, "
          f"{naive_patch:.1f} ms on a 96^3 patch")
    print()
    header = (f"{'organ':10} {'size':7} {'insert ms':>10} {'apply ms':>9} {'target':>9} "
              f"{'naive/insert':>13} {'+copy ms':>9} {'patch ms':>9} {'naive/patch':>12}  "
              f"skipped")
    print(header)
    print("-" * len(header))
    for organ in organs:
        patch, patch_masks = crop_patch(ct, masks, organ)
        for size_class in SIZE_CLASSES:
            mix = MIXES[size_class]
            skipped: list[str] = []
            patch_skipped: list[str] = []

            def insert(seed: int, mix=mix, skipped=skipped, organ=organ):
                # The loader fast path (copy=False) on fresh arrays copied outside the timing.
                ct_copy, masks_copy = fresh(ct, masks)

                def run():
                    result = insert_tumors(ct_copy, masks_copy, organ,
                                           np.random.default_rng(seed), count=1, size_mix=mix,
                                           copy=False)
                    skipped.extend(r.skipped for r in result.records if r.skipped)
                return run

            def insert_copying(seed: int, mix=mix, organ=organ):
                return lambda: insert_tumors(ct, masks, organ, np.random.default_rng(seed),
                                             count=1, size_mix=mix)

            def apply(seed: int, organ=organ, size_class=size_class):
                params = sample_params(organ, ct, masks, np.random.default_rng(seed),
                                       size_class=size_class)
                if isinstance(params, str):
                    return None  # nothing to apply: left out of the median
                ct_copy, masks_copy = fresh(ct, masks)
                return lambda: apply_tumor(params, ct_copy, masks_copy, copy=False)

            def in_patch(seed: int, mix=mix, organ=organ, patch=patch, patch_masks=patch_masks,
                         skipped=patch_skipped):
                patch_copy, masks_copy = fresh(patch, patch_masks)

                def run():
                    result = insert_tumors(patch_copy, masks_copy, organ,
                                           np.random.default_rng(seed), count=1, size_mix=mix,
                                           copy=False)
                    skipped.extend(r.skipped for r in result.records if r.skipped)
                return run

            insert_ms = median_ms(args.repeats, insert)
            apply_ms = median_ms(args.repeats, apply)
            copying_ms = median_ms(max(1, min(args.repeats, 3)), insert_copying)
            patch_ms = median_ms(args.repeats, in_patch)
            target = TARGET_MS[size_class]
            mark = "" if target is None else ("ok" if insert_ms <= target else "MISS")
            target_text = "-" if target is None else f"{target:.0f}"
            patch_mark = "ok" if patch_ms <= PATCH_TARGET_MS else "MISS"
            reasons = sorted(set(skipped + patch_skipped))
            print(f"{organ:10} {size_class:7} {insert_ms:10.1f} {apply_ms:9.1f} "
                  f"{target_text:>4} {mark:4} x{naive_full / insert_ms:12.0f} {copying_ms:9.1f} "
                  f"{patch_ms:6.1f} {patch_mark:4} x{naive_patch / patch_ms:9.1f}  "
                  f"{len(skipped)}/{len(patch_skipped)}"
                  f"{': ' + '; '.join(reasons)[:70] if reasons else ''}",
                  flush=True)
    print()
    print("insert: insert_tumors(count=1, copy=False) on a fresh copy (the data-loader path);")
    print("apply: apply_tumor on drawn parameters; +copy ms: insert_tumors with copy=True (copies")
    print("the 512x512x300 CT first); patch: insert into a 96^3 patch. naive/x: the full-volume")
    print("baseline time over ours (higher is better). skipped: insert / patch calls (of 6:")
    print("warm-up + repeats) that placed nothing.")


if __name__ == "__main__":
    main()
