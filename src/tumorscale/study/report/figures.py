"""The report's plots: metric against real scans per test set, and the runs' training loss.

Uncertainty bands around the fitted curves: the pointwise bootstrap band that `study fit` stores
in fit.json (`band`, measured range) when present. Otherwise the band is approximate: the envelope
of the eight power laws at the corners of the marginal a, b, c intervals, which ignores the
correlation between the parameters and is wider than a pointwise bootstrap band. A curve that
`study fit` reads no claim off is drawn as points only; the n = 0 value (synthetic tumors only)
as an open diamond at the left edge of the log axis.

Figures are drawn on `matplotlib.figure.Figure` objects (Agg rendering), never through pyplot, so
the report neither changes nor depends on the user's matplotlib backend.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from tumorscale.io import atomic_path
from tumorscale.study.law import power_law
from tumorscale.study.learning import LEARNED_RULE
from tumorscale.study.report.document import FigureFiles
from tumorscale.study.report.format import (
    ZERO_LABEL,
    as_dict,
    as_list,
    count_text,
    metric_label,
    num,
    slug,
)
from tumorscale.study.report.load import (
    Point,
    StudyData,
    TrainedRun,
    conditions_of,
    test_sets_of,
)

EXTRAPOLATE_FACTOR = 4.0  # how far past the largest measured count the dashed curve goes
BOOTSTRAP_ALPHA, APPROX_ALPHA = 0.22, 0.09  # shading of the two kinds of band
ZERO_TICK = "0\n(synthetic only)"
ZERO_POSITION = 0.4  # the n = 0 marker sits at this fraction of the smallest positive count


def _claims_refused(fit: Mapping[str, Any] | None) -> list[str] | None:
    """Why `study fit` reads no claim off this curve; None when it does (or says nothing)."""
    claims = as_dict(as_dict(fit).get("claims"))
    if claims.get("allowed") is not False:
        return None
    return [str(reason) for reason in as_list(claims.get("reasons"))]


def law_parameters(fit: Mapping[str, Any] | None) -> dict[str, dict[str, float | None]] | None:
    """The converged power-law parameters with their intervals, or None (no usable fit: not
    converged, or no claim may be read off it)."""
    law = as_dict(as_dict(fit).get("power_law"))
    if not law or law.get("converged") is False or _claims_refused(fit) is not None:
        return None
    params = {
        name: {
            part: num(as_dict(law.get(name)).get(part)) for part in ("value", "ci_low", "ci_high")
        }
        for name in ("a", "b", "c")
    }
    return params if all(params[name]["value"] is not None for name in params) else None


def fit_problem(fit: Mapping[str, Any] | None) -> str | None:
    """Why a series is shown as points only (None when its power law is usable)."""
    if fit is None:
        return "no fit"
    if law_parameters(fit) is not None:
        return None
    law = as_dict(as_dict(fit).get("power_law"))
    reason = law.get("reason") if isinstance(law.get("reason"), str) else None
    if law and law.get("converged") is False:
        return f"fit did not converge: {reason}" if reason else "fit did not converge"
    if (refused := _claims_refused(fit)) is not None:
        return "no claim: " + ("; ".join(refused) or "refused by `study fit`")
    return f"no power-law parameters: {reason}" if reason else "no power-law parameters"


def _band(
    n: np.ndarray, params: Mapping[str, Mapping[str, float | None]]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Envelope of the curves at the corners of the a, b, c intervals (approximate; see module)."""
    bounds = [(params[k]["ci_low"], params[k]["ci_high"]) for k in ("a", "b", "c")]
    if any(low is None or high is None for low, high in bounds):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        curves = np.array(
            [power_law(n, a, b, c) for a in bounds[0] for b in bounds[1] for c in bounds[2]]
        )
    return np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)


def save_figure(
    figure: MplFigure, folder: Path, stem: str, caption: str, title: str
) -> FigureFiles:
    """Write PNG and SVG atomically (SVG with fixed ids and no date: reruns give equal files)."""
    paths = []
    with matplotlib.rc_context({"svg.hashsalt": "tumorscale"}):
        for suffix in ("png", "svg"):
            path = folder / f"{stem}.{suffix}"
            with atomic_path(path) as temporary:
                metadata = {"Date": None} if suffix == "svg" else None
                figure.savefig(temporary, format=suffix, dpi=110, metadata=metadata)
            figure.set_layout_engine("none")  # laid out once; the second format reuses it
            paths.append(path)
    return FigureFiles(paths[0], paths[1], caption, title)


