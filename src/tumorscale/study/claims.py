"""When a curve may be read: its trend, whether its runs learned, a credible fit, saturation.

Claims are gated: a plateau, n*, "saturated" or a saving is read off a curve only when (1) its gain
from the smallest to the largest n has a bootstrap interval above 0 (`trend`), (2) its runs
learned (`learning`: not more than half of them, and none at its largest n, failed the
`study.learning` flag; unknown without run logs), and (3) the fit is credible (`sanity`): the
plateau is not above the metric's maximum 1 nor its interval at the fit's bound, the exponent is
not at its bound (a step, not a curve), and the plateau's and gain's intervals have non-zero
width. Otherwise no claim is made, and `claim_reasons` says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from tumorscale.study.bootstrap import Curve, CurveParams, RunKey
from tumorscale.study.estimates import Estimate, estimate
from tumorscale.study.law import EXPONENT_BOUNDS, PLATEAU_BOUNDS, PowerLawFit
from tumorscale.study.learning import LEARNED_RULE, RunLearning

METRIC_MAXIMUM = 1.0  # every fitted metric is a fraction: a plateau above it is no finding
ZERO_WIDTH = 1e-9  # relative: an interval this narrow saw no variation to resample
SATURATION_TOLERANCE = 0.01
SATURATION_RULE = (
    "saturated when the fitted curve at the largest measured n is within {tol:.0%} of its "
    "plateau: (a − f(n_max)) / a = b·n_max^(−c) / a ≤ {tol:g} (point estimate); `confident` "
    "when the upper end of that gap's bootstrap interval is ≤ {tol:g} too; `last_step` is the "
    "measured change from the previous n to n_max with its interval; null when the power law "
    "did not converge"
)
TREND_RULE = (
    "a curve has a measurable trend when the bootstrap interval of its gain from the smallest to "
    "the largest n lies above 0; without one, no plateau, saturation or saving is claimed"
)


def fell(trend: Mapping[str, object]) -> bool:
    """Whether the gain's whole interval lies below 0: the metric fell with more real scans."""
    high = (trend.get("gain") or {}).get("ci_high")  # type: ignore[union-attr]
    return high is not None and high < 0


def trend(curve: Curve) -> dict[str, object]:
    """The gain from the smallest to the largest n, its interval, and whether it excludes 0."""
    if curve.n.size < 2:
        return {"gain": Estimate(None).to_dict(), "measurable": False, "rule": TREND_RULE}
    gain = estimate(
        float(curve.point[-1] - curve.point[0]), curve.replicates[:, -1] - curve.replicates[:, 0]
    )
    measurable = gain.ci_low is not None and gain.ci_low > 0
    return {"gain": gain.to_dict(), "measurable": measurable, "rule": TREND_RULE}


CURVE_LEARNING_RULE = (
    f"per run: {LEARNED_RULE}; a curve's runs did not learn when more than half of the runs "
    "with a readable log, or any run at its largest n, did not; unknown without logs"
)


def curve_learning(runs: Sequence[RunKey], learning: Mapping[str, RunLearning]) -> dict:
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


def learning_text(learning: Mapping[str, object]) -> str:
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


def sanity(a: Estimate, gain: Mapping[str, object], c: float | None = None) -> list[str]:
    """Why a fit is no credible finding: a plateau above the metric's maximum or not bounded
    below it, an exponent at its bound (a step, not a curve: the plateau is just the last
    point), or intervals of zero width (e.g. one tumor case and one seed: the bootstrap has
    nothing to vary)."""
    reasons = []
    if c is not None and c >= EXPONENT_BOUNDS[1] * (1 - 1e-6):
        reasons.append(
            f"exponent c at its bound {EXPONENT_BOUNDS[1]:g}: the curve is a step "
            "after the smallest n, so its plateau is only the points after it"
        )
    if a.value is not None and a.value > METRIC_MAXIMUM * (1 + ZERO_WIDTH):
        reasons.append(f"plateau {a.value:.2f} above the metric's maximum {METRIC_MAXIMUM:g}")
    elif a.ci_high is not None and a.ci_high >= PLATEAU_BOUNDS[1] * (1 - 1e-6):
        # Resamples without a plateau: n-at-95 % and saturation would be read off noise.
        reasons.append(
            f"plateau not identified: its interval [{a.ci_low:.2f}, {a.ci_high:.2f}] "
            f"reaches the fit's bound {PLATEAU_BOUNDS[1]:g}"
        )
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


def claim_reasons(
    fit: PowerLawFit, trend: Mapping[str, object], learning: Mapping[str, object],
    sanity: Sequence[str],
) -> list[str]:  # fmt: skip
    """Why no plateau, n*, saturation or saving is read off a curve, most basic first."""
    reasons = [] if fit.converged else ["the power law did not converge"]
    if learning.get("learned") is False:
        reasons.append(learning_text(learning))
    if fell(trend):
        reasons.append("the metric fell from the smallest to the largest n (its interval lies "
                       "below 0)")  # fmt: skip
    elif not trend.get("measurable"):
        reasons.append(
            "no measurable gain from the smallest to the largest n (its interval includes 0)"
        )
    return reasons + (["no credible fit: " + "; ".join(sanity)] if sanity else [])


def saturation(
    curve: Curve, params: CurveParams, tolerance: float, claims_allowed: bool = True
) -> dict[str, object]:
    rule = SATURATION_RULE.format(tol=tolerance)
    n_max = curve.n[-1]
    fit = params.fit
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = (params.b * n_max**-params.c) / params.a
        gap_point = fit.b * n_max**-fit.c / fit.a if fit.converged and fit.a > 0 else math.nan
    step = curve.replicates[:, -1] - curve.replicates[:, -2] if curve.n.size > 1 else np.array([])
    step_point = curve.point[-1] - curve.point[-2] if curve.n.size > 1 else math.nan
    step_estimate = estimate(step_point, step)
    gap_estimate = estimate(gap_point, gap)
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
