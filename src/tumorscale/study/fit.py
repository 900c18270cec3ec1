"""Scaling-law fits of a study: metric(n) = a − b·n^(−c) per metric × test set × condition.

The result types (`CurveFit`, `Saving`, `StudyFit`) and the orchestration: per test set and organ
selection, the bootstrap curves (`study.bootstrap`), the law fitted to each (`study.law`), the
gates on what may be claimed (`study.claims`) and the real scans synthetic data saves. fit.json
and fit.md are written by `study.fit_io` (schema there), their headlines by `study.headlines`.

Derived numbers: the plateau a; the n reaching 95% / 99% of the plateau,
n* = (b / ((1 − q)·a))^(1/c); saturation (`claims.SATURATION_RULE`); the savings (`Saving`).
Every n outside the measured range is flagged `extrapolated`, never silently reported. n = 0
(synthetic tumors only): the law and the trend use only n > 0; the n = 0 value is reported
apart, as `label_free`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tumorscale.metrics.pooled import POOLED_METRICS, cell_text
from tumorscale.metrics.summary import ALL_ORGANS
from tumorscale.study import bootstrap, claims
from tumorscale.study.bootstrap import Curve, CurveParams
from tumorscale.study.estimates import (
    CI_LEVEL,
    CurvePoint,
    Estimate,
    NEstimate,
    estimate,
    n_estimate,
)
from tumorscale.study.fit_io import (
    check_columns,
    condition_names,
    json_safe,
    read_per_case,
    write_fit_files,
)
from tumorscale.study.headlines import headline_lines
from tumorscale.study.law import (
    EXPONENT_BOUNDS,
    PLATEAU_BOUNDS,
    PowerLawFit,
    n_at_fraction,
    n_for_value,
    power_law,
)
from tumorscale.study.learning import RunLearning, read_study_learning

METRICS = POOLED_METRICS
Row = Mapping[str, object]


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
        return claims.claim_reasons(self.fit, self.trend, self.learning, self.sanity)

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
    """Every curve of a study (one or more organ selections), its savings and settings."""

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

    def to_json(self) -> dict[str, object]:
        """`to_dict` made strict JSON (NaN → null, numpy → Python): fit.json's content."""
        return json_safe(self.to_dict())  # type: ignore[return-value]

    def headlines(self) -> list[str]:
        """The headline sentences of this fit (Markdown bullets), as fit.md prints them."""
        return headline_lines(self.to_json())


def _build_fit(
    key: tuple[str, str, str, float, str],
    curve: Curve,
    params: CurveParams,
    levels: Sequence[float],
    tolerance: float,
    learning: dict[str, object] | None = None,
) -> CurveFit:
    """One curve's CurveFit: its points, parameters, derived numbers and claim gates."""
    metric, test_set, condition, ratio, organ = key
    fit, ok = params.fit, params.fit.converged
    trend, learning = claims.trend(curve), learning or {}
    a = estimate(fit.a if ok else math.nan, params.a)
    sanity = claims.sanity(a, trend["gain"], fit.c if ok else None)  # type: ignore[arg-type]
    allowed = not claims.claim_reasons(fit, trend, learning, sanity)
    saturated = claims.saturation(curve, params, tolerance, allowed)
    return CurveFit(
        metric=metric,
        test_set=test_set,
        condition=condition,
        synthetic_ratio=ratio,
        organ=organ,
        points=bootstrap.measured_points(curve),
        fit=fit,
        a=a,
        b=estimate(fit.b if ok else math.nan, params.b),
        c=estimate(fit.c if ok else math.nan, params.c),
        plateau_extrapolated=saturated["value"] is not True,
        log_linear=bootstrap.log_linear(curve),
        n_at=bootstrap.n_at_levels(params, levels, (int(curve.n[0]), int(curve.n[-1]))),
        saturated=saturated,
        band=bootstrap.band(curve, params) if ok else None,
        trend=trend,
        learning=learning,
        sanity=sanity,
        label_free=curve.label_free,
    )


# ---------------------------------------------------------------------------------------------
# Savings