def _colours(conditions: Sequence[str]) -> dict[str, str]:
    palette = [
        "#1f77b4",
        "#d62728",
        "#2ca02c",
        "#9467bd",
        "#ff7f0e",
        "#8c564b",
        "#17becf",
        "#7f7f7f",
    ]
    return {name: palette[index % len(palette)] for index, name in enumerate(conditions)}


def _draw_points(axes: Axes, points: Sequence[Point], colour: str, shift: float) -> None:
    # Conditions share the same counts: a small multiplicative shift keeps error bars apart.
    n = np.array([p.n_real for p in points], dtype=float) * shift
    values = np.array([p.value for p in points])
    low = np.array([p.value - p.ci_low if p.ci_low is not None else 0.0 for p in points])
    high = np.array([p.ci_high - p.value if p.ci_high is not None else 0.0 for p in points])
    yerr = np.clip(np.vstack([low, high]), 0.0, None)
    axes.errorbar(n, values, yerr=yerr, fmt="o", color=colour, ms=5, capsize=3, lw=1.2, zorder=3)


def _draw_label_free(axes: Axes, point: Point, colour: str, x: float) -> None:
    """The n = 0 value (synthetic tumors only): an open diamond at `x`, left of every count."""
    low = point.value - point.ci_low if point.ci_low is not None else 0.0
    high = point.ci_high - point.value if point.ci_high is not None else 0.0
    yerr = np.clip([[low], [high]], 0.0, None)
    axes.errorbar([x], [point.value], yerr=yerr, fmt="D", color=colour, mfc="white", mec=colour,
                  ms=6, capsize=3, lw=1.2, zorder=3)  # fmt: skip


def _draw_fit(
    axes: Axes, points: Sequence[Point], fit: Mapping[str, Any], colour: str
) -> list[float]:
    """Fitted curve (solid inside the measured range, dashed beyond), band and plateau line."""
    params = law_parameters(fit)
    if params is None or not points:
        return []
    a, b, c = (params[k]["value"] for k in ("a", "b", "c"))
    n_min, n_max = points[0].n_real, points[-1].n_real
    measured = np.geomspace(n_min, n_max, 120)
    beyond = np.geomspace(n_max, n_max * EXTRAPOLATE_FACTOR, 60)
    with np.errstate(over="ignore", invalid="ignore"):
        inside, outside = power_law(measured, a, b, c), power_law(beyond, a, b, c)
    axes.plot(measured, inside, "-", color=colour, lw=1.8, zorder=2)
    axes.plot(beyond, outside, "--", color=colour, lw=1.4, zorder=2)
    bootstrap = bootstrap_band(fit)
    if bootstrap is not None:
        axes.fill_between(*bootstrap, color=colour, alpha=BOOTSTRAP_ALPHA, lw=0)
    else:  # no bootstrap band in fit.json: the approximate envelope (see the module docstring)
        every_n = np.concatenate([measured, beyond])
        if (band := _band(every_n, params)) is not None:
            axes.fill_between(every_n, *band, color=colour, alpha=APPROX_ALPHA, lw=0)
    axes.axhline(a, color=colour, ls=":", lw=1.0, zorder=1)
    return [float(v) for v in (*inside, *outside, a) if math.isfinite(v)]


def bootstrap_band(fit: Mapping[str, Any]) -> tuple[np.ndarray, ...] | None:
    """fit.json's pointwise bootstrap band (n, low, high) over the measured range, if any."""
    band = as_dict(fit.get("band"))
    columns = [[num(v) for v in as_list(band.get(k))] for k in ("n_real", "ci_low", "ci_high")]
    rows = [r for r in zip(*columns, strict=False) if all(v is not None for v in r) and r[0] > 0]
    if len(rows) < 2:
        return None
    return tuple(np.array(column, dtype=float) for column in zip(*rows, strict=True))


def _y_limits(values: Sequence[float]) -> tuple[float, float] | None:
    if not values:
        return None
    low, high = min(values), max(values)
    pad = max(0.05 * (high - low), 0.02)
    low, high = low - pad, high + pad
    if min(values) >= 0.0 and max(values) <= 1.0:  # fractions: stay near [0, 1]
        low, high = max(low, -0.02), min(high, 1.02)
    return low, high


