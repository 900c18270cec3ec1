"""Scaling-law fits of a study: metric(n) = a − b·n^(−c) per metric × test set × condition.

n is the number of annotated real training scans; metrics are fractions in [0, 1]. For every curve
the per-n values are the mean over seeds of each run's pooled metric (pooled exactly as
`metrics.summary` pools an evaluation), the law is fitted by least squares, and every number gets
a 95% percentile-bootstrap interval that resamples, jointly,

- test cases: case ids drawn with replacement within each test set, the same draw for every run
  of that test set, so curves of different conditions stay paired;
- seeds: seed labels drawn with replacement, the same draw for every (condition, n).

Derived numbers: the plateau a; the n reaching 95% / 99% of the plateau,
n* = (b / ((1 − q)·a))^(1/c); whether the curve has saturated (`SATURATION_RULE`); and the real
scans synthetic data saves (`Saving`). Every n outside the measured range is flagged
`extrapolated`, never silently reported.

Claims are gated: a plateau, n*, "saturated" or a saving is read off a curve only when (1) its gain
from the smallest to the largest n has a bootstrap interval above 0 (`trend`), (2) its runs
learned (`learning`: not more than half of them, and none at its largest n, failed the
`study.learning` flag; unknown without run logs), and (3) the fit is credible: the plateau is not
above the metric's maximum 1 nor its interval at the fit's bound, the exponent is not at its
bound (a step, not a curve), and the plateau's and gain's intervals have non-zero width. Otherwise
`claims.allowed` is false, saturation is null, no saving is computed and fit.md says why.

n = 0 (the label-free setting: synthetic tumors only, synthetic conditions): the power law and the
trend use only n > 0 (log n is undefined at 0); the n = 0 value is reported apart, as `label_free`.

The fit profiles the exponent: for a fixed c the model is linear in (a, b), so the bounded least
squares in (a, b) has a closed form; c is found on a log grid and refined by golden-section
search. That solves all bootstrap resamples of a curve at once in numpy; the point fit is then
polished with `scipy.optimize.curve_fit` from the profiled optimum.

fit.json (schema "tumorscale.study.fit/1"); every {value, ci_low, ci_high} is a point estimate
with its 95% interval, null where undefined; n values are numbers of real scans:

    settings: {organ, metrics, levels, n_bootstrap, seed, ci_level, saturation_tolerance, ...}
    fits: [{metric, test_set, condition, synthetic_ratio, organ,
            points: [{n_real, value, ci_low, ci_high, n_seeds}],
            power_law: {a: {value, ci_low, ci_high, extrapolated}, b: {...}, c: {...},
                        converged, reason, warning, residual_sd},
            log_linear: {slope, intercept, slope_ci_low, slope_ci_high, log_base: 10},
            n_at: {"0.95": {value, ci_low, ci_high, extrapolated, ci_extrapolated,
                            measured_range: [n_min, n_max]}, ...},
            saturated: {value: bool | null, confident: bool | null, rule,
                        relative_gap_at_n_max: {...}, last_step: {...}},
            band: {n_real: [...], value: [...], ci_low: [...], ci_high: [...]} | null,
            trend: {gain: {...}, measurable, rule},
            learning: {learned: bool | null, runs, judged, not_learned, loss_not_fallen,
                       validation_dsc_zero, not_learned_at_largest_n, largest_n, rule},
            claims: {allowed: bool, reasons: [...], sanity: [...]},
            label_free: {n_real: 0, value, ci_low, ci_high, n_seeds} | null}]
    savings: [{metric, test_set, organ, condition, synthetic_ratio, baseline_condition,
               target: {kind: "real_only_at_n" | "plateau", parameter, value, ci_low, ci_high},
               n_real_only: {value, ci_low, ci_high, extrapolated, ci_extrapolated, measured_range},
               n_with_synthetic: {...}, ratio: {value, ci_low, ci_high}, extrapolated, note}]

`a.extrapolated` is true unless the curve saturated inside the measured range; a saving's
`ratio` is n_real_only / n_with_synthetic ("500 real + synthetic ≈ 1,500 real" → 3.0).
"""

from __future__ import annotations

import csv
import json
import math
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from tumorscale.errors import InputFileError
from tumorscale.io import write_text_atomic
from tumorscale.metrics.aggregate import MIN_VALID_FRACTION
from tumorscale.study.learning import LEARNED_RULE, RunLearning, read_study_learning

ALL_ORGANS = "all organs"
METRICS = ("dsc", "nsd", "p_sen", "t_sen", "spe")
METRIC_LABELS = {"dsc": "DSC", "nsd": "NSD", "p_sen": "P-Sen", "t_sen": "T-Sen", "spe": "Spe"}
PLATEAU_BOUNDS = (0.0, 1.5)  # metrics are fractions; a > 1 is allowed a little slack
METRIC_MAXIMUM = 1.0  # every fitted metric is a fraction: a plateau above it is no finding
ZERO_WIDTH = 1e-9  # relative: an interval this narrow saw no variation to resample
EXPONENT_BOUNDS = (1e-3, 3.0)  # c in (0, 3]; the open end is approximated by 1e-3
CI_LEVEL = 0.95
SATURATION_TOLERANCE = 0.01
BAND_POINTS = 40
EXTRAPOLATION_CAP = 100  # fit.md shows n beyond 100× the largest measured n as "> that"
SATURATION_RULE = (
    "saturated when the fitted curve at the largest measured n is within {tol:.0%} of its "
    "plateau: (a − f(n_max)) / a = b·n_max^(−c) / a ≤ {tol:g} (point estimate); `confident` "
    "when the upper end of that gap's bootstrap interval is ≤ {tol:g} too; `last_step` is the "
    "measured change from the previous n to n_max with its interval; null when the power law "
    "did not converge"
)
REQUIRED_COLUMNS = (
    "run_id", "n_real", "synthetic_ratio", "seed", "test_set", "condition",
    "case_id", "organ", "tumor_status",
)  # fmt: skip

Row = Mapping[str, object]
_C_GRID = np.geomspace(*EXPONENT_BOUNDS, 81)  # brackets c; golden section refines
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_GOLDEN_STEPS = 40


# ---------------------------------------------------------------------------------------------
# The law and its least-squares fit


def power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """a − b·n^(−c), n in real scans."""
    return a - b * np.power(n, -c)


