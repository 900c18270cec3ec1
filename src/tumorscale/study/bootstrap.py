"""The bootstrap of a study's curves: run × case sums per test set, resampled jointly.

For every curve the per-n values are the mean over seeds of each run's pooled metric
(`metrics.pooled`). A 95% percentile-bootstrap resamples, jointly,

- test cases: case ids drawn with replacement within each test set, the same draw for every run
  of that test set, so curves of different conditions stay paired;
- seeds: seed labels drawn with replacement, the same draw for every (condition, n).

Each resample's curve is refitted (`law.fit_many`, all resamples at once), giving replicate
parameters and the pointwise band of the fitted curve.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tumorscale.metrics.pooled import POOLED_METRICS, cell_number, cell_text, pooled_terms
from tumorscale.study.estimates import CurvePoint, NEstimate, finite_or_none, interval, n_estimate
from tumorscale.study.law import (
    PowerLawFit,
    fit_log_linear,
    fit_many,
    fit_saturating_power_law,
    log_linear_slopes,
    n_at_fraction,
    power_law,
)

BAND_POINTS = 40
Row = Mapping[str, object]


@dataclass(frozen=True)
class RunKey:
    """One training run as its per-case rows name it."""

    run_id: str
    n_real: int
    synthetic_ratio: float
    seed: int


@dataclass
class CaseSums:
    """Per-run, per-case sums of one test set: terms[metric] = (num, den), each (runs, cases)."""

    runs: list[RunKey]
    case_ids: list[str]
    terms: dict[str, tuple[np.ndarray, np.ndarray]]


def run_key(row: Row) -> RunKey:
    """The run a per-case row belongs to (CSV strings or numbers)."""
    return RunKey(
        run_id=cell_text(row["run_id"]),
        n_real=int(cell_number(row["n_real"])),
        synthetic_ratio=float(cell_number(row["synthetic_ratio"])),
        seed=int(cell_number(row["seed"])),
    )


def case_sums(rows: Sequence[Row]) -> CaseSums:
    """The pooled-metric terms of one test set's rows, summed per run and case."""
    runs = sorted(
        {run_key(row) for row in rows},
        key=lambda k: (k.synthetic_ratio, k.n_real, k.seed, k.run_id),
    )
    case_ids = sorted({cell_text(row["case_id"]) for row in rows})
    run_index = {key: i for i, key in enumerate(runs)}
    case_index = {case: j for j, case in enumerate(case_ids)}
    shape = (len(runs), len(case_ids))
    terms = {metric: (np.zeros(shape), np.zeros(shape)) for metric in POOLED_METRICS}
    for row in rows:
        i, j = run_index[run_key(row)], case_index[cell_text(row["case_id"])]
        for metric, (num, den) in pooled_terms(row).items():
            terms[metric][0][i, j] += num
            terms[metric][1][i, j] += den
    return CaseSums(runs, case_ids, terms)


def _counts(rng: np.random.Generator, n_resamples: int, n_items: int) -> np.ndarray:
    """(n_resamples, n_items) how often each item is drawn in a resample with replacement."""
    draws = rng.integers(0, n_items, size=(n_resamples, n_items))
    counts = np.zeros((n_resamples, n_items))
    np.add.at(counts, (np.repeat(np.arange(n_resamples), n_items), draws.ravel()), 1.0)
    return counts


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _seed_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over the last axis ignoring NaN; uniform weights where a row drew none."""
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    w = weights * finite
    uniform = finite.astype(float)
    w = np.where(w.sum(-1, keepdims=True) > 0, w, uniform)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (w * filled).sum(-1) / w.sum(-1)


@dataclass(frozen=True)
class Curve:
    """Measured values of one curve: point estimates (P,) and bootstrap replicates (B, P)."""

    n: np.ndarray
    point: np.ndarray
    replicates: np.ndarray
    n_seeds: list[int]
    label_free: CurvePoint | None = None  # n = 0, kept out of every fit


@dataclass(frozen=True)
class CurveParams:
    """Point and replicate parameters of one curve's law."""

    fit: PowerLawFit
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray


def fit_curve_params(curve: Curve) -> CurveParams:
    """The law fitted to the curve's points, and to every resample (NaN where it did not
    converge)."""
    fit = fit_saturating_power_law(curve.n, curve.point)
    weights = np.isfinite(curve.replicates).astype(float)
    y = np.where(weights > 0, curve.replicates, 0.0)
    if curve.replicates.shape[0] == 0 or not fit.converged:
        nan = np.full(curve.replicates.shape[0], np.nan)
        return CurveParams(fit, nan, nan, nan)
    a, b, c = fit_many(curve.n, y, weights)
    return CurveParams(fit, a, b, c)


