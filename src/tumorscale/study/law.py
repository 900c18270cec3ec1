"""The saturating power law metric(n) = a − b·n^(−c) and its least-squares fits, in numpy.

n is the number of annotated real training scans; metrics are fractions in [0, 1]. The fit
profiles the exponent: for a fixed c the model is linear in (a, b), so the bounded least squares
in (a, b) has a closed form; c is found on a log grid and refined by golden-section search. That
solves many curves (e.g. every bootstrap resample) at once (`fit_many`); a single curve's fit is
then polished with `scipy.optimize.curve_fit` from the profiled optimum
(`fit_saturating_power_law`). Also: the n reaching a value or a fraction of the plateau, and the
log-linear fit (change per tenfold n).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

PLATEAU_BOUNDS = (0.0, 1.5)  # metrics are fractions; a > 1 is allowed a little slack
EXPONENT_BOUNDS = (1e-3, 3.0)  # c in (0, 3]; the open end is approximated by 1e-3
_C_GRID = np.geomspace(*EXPONENT_BOUNDS, 81)  # brackets c; golden section refines
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_GOLDEN_STEPS = 40


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


def _bounded_ab(
    sums: tuple[np.ndarray, ...], bounds: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def fit_many(
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


def _polish(
    n: np.ndarray,
    y: np.ndarray,
    sigma: np.ndarray | None,
    start: tuple[float, float, float],
    bounds: tuple[float, float],
) -> tuple[np.ndarray, str]:
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
    a, b, c = (v[0] for v in fit_many(n_arr, y_arr[None], w[None], plateau_bounds))
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


def fit_log_linear(
    n: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    """y ≈ slope·log10(n) + intercept by least squares: slope = change per tenfold n.

    Returns (slope, intercept); (nan, nan) with under 2 distinct finite n.
    """
    n_arr, y_arr = np.asarray(n, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    keep = np.isfinite(n_arr) & np.isfinite(y_arr) & (n_arr > 0)
    if np.unique(n_arr[keep]).size < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(np.log10(n_arr[keep]), y_arr[keep], 1)
    return float(slope), float(intercept)


def log_linear_slopes(n: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted log10 slopes of every row of y (R, P); NaN where under 2 points carry weight."""
    x = np.log10(n)[None, :]
    sw = w.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mx, my = (w * x).sum(1) / sw, (w * y).sum(1) / sw
        dx = x - mx[:, None]
        return (w * dx * (y - my[:, None])).sum(1) / (w * dx * dx).sum(1)