def n_for_value(a: np.ndarray, b: np.ndarray, c: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Real scans n at which a − b·n^(−c) equals `value` (NaN where the curve never reaches it;
    0 where b = 0 and the flat curve is already above it)."""
    a, b, c, value = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (a, b, c, value)))
    gap = a - value
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n = np.power(b / gap, 1.0 / c)
    n = np.where(gap > 0, n, np.nan)
    return np.where((b == 0) & (gap > 0), 0.0, n)


def n_at_fraction(a: np.ndarray, b: np.ndarray, c: np.ndarray, level: float) -> np.ndarray:
    """n* = (b / ((1 − level)·a))^(1/c): real scans reaching `level` (e.g. 0.95) of plateau a."""
    a = np.asarray(a, dtype=float)
    return np.where(a > 0, n_for_value(a, b, c, level * a), np.nan)


@dataclass(frozen=True)
class PowerLawFit:
    """a − b·n^(−c) fitted to (n, y); a in metric units, n in real scans, c unitless.

    `converged` is False when the data cannot identify the law (under 3 distinct n, the plateau
    at its upper bound, c at its lower bound, the optimizer failing); `reason` then says why,
    and the parameters (when any) are the best found. `residual_sd` is the unweighted residual
    standard deviation with 3 degrees of freedom removed (None with 3 points or fewer).
    """

    a: float
    b: float
    c: float
    converged: bool
    residual_sd: float | None
    reason: str = ""

    def predict(self, n: np.ndarray | float) -> np.ndarray:
        return power_law(np.asarray(n, dtype=float), self.a, self.b, self.c)


def _grid_sums(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """Weighted sums for x shared by all rows (G, P) and y, w (R, P): each (R, G), by matmul."""
    wy = w * y
    column = np.ones((1, x.shape[0]))
    return (
        w.sum(1, keepdims=True) * column, w @ x.T, w @ (x * x).T,
        wy.sum(1, keepdims=True) * column, wy @ x.T, (wy * y).sum(1, keepdims=True) * column,
    )  # fmt: skip


def _row_sums(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """Weighted sums for one x per row: x, y, w (R, P) → each (R,)."""
    wy = w * y
    return w.sum(1), (w * x).sum(1), (w * x * x).sum(1), wy.sum(1), (wy * x).sum(1), (wy * y).sum(1)


def _bounded_ab(sums: tuple[np.ndarray, ...], bounds: tuple[float, float]):
    """Weighted least squares of y ≈ a + β·x with lo ≤ a ≤ hi, β ≥ 0, from the sums
    (Σw, Σwx, Σwx², Σwy, Σwxy, Σwy²).

    Convex in (a, β), so the optimum is the unconstrained one when feasible, else the best of
    the box edges (each a clipped 1-D optimum). Returns a, β, sse shaped like the sums.
    """
    lo, hi = bounds
    sw, sx, sxx, sy, sxy, syy = sums

    def sse(a: np.ndarray, beta: np.ndarray) -> np.ndarray:
        return syy - 2 * a * sy - 2 * beta * sxy + a * a * sw + 2 * a * beta * sx + beta**2 * sxx

    with np.errstate(divide="ignore", invalid="ignore"):
        beta_free = (sw * sxy - sx * sy) / (sw * sxx - sx**2)
        a_free = (sy - beta_free * sx) / sw
        candidates = [(np.clip(sy / sw, lo, hi), np.zeros_like(sy))]
        for a_edge in (lo, hi):
            beta_edge = np.clip((sxy - a_edge * sx) / sxx, 0.0, None)
            candidates.append((np.full_like(beta_edge, a_edge), beta_edge))
    feasible = (beta_free >= 0) & (a_free >= lo) & (a_free <= hi)
    best_a, best_beta = np.where(feasible, a_free, np.nan), np.where(feasible, beta_free, np.nan)
    best_sse = np.where(feasible, sse(best_a, best_beta), np.inf)
    for a_c, beta_c in candidates:
        sse_c = sse(a_c, beta_c)
        better = sse_c < best_sse  # NaN (degenerate sums) never wins
        best_a = np.where(better, a_c, best_a)
        best_beta = np.where(better, beta_c, best_beta)
        best_sse = np.where(better, sse_c, best_sse)
    return best_a, best_beta, np.maximum(best_sse, 0.0)


def _fit_many(
    n: np.ndarray, y: np.ndarray, w: np.ndarray, bounds: tuple[float, float] = PLATEAU_BOUNDS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares (a, b, c) for every row of y (R, P) at the shared n (P,), weights w (R, P).

    Rows with under 3 distinct weighted n give NaN. n is scaled by its minimum inside, so
    x = −(n/n_min)^(−c) lies in [−1, 0) and the sums stay well conditioned.
    """
    n_ref = float(n.min())
    scaled = n / n_ref
    log_grid = np.log(_C_GRID)
    x_grid = -np.power(scaled[None, :], -_C_GRID[:, None])  # (G, P)
    _, _, sse = _bounded_ab(_grid_sums(x_grid, y, w), bounds)  # (R, G)
    best = np.argmin(np.where(np.isfinite(sse), sse, np.inf), axis=1)
    low = log_grid[np.maximum(best - 1, 0)]
    high = log_grid[np.minimum(best + 1, log_grid.size - 1)]

    def sse_at(log_c: np.ndarray) -> np.ndarray:
        x = -np.power(scaled[None, :], -np.exp(log_c)[:, None])
        return _bounded_ab(_row_sums(x, y, w), bounds)[2]

    # Golden-section search on log c inside the grid bracket, every row at once.
    left, right = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
    sse_left, sse_right = sse_at(left), sse_at(right)
    for _ in range(_GOLDEN_STEPS):
        go_left = sse_left < sse_right
        high = np.where(go_left, right, high)
        low = np.where(go_left, low, left)
        new = np.where(go_left, high - _GOLDEN * (high - low), low + _GOLDEN * (high - low))
        sse_new = sse_at(new)
        # Moving left, the old left point becomes the new right one (and vice versa).
        left, right = np.where(go_left, new, right), np.where(go_left, left, new)
        sse_left, sse_right = (
            np.where(go_left, sse_new, sse_right),
            np.where(go_left, sse_left, sse_new),
        )
    c = np.exp(np.where(sse_left < sse_right, left, right))
    x = -np.power(scaled[None, :], -c[:, None])
    a, beta, _ = _bounded_ab(_row_sums(x, y, w), bounds)
    enough = _distinct_weighted(n, w) >= 3
    b = beta * np.power(n_ref, c)  # back from scaled n: b·n^−c = β·(n/n_ref)^−c
    nan = np.full_like(a, np.nan)
    return np.where(enough, a, nan), np.where(enough, b, nan), np.where(enough, c, nan)


def _distinct_weighted(n: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per row, how many distinct n carry positive weight."""
    unique, inverse = np.unique(n, return_inverse=True)
    present = np.zeros((w.shape[0], unique.size), dtype=bool)
    for column, u in enumerate(inverse):
        present[:, u] |= w[:, column] > 0
    return present.sum(axis=1)


def _identifiability(a: float, c: float, bounds: tuple[float, float]) -> str:
    """Why fitted parameters cannot be trusted, or '' when they can."""
    if a >= bounds[1] * (1 - 1e-6):
        return (
            f"plateau a hit its upper bound {bounds[1]:g}: the curve is still rising at the "
            "largest n, so no plateau is identified (see the log-linear fit)"
        )
    if c <= EXPONENT_BOUNDS[0] * (1 + 1e-3):
        return (
            f"exponent c hit its lower bound {EXPONENT_BOUNDS[0]:g}: the curve shows no "
            "saturation in the measured range (see the log-linear fit)"
        )
    return ""


def _polish(n, y, sigma, start, bounds) -> tuple[np.ndarray, str]:
    """curve_fit from the profiled optimum; keeps the start when curve_fit fails or is worse."""
    n_ref = float(n.min())
    lower = np.array([bounds[0], 0.0, EXPONENT_BOUNDS[0]])
    upper = np.array([bounds[1], np.inf, EXPONENT_BOUNDS[1]])
    a, b, c = start
    # trf needs a start strictly inside the bounds.
    p0 = np.clip([a, b * n_ref ** (-c), c], lower + 1e-9, np.minimum(upper - 1e-9, 1e12))
    weights = 1.0 if sigma is None else 1.0 / sigma**2

    def scaled_sse(p: np.ndarray) -> float:
        return float(np.sum(weights * (y - power_law(n / n_ref, *p)) ** 2))

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, _ = curve_fit(
                power_law, n / n_ref, y, p0=p0, sigma=sigma, bounds=(lower, upper),
                method="trf", maxfev=2000,
            )  # fmt: skip
    except (RuntimeError, ValueError) as error:
        return np.array(start), f"curve_fit failed ({error}); profiled optimum kept"
    profiled = np.array([a, b * n_ref ** (-c), c])
    # Ties keep the profiled optimum: it sits exactly on a bound (e.g. b = 0) when it should.
    best = popt if scaled_sse(popt) < scaled_sse(profiled) else profiled
    return np.array([best[0], best[1] * n_ref ** best[2], best[2]]), ""


def fit_saturating_power_law(
    n: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    sigma: Sequence[float] | np.ndarray | None = None,
    plateau_bounds: tuple[float, float] = PLATEAU_BOUNDS,
) -> PowerLawFit:
    """Fit y = a − b·n^(−c) with a in `plateau_bounds`, b ≥ 0, c in (0, 3].

    n: real scans (> 0); y: metric values; sigma: optional per-point standard deviations
    (weights 1/σ²). Non-finite points are dropped. The global least-squares optimum is found by
    profiling c (so 3–4 points are handled without a starting guess), then polished with
    `scipy.optimize.curve_fit`. Never raises on bad data: returns converged=False and a reason.
    """
    n_arr, y_arr = np.asarray(n, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    s_arr = None if sigma is None else np.asarray(sigma, dtype=float).ravel()
    if n_arr.size != y_arr.size or (s_arr is not None and s_arr.size != n_arr.size):
        return _failed(f"n, y and sigma differ in length ({n_arr.size}, {y_arr.size})")
    keep = np.isfinite(n_arr) & np.isfinite(y_arr) & (n_arr > 0)
    if s_arr is not None:
        keep &= np.isfinite(s_arr) & (s_arr > 0)
    n_arr, y_arr = n_arr[keep], y_arr[keep]
    s_arr = None if s_arr is None else s_arr[keep]
    if np.unique(n_arr).size < 3:
        return _failed(
            f"needs at least 3 distinct n with finite values, got {np.unique(n_arr).size}"
        )
    w = np.ones_like(y_arr) if s_arr is None else 1.0 / s_arr**2
    a, b, c = (v[0] for v in _fit_many(n_arr, y_arr[None], w[None], plateau_bounds))
    params, note = _polish(n_arr, y_arr, s_arr, (a, b, c), plateau_bounds)
    a, b, c = (float(v) for v in params)
    residuals = y_arr - power_law(n_arr, a, b, c)
    dof = y_arr.size - 3
    residual_sd = float(np.sqrt(np.sum(residuals**2) / dof)) if dof > 0 else None
    # A flat curve (b = 0) is a fit, but its c is arbitrary: say so instead of failing.
    problem = "" if b == 0 else _identifiability(a, c, plateau_bounds)
    flat = "flat curve (b = 0): c is undetermined" if b == 0 else ""
    reason = "; ".join(part for part in (problem, flat, note) if part)
    return PowerLawFit(a, b, c, not problem, residual_sd, reason)


def _failed(reason: str) -> PowerLawFit:
    return PowerLawFit(math.nan, math.nan, math.nan, False, None, reason)


def fit_log_linear(n: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray):
    """y ≈ slope·log10(n) + intercept by least squares: slope = change per tenfold n.

    Returns (slope, intercept); (nan, nan) with under 2 distinct finite n.
    """
    n_arr, y_arr = np.asarray(n, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    keep = np.isfinite(n_arr) & np.isfinite(y_arr) & (n_arr > 0)
    if np.unique(n_arr[keep]).size < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(np.log10(n_arr[keep]), y_arr[keep], 1)
    return float(slope), float(intercept)


def _log_linear_slopes(n: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted log10 slopes of every row of y (R, P); NaN where under 2 points carry weight."""
    x = np.log10(n)[None, :]
    sw = w.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mx, my = (w * x).sum(1) / sw, (w * y).sum(1) / sw
        dx = x - mx[:, None]
        return (w * dx * (y - my[:, None])).sum(1) / (w * dx * dx).sum(1)


# ---------------------------------------------------------------------------------------------
# Pooled metrics of one run (the definitions of metrics.summary)


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _number(value: object) -> float:
    text = _text(value)
    return math.nan if text.lower() in ("", "none", "nan") else float(text)


def _flag(value: object) -> bool | None:
    text = _text(value).lower()
    if text in ("true", "1", "1.0", "yes"):
        return True
    if text in ("false", "0", "0.0", "no"):
        return False
    return None


def _finite_or_zero(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def metric_terms(row: Row) -> dict[str, tuple[float, float]]:
    """One case × organ row's (numerator, denominator) for each pooled metric.

    DSC/NSD: mean over tumor-positive rows; T-Sen: detected / truth lesions over rows of known
    status; P-Sen: positives predicted positive / positives; Spe: controls predicted negative /
    controls. Rows with an error or of unknown status add nothing.
    """
    terms = dict.fromkeys(METRICS, (0.0, 0.0))
    status = _text(row.get("tumor_status"))
    if _text(row.get("error")) or status not in ("positive", "control"):
        return terms
    terms["t_sen"] = (
        _finite_or_zero(_number(row.get("detected_lesions"))),
        _finite_or_zero(_number(row.get("truth_lesions"))),
    )
    called = _flag(row.get("predicted_positive"))
    if called is None:  # older CSVs: any volume left after post-processing is a positive call
        called = _finite_or_zero(_number(row.get("pred_volume_post_mm3"))) > 0
    if status == "control":
        terms["spe"] = (float(not called), 1.0)
        return terms
    terms["p_sen"] = (float(called), 1.0)
    for key in ("dsc", "nsd"):
        score = _number(row.get(key))
        if math.isfinite(score):
            terms[key] = (score, 1.0)
    return terms


def run_metrics(rows: Iterable[Row]) -> dict[str, float | None]:
    """Pooled DSC, NSD, P-Sen, T-Sen, Spe of one run's rows on one test set (None: undefined)."""
    sums = {metric: [0.0, 0.0] for metric in METRICS}
    for row in rows:
        for metric, (num, den) in metric_terms(row).items():
            sums[metric][0] += num
            sums[metric][1] += den
    return {m: (num / den if den > 0 else None) for m, (num, den) in sums.items()}


# ---------------------------------------------------------------------------------------------
# Per test set: run × case matrices and their bootstrap


@dataclass(frozen=True)
class RunKey:
    run_id: str
    n_real: int
    synthetic_ratio: float
    seed: int


@dataclass
class _TestSetData:
    """Per-run, per-case sums of one test set: terms[metric] = (num, den), each (runs, cases)."""

    runs: list[RunKey]
    case_ids: list[str]
    terms: dict[str, tuple[np.ndarray, np.ndarray]]


def _run_key(row: Row) -> RunKey:
    return RunKey(
        run_id=_text(row["run_id"]),
        n_real=int(_number(row["n_real"])),
        synthetic_ratio=float(_number(row["synthetic_ratio"])),
        seed=int(_number(row["seed"])),
    )


def _test_set_data(rows: Sequence[Row]) -> _TestSetData:
    runs = sorted(
        {_run_key(row) for row in rows},
        key=lambda k: (k.synthetic_ratio, k.n_real, k.seed, k.run_id),
    )
    case_ids = sorted({_text(row["case_id"]) for row in rows})
    run_index = {key: i for i, key in enumerate(runs)}
    case_index = {case: j for j, case in enumerate(case_ids)}
    shape = (len(runs), len(case_ids))
    terms = {metric: (np.zeros(shape), np.zeros(shape)) for metric in METRICS}
    for row in rows:
        i, j = run_index[_run_key(row)], case_index[_text(row["case_id"])]
        for metric, (num, den) in metric_terms(row).items():
            terms[metric][0][i, j] += num
            terms[metric][1][i, j] += den
    return _TestSetData(runs, case_ids, terms)


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


# ---------------------------------------------------------------------------------------------
# Results


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
    n_real: int
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n_seeds: int


@dataclass(frozen=True)
class CurveFit:
    """One metric × test set × condition × organ curve, its fits and derived numbers."""

    metric: str
    test_set: str
    condition: str
    synthetic_ratio: float
    organ: str
    points: list[CurvePoint]
    fit: PowerLawFit
    a: Estimate
    b: Estimate
    c: Estimate
    plateau_extrapolated: bool
    log_linear: dict[str, object]
    n_at: dict[str, NEstimate]
    saturated: dict[str, object]
    band: dict[str, list[float | None]] | None = None
    trend: dict[str, object] = field(default_factory=dict)
    learning: dict[str, object] = field(default_factory=dict)
    sanity: list[str] = field(default_factory=list)  # why the fit is not credible
    label_free: CurvePoint | None = None  # the n = 0 value (synthetic tumors only)

    @property
    def has_trend(self) -> bool:
        """Whether the gain from the smallest to the largest n has an interval above 0."""
        return bool(self.trend.get("measurable"))

    @property
    def runs_learned(self) -> bool:
        """False only when the curve's run logs show that its runs did not learn."""
        return self.learning.get("learned") is not False

    @property
    def credible(self) -> bool:
        return not self.sanity

    @property
    def claim_reasons(self) -> list[str]:
        """Why no plateau, n*, saturation or saving is read off this curve ([] when they are)."""
        return _claim_reasons(self.fit, self.trend, self.learning, self.sanity)

    @property
    def claims_allowed(self) -> bool:
        return not self.claim_reasons

    @property
    def warning(self) -> str:
        """Why converged parameters still deserve caution ('' when none)."""
        high = self.a.ci_high
        if self.fit.converged and high is not None and high >= PLATEAU_BOUNDS[1] * (1 - 1e-6):
            return (
                f"the plateau's interval reaches its bound {PLATEAU_BOUNDS[1]:g}: in some "
                "resamples no plateau is identified"
            )
        return ""

    @property
    def n_range(self) -> tuple[int, int]:
        return self.points[0].n_real, self.points[-1].n_real

    def to_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "test_set": self.test_set,
            "condition": self.condition,
            "synthetic_ratio": self.synthetic_ratio,
            "organ": self.organ,
            "points": [vars(p) for p in self.points],
            "power_law": {
                "a": self.a.to_dict() | {"extrapolated": self.plateau_extrapolated},
                "warning": self.warning,
                "b": self.b.to_dict(),
                "c": self.c.to_dict(),
                "converged": self.fit.converged,
                "reason": self.fit.reason,
                "residual_sd": self.fit.residual_sd,
            },
            "log_linear": self.log_linear,
            "n_at": {level: entry.to_dict() for level, entry in self.n_at.items()},
            "saturated": self.saturated,
            "band": self.band,
            "trend": self.trend,
            "learning": self.learning,
            "claims": {
                "allowed": self.claims_allowed,
                "reasons": self.claim_reasons,
                "sanity": self.sanity,
            },
            "label_free": None if self.label_free is None else vars(self.label_free),
        }


@dataclass(frozen=True)
class Saving:
    """Real scans needed to reach `target` without vs with synthetic data, and their ratio."""

    metric: str
    test_set: str
    organ: str
    condition: str
    synthetic_ratio: float
    baseline_condition: str
    target_kind: str  # "real_only_at_n" (fitted real-only value at a measured n) or "plateau"
    target_parameter: float  # that n, or the fraction of the real-only plateau
    target_value: Estimate
    n_real_only: NEstimate
    n_with_synthetic: NEstimate
    ratio: Estimate
    note: str = ""

    @property
    def extrapolated(self) -> bool:
        return bool(self.n_real_only.extrapolated or self.n_with_synthetic.extrapolated)

    def to_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "test_set": self.test_set,
            "organ": self.organ,
            "condition": self.condition,
            "synthetic_ratio": self.synthetic_ratio,
            "baseline_condition": self.baseline_condition,
            "target": {"kind": self.target_kind, "parameter": self.target_parameter}
            | self.target_value.to_dict(),
            "n_real_only": self.n_real_only.to_dict(),
            "n_with_synthetic": self.n_with_synthetic.to_dict(),
            "ratio": self.ratio.to_dict(),
            "extrapolated": self.extrapolated,
            "note": self.note,
        }


@dataclass(frozen=True)
class StudyFit:
    fits: list[CurveFit]
    savings: list[Saving]
    settings: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "schema": "tumorscale.study.fit/1",
            "settings": self.settings,
            "fits": [f.to_dict() for f in self.fits],
            "savings": [s.to_dict() for s in self.savings],
        }