def _draw_panel(
    axes: Axes, data: StudyData, metric: str, test_set: str, colours: Mapping[str, str]
) -> tuple[list[str], list[float]]:
    """One test set's panel; returns notes on series shown as points only, and its y values."""
    notes, y_values, counts, unfitted, fitted = [], [], set(), [], False
    conditions = list(colours)
    zero_x = _zero_position(data, metric, test_set)
    for index, condition in enumerate(conditions):
        key = (metric, test_set, condition, data.main_organ)
        points, fit = data.points.get(key, []), data.fits.get(key)
        shift = 1.0 + 0.03 * (index - (len(conditions) - 1) / 2)
        if (zero := data.label_free.get(key)) is not None and zero_x is not None:
            _draw_label_free(axes, zero, colours[condition], zero_x * shift)
            y_values += [v for v in (zero.value, zero.ci_low, zero.ci_high) if v is not None]
        if not points:
            continue
        _draw_points(axes, points, colours[condition], shift)
        y_values += [v for p in points for v in (p.value, p.ci_low, p.ci_high) if v is not None]
        curve = _draw_fit(axes, points, fit or {}, colours[condition])
        y_values, fitted = y_values + curve, fitted or bool(curve)
        counts.update(p.n_real for p in points)
        if (problem := fit_problem(fit)) is not None:
            notes.append(f"{data.test_set_label(test_set)}, {condition}: {problem}")
            unfitted.append(condition)
    ticks = sorted(counts) + ([max(counts) * EXTRAPOLATE_FACTOR] if fitted and counts else [])
    labels = [f"{n:,.0f}" for n in ticks]
    if zero_x is not None:
        if counts:  # a thin line marks the break between n = 0 and the log-scaled counts
            axes.axvline(math.sqrt(zero_x * min(counts)), color="#999999", lw=0.8, ls=":")
        ticks, labels = [zero_x, *ticks], [ZERO_TICK, *labels]
    _style_panel(axes, data.test_set_label(test_set), ticks, labels)
    if unfitted and counts:
        text = "points only (no fit or no claim): " + ", ".join(unfitted)
        axes.text(0.98, 0.02, text, ha="right", va="bottom", fontsize=7, color="#555555",
                  transform=axes.transAxes)  # fmt: skip
    return notes, y_values


def _zero_position(data: StudyData, metric: str, test_set: str) -> float | None:
    """Where this panel draws n = 0 on its log axis (None: no n = 0 value to draw): a fixed
    fraction of the smallest positive count, so it sits at the axis's left edge."""
    keys = [(metric, test_set, c, data.main_organ) for c in conditions_of(data)]
    if not any(key in data.label_free for key in keys):
        return None
    counts = [p.n_real for key in keys for p in data.points.get(key, [])]
    return ZERO_POSITION * min(counts) if counts else 1.0


def _style_panel(
    axes: Axes, title: str, ticks: list[float], labels: list[str] | None = None
) -> None:
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("real annotated scans (log scale)")
    axes.grid(True, which="major", alpha=0.3)
    if not ticks:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        return
    axes.set_xscale("log")
    axes.set_xticks(ticks, labels or [f"{n:,.0f}" for n in ticks])
    axes.minorticks_off()


def _legend_handles(data: StudyData, metric: str, colours: Mapping[str, str]) -> list:
    """One entry per condition, then only the line and band styles this figure uses."""
    handles = [Line2D([], [], color=c, marker="o", ls="-", label=n) for n, c in colours.items()]
    grey = "#555555"
    if any(k[0] == metric and k[3] == data.main_organ for k in data.label_free):
        handles.append(Line2D([], [], color=grey, marker="D", mfc="white", ls="none",
                              label="0 real scans (synthetic tumors only)"))  # fmt: skip
    fits = [f for k, f in data.fits.items() if k[0] == metric and k[3] == data.main_organ]
    fitted = [f for f in fits if law_parameters(f) is not None]
    if not fitted:
        return handles
    handles += [
        Line2D([], [], color=grey, ls="-", label="power-law fit (measured range)"),
        Line2D([], [], color=grey, ls="--", label="extrapolation"),
        Line2D([], [], color=grey, ls=":", label="plateau a"),
    ]
    if any(bootstrap_band(f) is not None for f in fitted):
        handles.append(Patch(color=grey, alpha=BOOTSTRAP_ALPHA + 0.1, label="bootstrap band"))
    if any(bootstrap_band(f) is None for f in fitted):
        label = "approx. band (a, b, c intervals)"
        handles.append(Patch(color=grey, alpha=APPROX_ALPHA + 0.05, label=label))
    return handles


