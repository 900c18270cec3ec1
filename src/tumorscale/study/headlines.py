"""Headline text of a study fit: plain sentences from fit.json's content (data in, strings out).

`headline_lines` reads the fit result as `StudyFit.to_json()` gives it (and fit.json stores it);
fit.md and the report both print what it returns, so neither re-reads the other's text. A record
it cannot read (a hand-made or older fit.json) gives no line instead of an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from tumorscale.metrics.labels import short_label
from tumorscale.study.claims import SATURATION_RULE, SATURATION_TOLERANCE, fell, learning_text

EXTRAPOLATION_CAP = 100  # fit.md shows n beyond 100× the largest measured n as "> that"
NO_COMPARISON = "- no real-only vs synthetic comparison could be fitted"
Record = Mapping[str, Any]
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError)


# ---------------------------------------------------------------------------------------------
# Numbers as text


def n_text(value: float | None, cap: float = math.inf) -> str:
    """A real-scan count: '1,310', '> 3,200' past `cap`, '–' for None."""
    if value is None:
        return "–"
    return f"> {cap:,.0f}" if value > cap else f"{value:,.0f}"


def n_ci(entry: Record) -> str:
    """'1,310 [900, 2,100]' with '(extrapolated)' when the value lies outside the measured n;
    numbers past EXTRAPOLATION_CAP × the largest measured n are shown as '> cap'."""
    if entry.get("value") is None:
        return "–"
    measured = entry.get("measured_range")
    cap = EXTRAPOLATION_CAP * measured[1] if measured else math.inf
    text = n_text(entry["value"], cap)
    if entry.get("ci_low") is not None:
        text += f" [{n_text(entry['ci_low'], cap)}, {n_text(entry['ci_high'], cap)}]"
    return text + (" (extrapolated)" if entry.get("extrapolated") else "")


def v_ci(entry: Record, digits: int = 2) -> str:
    """'0.81 [0.79, 0.83]'; '–' without a value."""
    if entry.get("value") is None:
        return "–"
    text = f"{entry['value']:.{digits}f}"
    if entry.get("ci_low") is not None:
        text += f" [{entry['ci_low']:.{digits}f}, {entry['ci_high']:.{digits}f}]"
    return text


def _ratio_text(ratio: Record) -> str:
    if ratio["value"] is None:
        return ""
    interval = (
        "" if ratio["ci_low"] is None else f" [{ratio['ci_low']:.1f}, {ratio['ci_high']:.1f}]"
    )
    if ratio["value"] >= 1:
        return f" ({ratio['value']:.1f}× fewer{interval})"
    return f" (ratio {ratio['value']:.2f}{interval}: more real scans with synthetic data)"


# ---------------------------------------------------------------------------------------------
# One line each


def _where(fit: Record) -> str:
    return f"- **{fit['test_set']}, {fit['organ']}**: "


def _saving_headline(saving: Record, real: Record) -> str:
    metric, level = short_label(saving["metric"]), saving["target"]["parameter"]
    where = _where(saving)
    if not real["power_law"]["b"]["value"]:
        return where + f"Real only: {metric} is flat across the measured counts (b = 0)."
    return (
        where + f"Real only reaches {level:.0%} of its {metric} plateau "
        f"({v_ci(real['power_law']['a'])}) at {n_ci(saving['n_real_only'])} real scans; "
        f"with {saving['synthetic_ratio']:g}× synthetic at "
        f"{n_ci(saving['n_with_synthetic'])}{_ratio_text(saving['ratio'])}."
        + (f" Note: {saving['note']}." if saving["note"] else "")
    )


def _saturation_headline(fit: Record) -> str | None:
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
        f"{_where(fit)}the {fit['condition']} "
        f"{short_label(fit['metric'])} curve {state}: at {fit['points'][-1]['n_real']:,} real "
        f"scans it is {v_ci(percent, 1)}% below its plateau."
    )


def _not_learned_headline(fit: Record) -> str:
    """One line per condition (its runs are the same on every test set and metric)."""
    return (
        f"- **{fit['condition']}**: {learning_text(fit['learning'])}. No plateau, saturation "
        "or saving is claimed for this condition."
    )


def _measured_headline(fit: Record) -> str | None:
    """What was measured, before any fit: the metric at the smallest and largest n and the gain
    between them, with its interval and whether it is measurable."""
    points = [p for p in fit["points"] if p.get("value") is not None]
    gain = fit.get("trend", {}).get("gain") or {}
    if len(points) < 2 or gain.get("value") is None:
        return None
    first, last = points[0], points[-1]
    if fit["trend"].get("measurable"):
        verdict = "measurable"
    elif fell(fit["trend"]):
        verdict = "a fall: its interval lies below 0"
    else:
        verdict = "not measurable: its interval includes 0"
    return (
        f"{_where(fit)}{fit['condition']}: "
        f"{short_label(fit['metric'])} {v_ci(first)} at {first['n_real']:,} and {v_ci(last)} "
        f"at {last['n_real']:,} real scans; gain {v_ci(gain, gain_digits(gain))} ({verdict})."
    )


def gain_digits(gain: Record, digits: int = 2) -> int:
    """Decimals that keep a gain's nonzero lower bound from printing as 0 (so a measurable
    gain never reads '[0.00, ...]'), up to 4."""
    low = gain.get("ci_low")
    while low and round(low, digits) == 0 and digits < 4:
        digits += 1
    return digits


def _label_free_headline(fit: Record) -> str:
    zero = fit["label_free"]
    return (
        f"{_where(fit)}{fit['condition']}: synthetic tumors only "
        f"(0 real scans): {short_label(fit['metric'])} {v_ci(zero)} "
        f"({zero['n_seeds']} seed{'s' if zero['n_seeds'] != 1 else ''})."
    )


def _refusal_headline(fit: Record) -> str | None:
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
        f"{_where(fit)}{fit['condition']}: no credible "
        f"{short_label(fit['metric'])} fit: {'; '.join(sanity)}. No plateau, saturation or "
        "saving is claimed."
    )


def _no_trend_headline(fit: Record) -> str:
    """Plain words for a curve whose gain interval includes 0 or lies below it: nothing is read
    off it."""
    values = [p["value"] for p in fit["points"] if p["value"] is not None]
    span = f"{min(values):.2f}–{max(values):.2f}" if values else "no value"
    gain = fit.get("trend", {}).get("gain", {})
    interval = (
        f"; gain {gain['value']:+.2f} [{gain['ci_low']:+.2f}, {gain['ci_high']:+.2f}]"
        if gain.get("ci_low") is not None
        else ""
    )
    if fell(fit.get("trend", {})):
        finding, side = "lower with more real scans", "lies below 0"
    else:
        finding, side = "no measurable gain from more real scans", "includes 0"
    return (
        f"{_where(fit)}{fit['condition']}: {finding}: {short_label(fit['metric'])} "
        f"{span}{interval}, the interval {side}. No plateau, saturation or saving is claimed."
    )


# ---------------------------------------------------------------------------------------------
# The section


def _line(make: Callable[..., str | None], *records: Any) -> str | None:
    """One headline, or None where a record lacks what it needs."""
    try:
        return make(*records)
    except _MALFORMED:
        return None


def _records(value: object) -> list[Record]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _learned(fit: Record) -> bool | None:
    learning = fit.get("learning")
    return learning.get("learned") if isinstance(learning, dict) else None


def headline_lines(data: Record) -> list[str]:
    """The headlines of a fit result, as Markdown bullets, for its first organ selection (the
    pooled one when there are several organs): runs that did not learn, what was measured, the
    label-free (n = 0) DSC, savings at each plateau level, DSC saturation, then the curves
    nothing is read off and why."""
    fits, savings = _records(data.get("fits")), _records(data.get("savings"))
    organ = fits[0].get("organ") if fits else None
    by_key = {(f.get("metric"), f.get("test_set"), f.get("organ"), f.get("synthetic_ratio")): f
              for f in fits}  # fmt: skip
    main = [f for f in fits if f.get("organ") == organ]
    dsc = [f for f in main if f.get("metric") == "dsc"]
    plateau = [s for s in savings if isinstance(s.get("target"), dict)
               and s["target"].get("kind") == "plateau" and s.get("organ") == organ]  # fmt: skip
    lines = [_line(_not_learned_headline, f) for f in main if _learned(f) is False]
    lines += [_line(_measured_headline, f) for f in dsc]
    lines += [_line(_label_free_headline, f) for f in dsc if f.get("label_free")]
    lines += [
        _line(_saving_headline, s, by_key.get((s.get("metric"), s.get("test_set"), organ, 0.0)))
        for s in plateau
    ]
    lines += [_line(_saturation_headline, f) for f in dsc]
    lines += [_line(_refusal_headline, f) for f in main if _learned(f) is not False]
    return list(dict.fromkeys(line for line in lines if line))


def fit_preamble(settings: Record) -> list[str]:
    """fit.md's title and the paragraph on the model, the bootstrap and the saturation rule."""
    tolerance = float(settings.get("saturation_tolerance", SATURATION_TOLERANCE))
    return [
        "# Scaling-law fits",
        "",
        f"Model {settings.get('model')}, least squares on the seed-averaged values; "
        f"{settings.get('n_bootstrap')} bootstrap resamples of test cases and seeds "
        f"(seed {settings.get('seed')}), 95% percentile intervals in brackets. Numbers of "
        "real scans outside the measured range are marked (extrapolated). Saturation rule: "
        + SATURATION_RULE.format(tol=tolerance)
        + ".",
        "",
    ]


def headline_section(data: Record) -> list[str]:
    """fit.md's opening lines: the preamble (when the result has settings) and `## Headlines`."""
    settings = data.get("settings")
    preamble = fit_preamble(settings) if isinstance(settings, dict) else []
    return [*preamble, "## Headlines", "", *(headline_lines(data) or [NO_COMPARISON])]


def headline_markdown(data: Record) -> str:
    """The headline section as one Markdown text (what the report shows)."""
    return "\n".join(headline_section(data)).strip()