# ---------------------------------------------------------------------------------------------
# Bootstrap summaries


def _value(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _interval(replicates: np.ndarray) -> tuple[float | None, float | None]:
    """Percentile interval of the finite replicates; None when under half are finite."""
    finite = replicates[np.isfinite(replicates)]
    if replicates.size == 0 or finite.size < MIN_VALID_FRACTION * replicates.size:
        return None, None
    tail = (1.0 - CI_LEVEL) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)


def _estimate(point: float, replicates: np.ndarray) -> Estimate:
    return Estimate(_value(point), *_interval(replicates))


def _n_estimate(point: float, replicates: np.ndarray, n_range: tuple[int, int]) -> NEstimate:
    low, high = _interval(replicates)
    value = _value(point)

    def outside(x: float | None) -> bool:
        return x is not None and not n_range[0] <= x <= n_range[1]

    extrapolated = None if value is None else outside(value)
    ci_extrapolated = None if low is None else outside(low) or outside(high)
    return NEstimate(value, low, high, extrapolated, ci_extrapolated, n_range)


# ---------------------------------------------------------------------------------------------
# One curve


@dataclass(frozen=True)
class _Curve:
    """Measured values of one curve: point estimates (P,) and bootstrap replicates (B, P)."""

    n: np.ndarray
    point: np.ndarray
    replicates: np.ndarray
    n_seeds: list[int]
    label_free: CurvePoint | None = None  # n = 0, kept out of every fit