def metric_figure(data: StudyData, metric: str, folder: Path) -> tuple[FigureFiles, list[str]]:
    """Metric vs real scans, one panel per test set side by side, one colour per condition."""
    test_sets, colours = test_sets_of(data), _colours(conditions_of(data))
    figure = MplFigure(figsize=(4.6 * max(len(test_sets), 1) + 0.6, 4.4), layout="constrained")
    panels = figure.subplots(1, max(len(test_sets), 1), squeeze=False, sharey=True)[0]
    notes: list[str] = []
    y_values: list[float] = []
    for axes, test_set in zip(panels, test_sets, strict=False):
        panel_notes, panel_values = _draw_panel(axes, data, metric, test_set, colours)
        notes, y_values = notes + panel_notes, y_values + panel_values
    if (limits := _y_limits(y_values)) is not None:
        panels[0].set_ylim(*limits)  # shared by every panel, so set once from all of them
    panels[0].set_ylabel(metric_label(metric))
    figure.legend(
        handles=_legend_handles(data, metric, colours),
        loc="outside lower center",
        ncols=4,
        fontsize=8,
    )
    caption = (
        f"{metric_label(metric)} against the number of real annotated scans "
        f"({data.main_organ}). Points: "
        "mean over seeds with its confidence interval (where known); solid: power law a − b·n^(−c) "
        f"over the measured range; dashed: extrapolation to {EXTRAPOLATE_FACTOR:g}× the largest "
        "count; shaded: the 95% pointwise bootstrap band of `study fit` (measured range), or, "
        "lighter, where fit.json has no band, an approximate envelope from the a, b, c "
        "intervals; dotted: plateau a. Open diamonds at the left edge, where present: "
        f"{ZERO_LABEL}, runs trained on synthetic tumors with no real annotated scan, "
        "never part of a fit. Curves `study fit` reads no claim off are shown as points only."
    )
    title = f"{metric_label(metric)} against real scans"
    return save_figure(figure, folder, f"metric_{slug(metric)}", caption, title), notes


def _count_colours(counts: Sequence[int | None]) -> dict[int | None, Any]:
    """Sequential colours by real-scan count (viridis, small to large); grey for unknown."""
    known = sorted(n for n in set(counts) if n is not None)
    cmap = matplotlib.colormaps["viridis"]
    colours: dict[int | None, Any] = {
        n: cmap(0.9 * i / max(len(known) - 1, 1)) for i, n in enumerate(known)
    }
    return colours | {None: "#888888"}


def loss_figure(data: StudyData, folder: Path) -> FigureFiles | None:
    """Each run's logged training loss against iteration, one panel per condition, coloured by
    n_real, dashed where the run did not learn (None: no run has a readable log)."""
    by_condition: dict[str, list[TrainedRun]] = defaultdict(list)
    for run in data.trained_runs:  # already in condition, n_real, seed order
        if run.learning.losses:
            by_condition[run.condition].append(run)
    if not by_condition:
        return None
    runs = [run for group in by_condition.values() for run in group]
    colours = _count_colours([run.n_real for run in runs])
    figure = MplFigure(figsize=(4.6 * len(by_condition) + 0.6, 4.0), layout="constrained")
    panels = figure.subplots(1, len(by_condition), squeeze=False, sharey=True)[0]
    for axes, (condition, group) in zip(panels, by_condition.items(), strict=True):
        for run in group:
            style = "--" if run.learning.learned is False else "-"
            axes.plot(run.learning.iterations, run.learning.losses, style,
                      color=colours[run.n_real], lw=1.2)  # fmt: skip
        axes.set_title(condition, fontsize=10)
        axes.set_xlabel("iteration")
        axes.grid(True, alpha=0.3)
    panels[0].set_ylabel("training loss (mean per logged interval)")
    figure.legend(handles=_loss_legend(runs, colours), loc="outside lower center", ncols=5,
                  fontsize=8)  # fmt: skip
    caption = (
        "Training loss of every run with a readable log (runs/<id>/train/log.csv), one panel per "
        "condition, coloured by the number of real annotated scans; dashed: the run did not "
        f"learn ({LEARNED_RULE})."
    )
    return save_figure(figure, folder, "training_loss", caption, "training loss of every run")


def _loss_legend(runs: Sequence[TrainedRun], colours: Mapping[int | None, Any]) -> list:
    counts = sorted({run.n_real for run in runs}, key=lambda n: (n is None, n or 0))
    handles = [
        Line2D([], [], color=colours[n], label="n_real unknown" if n is None else f"n_real = "
               f"{count_text(n)}")
        for n in counts
    ]  # fmt: skip
    if any(run.learning.learned is False for run in runs):
        handles.append(Line2D([], [], color="#555555", ls="--", label="did not learn"))
    return handles
