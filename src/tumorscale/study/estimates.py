"""Numbers with their bootstrap intervals: the value types of a study fit and how they are made.

Every interval is a 95% percentile interval of the finite bootstrap replicates, undefined (None)
when under half of them are finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tumorscale.metrics.aggregate import MIN_VALID_FRACTION

CI_LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A number with its 95% bootstrap interval (None where undefined)."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass(frozen=True)
class NEstimate(Estimate):
    """A number of real scans; `extrapolated` when the value lies outside the measured n range,
    `ci_extrapolated` when either interval end does."""

    extrapolated: bool | None = None
    ci_extrapolated: bool | None = None
    measured_range: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, object]:
        extra = {"extrapolated": self.extrapolated, "ci_extrapolated": self.ci_extrapolated}
        measured = None if self.measured_range is None else list(self.measured_range)
        return super().to_dict() | extra | {"measured_range": measured}


@dataclass(frozen=True)
class CurvePoint:
    """One measured point of a curve: the seed mean at `n_real` real scans, with its interval."""

    n_real: int
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n_seeds: int


def finite_or_none(x: float | None) -> float | None:
    """x as a float, or None when missing or not finite."""
    return float(x) if x is not None and math.isfinite(x) else None


def interval(replicates: np.ndarray) -> tuple[float | None, float | None]:
    """Percentile interval of the finite replicates; None when under half are finite."""
    finite = replicates[np.isfinite(replicates)]
    if replicates.size == 0 or finite.size < MIN_VALID_FRACTION * replicates.size:
        return None, None
    tail = (1.0 - CI_LEVEL) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)


def estimate(point: float, replicates: np.ndarray) -> Estimate:
    """A point value with the interval of its bootstrap replicates."""
    return Estimate(finite_or_none(point), *interval(replicates))


def n_estimate(point: float, replicates: np.ndarray, n_range: tuple[int, int]) -> NEstimate:
    """A real-scan count with its interval, flagged where it lies outside `n_range`."""
    low, high = interval(replicates)
    value = finite_or_none(point)

    def outside(x: float | None) -> bool:
        return x is not None and not n_range[0] <= x <= n_range[1]

    extrapolated = None if value is None else outside(value)
    ci_extrapolated = None if low is None else outside(low) or outside(high)
    return NEstimate(value, low, high, extrapolated, ci_extrapolated, n_range)