@dataclass(frozen=True)
class _Params:
    """Point and replicate parameters of one curve's law."""

    fit: PowerLawFit
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray


def _fit_curve_params(curve: _Curve) -> _Params:
    fit = fit_saturating_power_law(curve.n, curve.point)
    weights = np.isfinite(curve.replicates).astype(float)
    y = np.where(weights > 0, curve.replicates, 0.0)
    if curve.replicates.shape[0] == 0 or not fit.converged:
        nan = np.full(curve.replicates.shape[0], np.nan)
        return _Params(fit, nan, nan, nan)
    a, b, c = _fit_many(curve.n, y, weights)
    return _Params(fit, a, b, c)


TREND_RULE = (
    "a curve has a measurable trend when the bootstrap interval of its gain from the smallest to "
    "the largest n lies above 0; without one, no plateau, saturation or saving is claimed"
)


def _trend(curve: _Curve) -> dict[str, object]:
    """The gain from the smallest to the largest n, its interval, and whether it excludes 0."""
    if curve.n.size < 2:
        return {"gain": Estimate(None).to_dict(), "measurable": False, "rule": TREND_RULE}
    gain = _estimate(
        float(curve.point[-1] - curve.point[0]), curve.replicates[:, -1] - curve.replicates[:, 0]
    )
    measurable = gain.ci_low is not None and gain.ci_low > 0
    return {"gain": gain.to_dict(), "measurable": measurable, "rule": TREND_RULE}


CURVE_LEARNING_RULE = (
    f"per run: {LEARNED_RULE}; a curve's runs did not learn when more than half of the runs "
    "with a readable log, or any run at its largest n, did not; unknown without logs"
)


