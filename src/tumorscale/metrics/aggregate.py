"""Aggregation over cases: mean, median and seeded percentile-bootstrap confidence intervals.

Resampling draws case indices with replacement from `numpy.random.default_rng(seed)` as one
(n_resamples, n_items) matrix, so the same seed gives identical intervals, and `summarize`'s
interval of the mean equals `bootstrap_ci` of the mean with the same seed.

    values = np.array(per_case_dsc)
    summarize(values, seed=0).to_dict()
    # a pooled metric: T-Sen over resampled cases
    detected = np.array([m.n_detected for m in matches])
    total = np.array([m.n_truth for m in matches])
    bootstrap_ci(lambda idx: detected[idx].sum() / total[idx].sum() if total[idx].sum() else None,
                 n_items=len(matches), seed=0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

MIN_VALID_FRACTION = 0.5  # fewer valid resamples than this and no interval is reported


def _check_bootstrap_args(n_resamples: int, level: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def resample_indices(n_items: int, seed: int, n_resamples: int) -> np.ndarray:
    """(n_resamples, n_items) item indices drawn with replacement, reproducibly from `seed`."""
    return np.random.default_rng(seed).integers(0, n_items, size=(n_resamples, n_items))


def _percentile_interval(estimates: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(estimates, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float | None],
    n_items: int,
    seed: int,
    n_resamples: int = 1000,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of `statistic` over items (cases) resampled with replacement.

    `statistic` receives an index array (length n_items, values in [0, n_items)) and returns a
    value or None where undefined (e.g. no tumor lesion among the drawn cases); None and NaN
    resamples are skipped. Returns None when n_items is 0 or under half the resamples are valid.
    """
    _check_bootstrap_args(n_resamples, level)
    if n_items <= 0:
        return None
    estimates = []
    for indices in resample_indices(n_items, seed, n_resamples):
        value = statistic(indices)
        if value is not None and math.isfinite(value):
            estimates.append(float(value))
    if len(estimates) < MIN_VALID_FRACTION * n_resamples:
        return None
    return _percentile_interval(np.asarray(estimates), level)


@dataclass(frozen=True)
class MetricSummary:
    """Mean, median and bootstrap interval of the mean over n cases; None fields when n = 0."""

    n: int
    mean: float | None
    median: float | None
    ci_low: float | None
    ci_high: float | None

    def to_dict(self) -> dict[str, int | float | None]:
        return asdict(self)


def summarize(
    values: Sequence[float] | np.ndarray,
    seed: int,
    n_resamples: int = 1000,
    level: float = 0.95,
) -> MetricSummary:
    """Summary of per-case values; the interval is the percentile bootstrap of the mean."""
    _check_bootstrap_args(n_resamples, level)
    array = np.asarray(values, dtype=float).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(
            f"values must be finite: {bad.size} are not, the first is {array[bad[0]]} "
            f"at index {bad[0]}"
        )
    if array.size == 0:
        return MetricSummary(0, None, None, None, None)
    # Vectorized: one mean per row of the index matrix.
    means = array[resample_indices(array.size, seed, n_resamples)].mean(axis=1)
    ci_low, ci_high = _percentile_interval(means, level)
    return MetricSummary(
        n=int(array.size),
        mean=float(array.mean()),
        median=float(np.median(array)),
        ci_low=ci_low,
        ci_high=ci_high,
    )