def band(curve: Curve, params: CurveParams, points: int = BAND_POINTS) -> dict[str, list]:
    """The fitted curve at log-spaced n over the measured range, with pointwise intervals of
    the bootstrap curves (not the envelope of the parameter intervals)."""
    n = np.geomspace(curve.n[0], curve.n[-1], points)
    replicates = power_law(n[None, :], params.a[:, None], params.b[:, None], params.c[:, None])
    intervals = [interval(replicates[:, j]) for j in range(points)]
    return {
        "n_real": [float(v) for v in n],
        "value": [finite_or_none(v) for v in params.fit.predict(n)],
        "ci_low": [low for low, _ in intervals],
        "ci_high": [high for _, high in intervals],
    }


def measured_points(curve: Curve) -> list[CurvePoint]:
    """The measured points of a curve, each with its bootstrap interval."""
    points = []
    for j, n in enumerate(curve.n):
        low, high = interval(curve.replicates[:, j])
        value = finite_or_none(curve.point[j])
        points.append(CurvePoint(int(n), value, low, high, curve.n_seeds[j]))
    return points


def n_at_levels(
    params: CurveParams, levels: Sequence[float], n_range: tuple[int, int]
) -> dict[str, NEstimate]:
    """n reaching each fraction of the plateau, with intervals (NaN when not converged)."""
    fit, n_at = params.fit, {}
    for level in levels:
        point = float(n_at_fraction(fit.a, fit.b, fit.c, level)) if fit.converged else math.nan
        n_at[f"{level:g}"] = n_estimate(
            point, n_at_fraction(params.a, params.b, params.c, level), n_range
        )
    return n_at


def log_linear(curve: Curve) -> dict[str, object]:
    """The log-linear slope (change per tenfold n) with its bootstrap interval."""
    slope, intercept = fit_log_linear(curve.n, curve.point)
    finite = np.isfinite(curve.replicates)
    slopes = log_linear_slopes(curve.n, np.where(finite, curve.replicates, 0.0), finite * 1.0)
    low, high = interval(slopes)
    return {
        "slope": finite_or_none(slope),
        "intercept": finite_or_none(intercept),
        "slope_ci_low": low,
        "slope_ci_high": high,
        "log_base": 10,
    }


def curves_of_test_set(
    data: CaseSums, metrics: Sequence[str], n_bootstrap: int, rng: np.random.Generator
) -> dict[tuple[str, float], Curve]:
    """(metric, synthetic_ratio) → curve, with case and seed resamples shared by every curve."""
    case_counts = _counts(rng, n_bootstrap, len(data.case_ids))  # (B, K)
    seeds = sorted({run.seed for run in data.runs})
    seed_counts = _counts(rng, n_bootstrap, len(seeds))  # (B, S)
    seed_column = np.array([seeds.index(run.seed) for run in data.runs])
    seed_draws = seed_counts[:, seed_column]  # (B, R): how often each run's seed is drawn
    groups: dict[tuple[float, int], list[int]] = {}
    for i, run in enumerate(data.runs):
        groups.setdefault((run.synthetic_ratio, run.n_real), []).append(i)
    curves = {}
    for metric in metrics:
        num, den = data.terms[metric]
        per_run = _ratio(num.sum(1), den.sum(1))  # (R,)
        per_run_b = _ratio(num @ case_counts.T, den @ case_counts.T)  # (R, B)
        for ratio in sorted({r for r, _ in groups}):
            ns = sorted(n for r, n in groups if r == ratio and n > 0)  # log n needs n > 0
            if not ns:
                continue  # only n = 0: nothing to fit (the spec requires a count above 0)
            point, reps, n_seeds = zip(
                *(_group_mean(groups[(ratio, n)], per_run, per_run_b, seed_draws) for n in ns),
                strict=True,
            )
            label_free = None
            if (ratio, 0) in groups:  # synthetic tumors only: reported apart, never fitted
                zero = _group_mean(groups[(ratio, 0)], per_run, per_run_b, seed_draws)
                label_free = _label_free(*zero)
            curves[(metric, ratio)] = Curve(
                np.array(ns, dtype=float), np.array(point), np.stack(reps, axis=1),
                list(n_seeds), label_free,
            )  # fmt: skip
    return curves


def _group_mean(
    idx: list[int], per_run: np.ndarray, per_run_b: np.ndarray, seed_draws: np.ndarray
) -> tuple[float, np.ndarray, int]:
    """The seed mean of runs `idx` (values per_run (R,)), its bootstrap replicates (from the runs'
    replicates per_run_b (R, B) and seed draw counts seed_draws (B, R)) and the seeds counted."""
    values = per_run[idx]
    point = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
    replicates = _seed_mean(per_run_b[idx].T, seed_draws[:, idx])
    return point, replicates, int(np.isfinite(values).sum())


def _label_free(point: float, replicates: np.ndarray, n_seeds: int) -> CurvePoint:
    """The n = 0 value (synthetic tumors only) with its interval: measured, never fitted."""
    return CurvePoint(0, finite_or_none(point), *interval(replicates), n_seeds)


def rng_for(seed: int, test_set: str, organ: str) -> np.random.Generator:
    """One generator per (test set, organ), independent of the order they are visited in."""
    key = zlib.crc32(f"{test_set}\0{organ}".encode())
    return np.random.default_rng(np.random.SeedSequence([seed, key]))