Target = tuple[str, float, float, np.ndarray, float, np.ndarray]


def _saving_targets(real_fit: CurveFit, real_p: CurveParams, levels: Sequence[float]) -> list:
    """(kind, parameter, value, value replicates, real-only n, its replicates) of every target:
    the real-only fit at each measured n, then each fraction of the real-only plateau."""
    rf = real_p.fit
    targets: list[Target] = []
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
    return targets


def _saving(real_fit: CurveFit, syn_fit: CurveFit, syn_p: CurveParams, target: Target) -> Saving:
    """Real scans needed for one target without (from the target) and with synthetic data."""
    kind, parameter, value, value_b, n_real, n_real_b = target
    sf = syn_p.fit
    n_syn = float(n_for_value(sf.a, sf.b, sf.c, value))
    n_syn_b = n_for_value(syn_p.a, syn_p.b, syn_p.c, value_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_b = np.where(n_syn_b > 0, n_real_b / n_syn_b, np.nan)
    ratio = n_real / n_syn if n_syn > 0 else math.nan
    return Saving(
        metric=real_fit.metric,
        test_set=real_fit.test_set,
        organ=real_fit.organ,
        condition=syn_fit.condition,
        synthetic_ratio=syn_fit.synthetic_ratio,
        baseline_condition=real_fit.condition,
        target_kind=kind,
        target_parameter=parameter,
        target_value=estimate(value, value_b),
        n_real_only=n_estimate(n_real, n_real_b, real_fit.n_range),
        n_with_synthetic=n_estimate(n_syn, n_syn_b, syn_fit.n_range),
        ratio=estimate(ratio, ratio_b),
        note=_saving_note(n_syn),
    )


def _savings_for(
    real: tuple[CurveFit, CurveParams], synth: tuple[CurveFit, CurveParams], levels: Sequence[float]
) -> list[Saving]:
    """Synthetic vs real-only at each measured real-only n and at each fraction of its plateau."""
    (real_fit, real_p), (syn_fit, syn_p) = real, synth
    # Read off a real-only curve without trend, from runs that did not learn or from a fit that
    # is not credible, a saving would be reading noise. The synthetic curve may be flat.
    synthetic_ok = syn_fit.fit.converged and syn_fit.runs_learned and syn_fit.credible
    if not (real_fit.claims_allowed and synthetic_ok):
        return []
    targets = _saving_targets(real_fit, real_p, levels)
    return [_saving(real_fit, syn_fit, syn_p, target) for target in targets]


def _saving_note(n_syn: float) -> str:
    if math.isnan(n_syn):
        return "the synthetic-data curve never reaches the target (its plateau is below it)"
    if n_syn == 0:
        return "the synthetic-data curve is flat above the target: no finite ratio"
    return ""


@dataclass(frozen=True)
class _Options:
    """What `fit_study` was asked for, passed on to each test set."""

    metrics: Sequence[str]
    organ: str
    levels: Sequence[float]
    n_bootstrap: int
    seed: int
    tolerance: float
    learning: Mapping[str, RunLearning]


def _fit_test_set(
    rows: Sequence[Row], test_set: str, names: Mapping[float, str], options: _Options
) -> tuple[list[CurveFit], list[Saving]]:
    """Every curve of one test set (one organ selection), and the savings between them."""
    data = bootstrap.case_sums(rows)
    rng = bootstrap.rng_for(options.seed, test_set, options.organ)
    curves = bootstrap.curves_of_test_set(data, options.metrics, options.n_bootstrap, rng)
    runs_learned = {
        ratio: claims.curve_learning(
            [run for run in data.runs if run.synthetic_ratio == ratio and run.n_real > 0],
            options.learning,
        )
        for ratio in {run.synthetic_ratio for run in data.runs}
    }
    fits, savings = [], []
    for metric in options.metrics:
        built = {}
        for ratio in sorted(r for m, r in curves if m == metric):
            curve = curves[(metric, ratio)]
            params = bootstrap.fit_curve_params(curve)
            key = (metric, test_set, names[ratio], ratio, options.organ)
            fit = _build_fit(
                key, curve, params, options.levels, options.tolerance, runs_learned[ratio]
            )
            built[ratio] = (fit, params)
            fits.append(fit)
        if 0.0 in built:
            for ratio in sorted(r for r in built if r != 0.0):
                savings += _savings_for(built[0.0], built[ratio], options.levels)
    return fits, savings


def _settings(options: _Options) -> dict[str, object]:
    """fit.json's `settings`: what was asked for and the rules the fit applied."""
    return {
        "organ": options.organ,
        "metrics": list(options.metrics),
        "levels": list(options.levels),
        "n_bootstrap": options.n_bootstrap,
        "seed": options.seed,
        "ci_level": CI_LEVEL,
        "saturation_tolerance": options.tolerance,
        "model": "metric(n) = a - b * n^(-c)",
        "bounds": {"a": list(PLATEAU_BOUNDS), "b": [0, None], "c": list(EXPONENT_BOUNDS)},
        "bootstrap": "test cases (within each test set, shared by all runs) and seeds, jointly",
        "learning": claims.CURVE_LEARNING_RULE,
        "trend": claims.TREND_RULE,
    }


def fit_study(
    rows: Sequence[Row],
    metrics: Sequence[str] = METRICS,
    organ: str = ALL_ORGANS,
    levels: Sequence[float] = (0.95, 0.99),
    n_bootstrap: int = 1000,
    seed: int = 0,
    saturation_tolerance: float = claims.SATURATION_TOLERANCE,
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
    check_columns(rows)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or n_bootstrap < 0:
        raise ValueError(f"unknown metrics {unknown} or negative n_bootstrap {n_bootstrap}")
    options = _Options(metrics, organ, levels, n_bootstrap, seed, saturation_tolerance,
                       learning or {})  # fmt: skip
    selected = [r for r in rows if organ == ALL_ORGANS or cell_text(r["organ"]) == organ]
    names = condition_names(rows)
    by_test_set: dict[str, list[Row]] = {}
    for row in selected:
        by_test_set.setdefault(cell_text(row["test_set"]), []).append(row)
    fits, savings = [], []
    for test_set in sorted(by_test_set):
        found = _fit_test_set(by_test_set[test_set], test_set, names, options)
        fits, savings = fits + found[0], savings + found[1]
    return StudyFit(fits, savings, _settings(options))


def merge_fits(parts: Sequence[StudyFit]) -> StudyFit:
    """One StudyFit from several (e.g. one per organ); settings list the organs in order."""
    settings = dict(parts[0].settings) if parts else {}
    settings["organ"] = [part.settings.get("organ") for part in parts]
    fits = [f for part in parts for f in part.fits]
    savings = [s for part in parts for s in part.savings]
    return StudyFit(fits, savings, settings)


def write_fit(study_fit: StudyFit, out_dir: str | Path) -> tuple[Path, Path]:
    """Write `fit.json` (schema in `study.fit_io`) and `fit.md` atomically into out_dir;
    returns their paths."""
    return write_fit_files(study_fit.to_json(), out_dir)


def fit_study_folder(
    plan_dir: str | Path, n_bootstrap: int = 1000, seed: int = 0
) -> tuple[Path, Path]:
    """`tumorscale study fit OUT`: fit OUT/results/per_case.csv, all organs pooled and then each
    organ when there are several, with each run's learning flag from OUT/runs/<id>/train/;
    writes OUT/results/fit.json and fit.md, returns their paths."""
    results = Path(plan_dir) / "results"
    rows = read_per_case(results / "per_case.csv")
    learning = read_study_learning(plan_dir, (cell_text(row["run_id"]) for row in rows))
    organs = sorted({cell_text(row["organ"]) for row in rows})
    selections = [ALL_ORGANS, *organs] if len(organs) > 1 else organs
    parts = [
        fit_study(rows, organ=o, n_bootstrap=n_bootstrap, seed=seed, learning=learning)
        for o in selections
    ]
    return write_fit(merge_fits(parts), results)