def _curve_learning(runs: Sequence[RunKey], learning: Mapping[str, RunLearning]) -> dict:
    """Whether a curve's runs learned, with the counts behind it (see CURVE_LEARNING_RULE)."""
    judged = [(run, learning[run.run_id]) for run in runs if run.run_id in learning]
    judged = [(run, record) for run, record in judged if record.learned is not None]
    failed = [(run, record) for run, record in judged if record.learned is False]
    largest = max((run.n_real for run in runs), default=None)
    at_largest = sum(run.n_real == largest for run, _ in failed)
    learned = None if not judged else not (2 * len(failed) > len(judged) or at_largest)
    return {
        "learned": learned,
        "runs": len(runs),
        "judged": len(judged),
        "not_learned": len(failed),
        "loss_not_fallen": sum(record.loss_fell is False for _, record in failed),
        "validation_dsc_zero": sum(record.validation_failed for _, record in failed),
        "not_learned_at_largest_n": at_largest,
        "largest_n": largest,
        "rule": CURVE_LEARNING_RULE,
    }


def _learning_text(learning: Mapping[str, object]) -> str:
    """'runs did not learn: training loss did not fall in 5 of 8 runs' (and why else)."""
    judged, parts = learning.get("judged"), []
    if fell := learning.get("loss_not_fallen"):
        parts.append(f"training loss did not fall in {fell} of {judged} runs")
    if zero := learning.get("validation_dsc_zero"):
        parts.append(f"final validation DSC was 0 in {zero} of {judged}")
    if largest := learning.get("not_learned_at_largest_n"):
        parts.append(f"{largest} of them at the largest n ({learning['largest_n']:,})")
    return "runs did not learn: " + "; ".join(parts)


def _zero_width(entry: Mapping[str, object]) -> bool:
    value, low, high = (entry.get(k) for k in ("value", "ci_low", "ci_high"))
    if value is None or low is None or high is None:
        return False
    return high - low <= ZERO_WIDTH * max(1.0, abs(value))  # type: ignore[operator,arg-type]


def _sanity(a: Estimate, gain: Mapping[str, object], c: float | None = None) -> list[str]:
    """Why a fit is no credible finding: a plateau above the metric's maximum or not bounded
    below it, an exponent at its bound (a step, not a curve: the plateau is just the last
    point), or intervals of zero width (e.g. one tumor case and one seed: the bootstrap has
    nothing to vary)."""
    reasons = []
    if c is not None and c >= EXPONENT_BOUNDS[1] * (1 - 1e-6):
        reasons.append(f"exponent c at its bound {EXPONENT_BOUNDS[1]:g}: the curve is a step "
                       "after the smallest n, so its plateau is only the points after it")
    if a.value is not None and a.value > METRIC_MAXIMUM * (1 + ZERO_WIDTH):
        reasons.append(f"plateau {a.value:.2f} above the metric's maximum {METRIC_MAXIMUM:g}")
    elif a.ci_high is not None and a.ci_high >= PLATEAU_BOUNDS[1] * (1 - 1e-6):
        # Resamples without a plateau: n-at-95 % and saturation would be read off noise.
        reasons.append(f"plateau not identified: its interval [{a.ci_low:.2f}, {a.ci_high:.2f}] "
                       f"reaches the fit's bound {PLATEAU_BOUNDS[1]:g}")
    flat = [
        f"{name} [{entry['ci_low']:.2f}, {entry['ci_high']:.2f}]"
        for name, entry in (("plateau", a.to_dict()), ("gain", gain))
        if _zero_width(entry)
    ]
    if flat:
        reasons.append(
            f"zero-width bootstrap intervals ({', '.join(flat)}): too few test cases or seeds "
            "to resample"
        )
    return reasons


def _claim_reasons(
    fit: PowerLawFit, trend: Mapping[str, object], learning: Mapping[str, object],
    sanity: Sequence[str],
) -> list[str]:  # fmt: skip
    """Why no plateau, n*, saturation or saving is read off a curve, most basic first."""
    reasons = [] if fit.converged else ["the power law did not converge"]
    if learning.get("learned") is False:
        reasons.append(_learning_text(learning))
    if not trend.get("measurable"):
        reasons.append(
            "no measurable gain from the smallest to the largest n (its interval includes 0)"
        )
    return reasons + (["no credible fit: " + "; ".join(sanity)] if sanity else [])


def _saturation(
    curve: _Curve, params: _Params, tolerance: float, claims_allowed: bool = True
) -> dict[str, object]:
    rule = SATURATION_RULE.format(tol=tolerance)
    n_max = curve.n[-1]
    fit = params.fit
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = (params.b * n_max**-params.c) / params.a
        gap_point = fit.b * n_max**-fit.c / fit.a if fit.converged and fit.a > 0 else math.nan
    step = curve.replicates[:, -1] - curve.replicates[:, -2] if curve.n.size > 1 else np.array([])
    step_point = curve.point[-1] - curve.point[-2] if curve.n.size > 1 else math.nan
    step_estimate = _estimate(step_point, step)
    gap_estimate = _estimate(gap_point, gap)
    value = confident = None
    if claims_allowed and fit.converged and math.isfinite(gap_point):
        value = bool(gap_point <= tolerance)
        confident = gap_estimate.ci_high is not None and gap_estimate.ci_high <= tolerance
    return {
        "value": value,
        "confident": confident,
        "rule": rule,
        "relative_gap_at_n_max": gap_estimate.to_dict(),
        "last_step": step_estimate.to_dict(),
    }


def _band(curve: _Curve, params: _Params, points: int = BAND_POINTS) -> dict[str, list]:
    """The fitted curve at log-spaced n over the measured range, with pointwise intervals of
    the bootstrap curves (not the envelope of the parameter intervals)."""
    n = np.geomspace(curve.n[0], curve.n[-1], points)
    replicates = power_law(n[None, :], params.a[:, None], params.b[:, None], params.c[:, None])
    intervals = [_interval(replicates[:, j]) for j in range(points)]
    return {
        "n_real": [float(v) for v in n],
        "value": [_value(v) for v in params.fit.predict(n)],
        "ci_low": [low for low, _ in intervals],
        "ci_high": [high for _, high in intervals],
    }


def _build_fit(
    key: tuple[str, str, str, float, str],
    curve: _Curve,
    params: _Params,
    levels: Sequence[float],
    tolerance: float,
    learning: dict[str, object] | None = None,
) -> CurveFit:
    metric, test_set, condition, ratio, organ = key
    points = []
    for j, n in enumerate(curve.n):
        low, high = _interval(curve.replicates[:, j])
        points.append(CurvePoint(int(n), _value(curve.point[j]), low, high, curve.n_seeds[j]))
    fit = params.fit
    n_range = (int(curve.n[0]), int(curve.n[-1]))
    ok = fit.converged
    n_at = {}
    for level in levels:
        point = float(n_at_fraction(fit.a, fit.b, fit.c, level)) if ok else math.nan
        n_at[f"{level:g}"] = _n_estimate(
            point, n_at_fraction(params.a, params.b, params.c, level), n_range
        )
    band = _band(curve, params) if ok else None
    slope, intercept = fit_log_linear(curve.n, curve.point)
    finite = np.isfinite(curve.replicates)
    slopes = _log_linear_slopes(curve.n, np.where(finite, curve.replicates, 0.0), finite * 1.0)
    trend, learning = _trend(curve), learning or {}
    a = _estimate(fit.a if ok else math.nan, params.a)
    sanity = _sanity(a, trend["gain"], fit.c if ok else None)  # type: ignore[arg-type]
    allowed = not _claim_reasons(fit, trend, learning, sanity)
    saturated = _saturation(curve, params, tolerance, allowed)
    return CurveFit(
        metric=metric,
        test_set=test_set,
        condition=condition,
        synthetic_ratio=ratio,
        organ=organ,
        points=points,
        fit=fit,
        a=a,
        b=_estimate(fit.b if ok else math.nan, params.b),
        c=_estimate(fit.c if ok else math.nan, params.c),
        plateau_extrapolated=saturated["value"] is not True,
        log_linear={
            "slope": _value(slope),
            "intercept": _value(intercept),
            "slope_ci_low": _interval(slopes)[0],
            "slope_ci_high": _interval(slopes)[1],
            "log_base": 10,
        },
        n_at=n_at,
        saturated=saturated,
        band=band,
        trend=trend,
        learning=learning,
        sanity=sanity,
        label_free=curve.label_free,
    )


