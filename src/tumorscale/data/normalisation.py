"""nnU-Net's CT normalisation, measured on a preprocessed cache's training cases.

nnU-Net normalises CT with statistics of the training set's foreground (the voxels of the
labels it trains on): it samples 10^7 foreground voxels in all, split evenly over the cases and
drawn with replacement, then clips HU to the pooled sample's 0.5 and 99.5 percentiles and
z-scores with its mean and SD (frameworks-notes §1.3, §1.5). Both steps are a window and a
linear map, so the result is a `Preprocessing` record: the HU window is the percentile range
and the intensity range is where its ends land after z-scoring. Training reads patches
through it and the model file records it, so prediction applies the same numbers.

On the bench_learning phantom task it lifts `tiny`'s held-out DSC at 1,200 iterations from
0.61 / 0.80 (the [-175, 250] -> [0, 1] window; two seeds) to 0.79 / 0.83. It is opt-in: in the
demo's scaling study each run's window came from its own subset, and out-of-distribution DSC
fell (`benchmarks/RESULTS.md`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from tumorscale.data.cache import PreprocessedCache, structure_mask
from tumorscale.preprocessing import Preprocessing

TOTAL_SAMPLES = 10_000_000  # nnU-Net's foreground sample, split evenly over the cases
PERCENTILES = (0.5, 99.5)


def foreground_sample(
    cache: PreprocessedCache,
    case_ids: Sequence[str],
    structures: Sequence[str],
    seed: int = 0,
    total: int = TOTAL_SAMPLES,
) -> np.ndarray:
    """HU (float64) of `total` voxels drawn with replacement from the union of `structures`,
    the same number from each case that has any (so every case weighs the same); empty when
    none has. Cases whose metadata lists none of them are not read."""
    rng = np.random.default_rng(seed)
    per_case = max(1, total // max(len(case_ids), 1))
    samples = []
    for case_id in case_ids:
        if not any(cache.holds(case_id, name) for name in structures):
            continue  # e.g. a tumor-free control: reading it would find nothing
        hu, bits = cache.read_case_hu(case_id)
        foreground = np.zeros(hu.shape, dtype=bool)
        for name in structures:
            foreground |= structure_mask(bits, name)
        values = hu[foreground]
        if values.size:
            samples.append(rng.choice(values, per_case, replace=True))
    if not samples:
        return np.zeros(0, dtype=np.float64)
    return np.concatenate(samples).astype(np.float64)


def ct_normalisation(base: Preprocessing, foreground_hu: np.ndarray) -> Preprocessing:
    """`base` (its spacing kept) with nnU-Net's CT normalisation of `foreground_hu`: the window
    is the sample's [0.5, 99.5] percentile range, the intensity range its ends z-scored."""
    values = np.asarray(foreground_hu, dtype=np.float64)
    if values.size < 2:
        raise ValueError("CT normalisation needs foreground voxels; none were found")
    low, high = (float(v) for v in np.percentile(values, PERCENTILES))
    mean, sd = float(values.mean()), float(values.std())
    if not high > low or sd <= 0:
        raise ValueError(
            f"CT normalisation needs a foreground with spread; its HU are all {mean:.1f}"
        )
    return replace(base, hu_window=(low, high),
                   intensity_range=((low - mean) / sd, (high - mean) / sd))  # fmt: skip