# ---------------------------------------------------------------------------------------------
# Savings


def _savings_for(
    real: tuple[CurveFit, _Params], synth: tuple[CurveFit, _Params], levels: Sequence[float]
) -> list[Saving]:
    """Synthetic vs real-only at each measured real-only n and at each fraction of its plateau."""
    (real_fit, real_p), (syn_fit, syn_p) = real, synth
    # Read off a real-only curve without trend, from runs that did not learn or from a fit that
    # is not credible, a saving would be reading noise. The synthetic curve may be flat.
    synthetic_ok = syn_fit.fit.converged and syn_fit.runs_learned and syn_fit.credible
    if not (real_fit.claims_allowed and synthetic_ok):
        return []
    rf, sf = real_fit.fit, syn_fit.fit
    targets: list[tuple[str, float, float, np.ndarray, float, np.ndarray]] = []
    for point in real_fit.points:
        n = float(point.n_real)
        value_b = power_law(n, real_p.a, real_p.b, real_p.c)
        targets.append(
            ("real_only_at_n", n, float(rf.predict(n)), value_b, n, np.full_like(value_b, n))
        )
    for level in levels:
        n_real = float(n_at_fraction(rf.a, rf.b, rf.c, level))
        n_real_b = n_at_fraction(real_p.a, real_p.b, real_p.c, level)
        targets.append(("plateau", level, level * rf.a, level * real_p.a, n_real, n_real_b))
    savings = []
    for kind, parameter, value, value_b, n_real, n_real_b in targets:
        n_syn = float(n_for_value(sf.a, sf.b, sf.c, value))
        n_syn_b = n_for_value(syn_p.a, syn_p.b, syn_p.c, value_b)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_b = np.where(n_syn_b > 0, n_real_b / n_syn_b, np.nan)
        ratio = n_real / n_syn if n_syn > 0 else math.nan
        note = _saving_note(n_syn)
        savings.append(
            Saving(
                metric=real_fit.metric,
                test_set=real_fit.test_set,
                organ=real_fit.organ,
                condition=syn_fit.condition,
                synthetic_ratio=syn_fit.synthetic_ratio,
                baseline_condition=real_fit.condition,
                target_kind=kind,
                target_parameter=parameter,
                target_value=_estimate(value, value_b),
                n_real_only=_n_estimate(n_real, n_real_b, real_fit.n_range),
                n_with_synthetic=_n_estimate(n_syn, n_syn_b, syn_fit.n_range),
                ratio=_estimate(ratio, ratio_b),
                note=note,
            )
        )
    return savings


def _saving_note(n_syn: float) -> str:
    if math.isnan(n_syn):
        return "the synthetic-data curve never reaches the target (its plateau is below it)"
    if n_syn == 0:
        return "the synthetic-data curve is flat above the target: no finite ratio"
    return ""


# ---------------------------------------------------------------------------------------------
# The study


def _condition_names(rows: Sequence[Row]) -> dict[float, str]:
    """synthetic_ratio → condition name; one name per ratio (conditions are keyed by ratio)."""
    names: dict[float, set[str]] = {}
    for row in rows:
        names.setdefault(float(_number(row["synthetic_ratio"])), set()).add(
            _text(row.get("condition"))
        )
    clashing = {ratio: sorted(n) for ratio, n in names.items() if len(n) > 1}
    if clashing:
        raise ValueError(
            f"conditions are keyed by synthetic_ratio, but these share one: {clashing}"
        )
    return {ratio: next(iter(n)) or _default_name(ratio) for ratio, n in names.items()}


def _default_name(ratio: float) -> str:
    return "real only" if ratio == 0 else f"real + {ratio:g}x synthetic"


def _check_columns(rows: Sequence[Row]) -> None:
    if not rows:
        raise ValueError("no per-case rows to fit")
    missing = [column for column in REQUIRED_COLUMNS if column not in rows[0]]
    if missing:
        raise ValueError(f"per-case rows lack the columns {missing}")


def _curves_of_test_set(
    data: _TestSetData, metrics: Sequence[str], n_bootstrap: int, rng: np.random.Generator
) -> dict[tuple[str, float], _Curve]:
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
            curves[(metric, ratio)] = _Curve(
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
    return CurvePoint(0, _value(point), *_interval(replicates), n_seeds)


def _rng_for(seed: int, test_set: str, organ: str) -> np.random.Generator:
    """One generator per (test set, organ), independent of the order they are visited in."""
    key = zlib.crc32(f"{test_set}\0{organ}".encode())
    return np.random.default_rng(np.random.SeedSequence([seed, key]))


def fit_study(
    rows: Sequence[Row],
    metrics: Sequence[str] = METRICS,
    organ: str = ALL_ORGANS,
    levels: Sequence[float] = (0.95, 0.99),
    n_bootstrap: int = 1000,
    seed: int = 0,
    saturation_tolerance: float = SATURATION_TOLERANCE,
    learning: Mapping[str, RunLearning] | None = None,
) -> StudyFit:
    """Fit every metric × test set × condition curve of a study's per-case rows.

    rows: `results/per_case.csv` rows (strings or numbers): evaluate's per-case columns plus
    run_id, n_real, condition, synthetic_ratio, seed, test_set. organ: one organ, or
    "all organs" to pool every organ's rows. levels: fractions of the plateau for n*.
    Conditions are keyed by synthetic_ratio; ratio 0 is the real-only baseline of the savings.
    Rows with n_real = 0 (synthetic tumors only) give each curve's `label_free` value, not a
    fitted point. learning: run id → its learning record (`study.learning`); runs missing from
    it are unknown, and so is every curve without it. The same `seed` gives identical output.
    """
    _check_columns(rows)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or n_bootstrap < 0:
        raise ValueError(f"unknown metrics {unknown} or negative n_bootstrap {n_bootstrap}")
    selected = [r for r in rows if organ == ALL_ORGANS or _text(r["organ"]) == organ]
    names = _condition_names(rows)
    by_test_set: dict[str, list[Row]] = {}
    for row in selected:
        by_test_set.setdefault(_text(row["test_set"]), []).append(row)
    fits, savings = [], []
    for test_set in sorted(by_test_set):
        data = _test_set_data(by_test_set[test_set])
        rng = _rng_for(seed, test_set, organ)
        curves = _curves_of_test_set(data, metrics, n_bootstrap, rng)
        runs_learned = {
            ratio: _curve_learning(
                [run for run in data.runs if run.synthetic_ratio == ratio and run.n_real > 0],
                learning or {},
            )
            for ratio in {run.synthetic_ratio for run in data.runs}
        }
        for metric in metrics:
            built = {}
            for ratio in sorted(r for m, r in curves if m == metric):
                curve = curves[(metric, ratio)]
                params = _fit_curve_params(curve)
                key = (metric, test_set, names[ratio], ratio, organ)
                fit = _build_fit(
                    key, curve, params, levels, saturation_tolerance, runs_learned[ratio]
                )
                built[ratio] = (fit, params)
                fits.append(built[ratio][0])
            if 0.0 in built:
                for ratio in sorted(r for r in built if r != 0.0):
                    savings += _savings_for(built[0.0], built[ratio], levels)
    settings = {
        "organ": organ,
        "metrics": list(metrics),
        "levels": list(levels),
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "ci_level": CI_LEVEL,
        "saturation_tolerance": saturation_tolerance,
        "model": "metric(n) = a - b * n^(-c)",
        "bounds": {"a": list(PLATEAU_BOUNDS), "b": [0, None], "c": list(EXPONENT_BOUNDS)},
        "bootstrap": "test cases (within each test set, shared by all runs) and seeds, jointly",
        "learning": CURVE_LEARNING_RULE,
        "trend": TREND_RULE,
    }
    return StudyFit(fits, savings, settings)


def merge_fits(parts: Sequence[StudyFit]) -> StudyFit:
    """One StudyFit from several (e.g. one per organ); settings list the organs in order."""
    settings = dict(parts[0].settings) if parts else {}
    settings["organ"] = [part.settings.get("organ") for part in parts]
    fits = [f for part in parts for f in part.fits]
    savings = [s for part in parts for s in part.savings]
    return StudyFit(fits, savings, settings)


# ---------------------------------------------------------------------------------------------
# Writing: fit.json and fit.md


def _json_safe(value: object) -> object:
    """NaN/inf → None, numpy scalars → Python, recursively (fit.json stays strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value


def _n_text(value: float | None, cap: float = math.inf) -> str:
    if value is None:
        return "–"
    return f"> {cap:,.0f}" if value > cap else f"{value:,.0f}"


def _n_ci(entry: dict[str, object]) -> str:
    """'1,310 [900, 2,100]' with '(extrapolated)' when the value lies outside the measured n;
    numbers past EXTRAPOLATION_CAP × the largest measured n are shown as '> cap'."""
    if entry.get("value") is None:
        return "–"
    measured = entry.get("measured_range")
    cap = EXTRAPOLATION_CAP * measured[1] if measured else math.inf  # type: ignore[index]
    text = _n_text(entry["value"], cap)  # type: ignore[arg-type]
    if entry.get("ci_low") is not None:
        text += f" [{_n_text(entry['ci_low'], cap)}, {_n_text(entry['ci_high'], cap)}]"  # type: ignore[arg-type]
    return text + (" (extrapolated)" if entry.get("extrapolated") else "")


def _v_ci(entry: dict[str, object], digits: int = 2) -> str:
    if entry.get("value") is None:
        return "–"
    text = f"{entry['value']:.{digits}f}"
    if entry.get("ci_low") is not None:
        text += f" [{entry['ci_low']:.{digits}f}, {entry['ci_high']:.{digits}f}]"
    return text


def _condition_label(ratio: float, name: str) -> str:
    return "Real only" if ratio == 0 else f"with {ratio:g}× synthetic ({name})"


def _ratio_text(ratio: dict[str, object]) -> str:
    if ratio["value"] is None:
        return ""
    interval = (
        "" if ratio["ci_low"] is None else f" [{ratio['ci_low']:.1f}, {ratio['ci_high']:.1f}]"
    )
    if ratio["value"] >= 1:  # type: ignore[operator]
        return f" ({ratio['value']:.1f}× fewer{interval})"
    return f" (ratio {ratio['value']:.2f}{interval}: more real scans with synthetic data)"


def _headline(saving: dict[str, object], real: dict[str, object]) -> str:
    metric, level = METRIC_LABELS[saving["metric"]], saving["target"]["parameter"]
    where = f"- **{saving['test_set']}, {saving['organ']}**: "
    if not real["power_law"]["b"]["value"]:
        return where + f"Real only: {metric} is flat across the measured counts (b = 0)."
    return (
        where + f"Real only reaches {level:.0%} of its {metric} plateau "
        f"({_v_ci(real['power_law']['a'])}) at {_n_ci(saving['n_real_only'])} real scans; "
        f"with {saving['synthetic_ratio']:g}× synthetic at "
        f"{_n_ci(saving['n_with_synthetic'])}{_ratio_text(saving['ratio'])}."
        + (f" Note: {saving['note']}." if saving["note"] else "")
    )


def _saturation_headline(fit: dict[str, object]) -> str | None:
    saturated = fit["saturated"]
    if saturated["value"] is None:
        return None
    gap = saturated["relative_gap_at_n_max"]
    state = "has not saturated"
    if saturated["value"]:
        confident = saturated["confident"]
        state = "has saturated" if confident else "may have saturated (not established)"
    percent = {k: None if v is None else 100 * v for k, v in gap.items()}
    return (
        f"- **{fit['test_set']}, {fit['organ']}**: the {fit['condition']} "
        f"{METRIC_LABELS[fit['metric']]} curve {state}: at {fit['points'][-1]['n_real']:,} real "
        f"scans it is {_v_ci(percent, 1)}% below its plateau."
    )


def _headlines(data: dict[str, object]) -> list[str]:
    """For the first organ selection (the pooled one when there are several organs): runs that
    did not learn, the label-free (n = 0) DSC, savings at each plateau level, DSC saturation,
    then the curves nothing is read off and why."""
    organ = data["fits"][0]["organ"] if data["fits"] else None
    fits = {(f["metric"], f["test_set"], f["organ"], f["synthetic_ratio"]): f for f in data["fits"]}
    main = [f for f in data["fits"] if f["organ"] == organ]
    lines = [_not_learned_headline(f) for f in main if _learned(f) is False]
    lines += [_measured_headline(f) for f in main if f["metric"] == "dsc"]
    lines += [_label_free_headline(f) for f in main if f["metric"] == "dsc" and f.get("label_free")]
    lines += [
        _headline(saving, fits[(saving["metric"], saving["test_set"], organ, 0.0)])
        for saving in data["savings"]
        if saving["target"]["kind"] == "plateau" and saving["organ"] == organ
    ]
    lines += [_saturation_headline(f) for f in main if f["metric"] == "dsc"]
    lines += [_refusal_headline(f) for f in main if _learned(f) is not False]
    return list(dict.fromkeys(line for line in lines if line))


def _learned(fit: dict[str, object]) -> bool | None:
    return fit.get("learning", {}).get("learned")  # type: ignore[union-attr]


def _not_learned_headline(fit: dict[str, object]) -> str:
    """One line per condition (its runs are the same on every test set and metric)."""
    return (
        f"- **{fit['condition']}**: {_learning_text(fit['learning'])}. No plateau, saturation "
        "or saving is claimed for this condition."
    )


def _measured_headline(fit: dict[str, object]) -> str | None:
    """What was measured, before any fit: the metric at the smallest and largest n and the gain
    between them, with its interval and whether it is measurable."""
    points = [p for p in fit["points"] if p.get("value") is not None]  # type: ignore[union-attr]
    gain = fit.get("trend", {}).get("gain") or {}  # type: ignore[union-attr]
    if len(points) < 2 or gain.get("value") is None:
        return None
    first, last = points[0], points[-1]
    measurable = fit["trend"].get("measurable")  # type: ignore[union-attr]
    verdict = "measurable" if measurable else "not measurable: its interval includes 0"
    return (
        f"- **{fit['test_set']}, {fit['organ']}**: {fit['condition']}: "
        f"{METRIC_LABELS[fit['metric']]} {_v_ci(first)} at {first['n_real']:,} and {_v_ci(last)} "
        f"at {last['n_real']:,} real scans; gain {_v_ci(gain)} ({verdict})."
    )


def _label_free_headline(fit: dict[str, object]) -> str:
    zero = fit["label_free"]
    return (
        f"- **{fit['test_set']}, {fit['organ']}**: {fit['condition']}: synthetic tumors only "
        f"(0 real scans): {METRIC_LABELS[fit['metric']]} {_v_ci(zero)} "
        f"({zero['n_seeds']} seed{'s' if zero['n_seeds'] != 1 else ''})."
    )


def _refusal_headline(fit: dict[str, object]) -> str | None:
    """Why nothing is read off a DSC curve: no trend, or no credible fit (other metrics say
    why in the fit table)."""
    if fit["metric"] != "dsc":
        return None
    if not fit.get("trend", {}).get("measurable"):
        return _no_trend_headline(fit)
    sanity = fit.get("claims", {}).get("sanity")
    if not sanity:
        return None
    return (
        f"- **{fit['test_set']}, {fit['organ']}**: {fit['condition']}: no credible "
        f"{METRIC_LABELS[fit['metric']]} fit: {'; '.join(sanity)}. No plateau, saturation or "
        "saving is claimed."
    )


def _no_trend_headline(fit: dict[str, object]) -> str:
    """Plain words for a curve whose gain interval includes 0: nothing is read off it."""
    values = [p["value"] for p in fit["points"] if p["value"] is not None]
    span = f"{min(values):.2f}–{max(values):.2f}" if values else "no value"
    gain = fit.get("trend", {}).get("gain", {})
    interval = (
        f"; gain {gain['value']:+.2f} [{gain['ci_low']:+.2f}, {gain['ci_high']:+.2f}]"
        if gain.get("ci_low") is not None
        else ""
    )
    return (
        f"- **{fit['test_set']}, {fit['organ']}**: {fit['condition']}: no measurable gain from "
        f"more real scans: {METRIC_LABELS[fit['metric']]} {span}{interval}, the interval "
        "includes 0. No plateau, saturation or saving is claimed."
    )


def _fit_table(fits: list[dict[str, object]], levels: Sequence[str]) -> list[str]:
    header = (
        "| metric | condition | a (plateau) | b | c | "
        + " | ".join(f"n at {float(level):.0%}" for level in levels)
        + " | saturated | log-linear slope / decade | note |"
    )
    lines = [header, "|" + "---|" * (8 + len(levels))]
    for f in fits:
        law, claims = f["power_law"], f.get("claims", {"allowed": True})
        # A curve nothing may be read off shows no plateau or n*, only why.
        shown = claims["allowed"] or not law["converged"]
        n_at = " | ".join(_n_ci(f["n_at"][level]) if shown else "–" for level in levels)
        slope = f["log_linear"]["slope"]
        label = _condition_label(f["synthetic_ratio"], f["condition"])
        note = law["reason"] if not law["converged"] else law["warning"]
        if not shown:
            note = "no claim: " + "; ".join(claims["reasons"])
        lines.append(
            f"| {METRIC_LABELS[f['metric']]} | {label} | {_v_ci(law['a']) if shown else '–'} "
            f"| {_v_ci(law['b'], 3)} | {_v_ci(law['c'])} | {n_at} "
            f"| {_yes_no(f['saturated']['value'])} | {'–' if slope is None else f'{slope:.3f}'} "
            f"| {note or ''} |"
        )
    return lines


def _yes_no(value: object) -> str:
    return {True: "yes", False: "no"}.get(value, "–")  # type: ignore[call-overload]


def _points_table(fits: list[dict[str, object]]) -> list[str]:
    lines = ["| metric | condition | n real | value [95% CI] | seeds |", "|---|---|---|---|---|"]
    for f in fits:
        label = _condition_label(f["synthetic_ratio"], f["condition"])
        zero = [f["label_free"]] if f.get("label_free") else []
        for p in zero + f["points"]:
            n_text = f"{p['n_real']:,}" if p["n_real"] else "0 (synthetic only)"
            lines.append(
                f"| {METRIC_LABELS[f['metric']]} | {label} | {n_text} | {_v_ci(p)} "
                f"| {p['n_seeds']} |"
            )
    return lines


def _savings_table(savings: list[dict[str, object]]) -> list[str]:
    lines = [
        "| metric | condition | target | real-only n | n with synthetic | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for s in savings:
        target = s["target"]
        what = (
            f"real-only value at n = {target['parameter']:,.0f} ({_v_ci(target)})"
            if target["kind"] == "real_only_at_n"
            else f"{target['parameter']:.0%} of real-only plateau ({_v_ci(target)})"
        )
        lines.append(
            f"| {METRIC_LABELS[s['metric']]} | {s['synthetic_ratio']:g}× synthetic | {what} "
            f"| {_n_ci(s['n_real_only'])} | {_n_ci(s['n_with_synthetic'])} "
            f"| {_v_ci(s['ratio'], 1)}{' (extrapolated)' if s['extrapolated'] else ''} |"
        )
    return lines


def markdown_fit(data: dict[str, object]) -> str:
    """fit.md from fit.json's content: headlines, then per test set × organ tables."""
    settings = data["settings"]
    levels = [f"{float(level):g}" for level in settings.get("levels", [])]
    lines = [
        "# Scaling-law fits",
        "",
        f"Model {settings.get('model')}, least squares on the seed-averaged values; "
        f"{settings.get('n_bootstrap')} bootstrap resamples of test cases and seeds "
        f"(seed {settings.get('seed')}), 95% percentile intervals in brackets. Numbers of "
        "real scans outside the measured range are marked (extrapolated). Saturation rule: "
        + SATURATION_RULE.format(tol=float(settings.get("saturation_tolerance", 0.01)))
        + ".",
        "",
        "## Headlines",
        "",
        *(_headlines(data) or ["- no real-only vs synthetic comparison could be fitted"]),
    ]
    groups: dict[tuple[str, str], list[dict[str, object]]] = {}
    for f in data["fits"]:
        groups.setdefault((f["test_set"], f["organ"]), []).append(f)
    for (test_set, organ), fits in groups.items():
        savings = [s for s in data["savings"] if (s["test_set"], s["organ"]) == (test_set, organ)]
        lines += ["", f"## {test_set} — {organ}", "", "### Fits", "", *_fit_table(fits, levels)]
        if savings:
            lines += ["", "### Real scans saved by synthetic data", "", *_savings_table(savings)]
        lines += ["", "### Measured points", "", *_points_table(fits)]
    return "\n".join(lines) + "\n"


def write_fit(study_fit: StudyFit, out_dir: str | Path) -> tuple[Path, Path]:
    """Write `fit.json` (schema in this module's docstring) and `fit.md` atomically into
    out_dir; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = _json_safe(study_fit.to_dict())
    json_path, md_path = out / "fit.json", out / "fit.md"
    write_text_atomic(json_path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(md_path, markdown_fit(data))  # type: ignore[arg-type]
    return json_path, md_path


def read_per_case(path: str | Path) -> list[dict[str, str]]:
    """Rows of a study's results/per_case.csv as strings; a clear error when unreadable."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise InputFileError(path, f"cannot read the per-case results: {error}") from error
    if not rows:
        raise InputFileError(path, "no per-case rows: has `tumorscale study run` finished a run?")
    missing = [column for column in REQUIRED_COLUMNS if column not in rows[0]]
    if missing:
        raise InputFileError(path, f"missing columns {missing}")
    return rows


def run_fit(plan_dir: str | Path, n_bootstrap: int = 1000, seed: int = 0) -> tuple[Path, Path]:
    """`tumorscale study fit OUT`: fit OUT/results/per_case.csv, all organs pooled and then each
    organ when there are several, with each run's learning flag from OUT/runs/<id>/train/;
    writes OUT/results/fit.json and fit.md, returns their paths."""
    results = Path(plan_dir) / "results"
    rows = read_per_case(results / "per_case.csv")
    learning = read_study_learning(plan_dir, (_text(row["run_id"]) for row in rows))
    organs = sorted({_text(row["organ"]) for row in rows})
    selections = [ALL_ORGANS, *organs] if len(organs) > 1 else organs
    parts = [
        fit_study(rows, organ=o, n_bootstrap=n_bootstrap, seed=seed, learning=learning)
        for o in selections
    ]
    return write_fit(merge_fits(parts), results)
