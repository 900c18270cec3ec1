"""fit.json and fit.md: what `study fit` writes, and the per-case CSV it reads.

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tumorscale.errors import InputFileError
from tumorscale.io import write_text_atomic
from tumorscale.metrics.labels import short_label
from tumorscale.metrics.pooled import cell_number, cell_text
from tumorscale.study.headlines import headline_section, n_ci, v_ci

REQUIRED_COLUMNS = (
    "run_id", "n_real", "synthetic_ratio", "seed", "test_set", "condition",
    "case_id", "organ", "tumor_status",
)  # fmt: skip
Record = dict[str, Any]
Row = Mapping[str, object]


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


def condition_names(rows: Sequence[Row]) -> dict[float, str]:
    """synthetic_ratio → condition name; one name per ratio (conditions are keyed by ratio)."""
    names: dict[float, set[str]] = {}
    for row in rows:
        names.setdefault(float(cell_number(row["synthetic_ratio"])), set()).add(
            cell_text(row.get("condition"))
        )
    clashing = {ratio: sorted(n) for ratio, n in names.items() if len(n) > 1}
    if clashing:
        raise ValueError(
            f"conditions are keyed by synthetic_ratio, but these share one: {clashing}"
        )
    return {ratio: next(iter(n)) or _default_name(ratio) for ratio, n in names.items()}


def _default_name(ratio: float) -> str:
    return "real only" if ratio == 0 else f"real + {ratio:g}x synthetic"


def check_columns(rows: Sequence[Row]) -> None:
    """A clear error when `rows` are empty or lack a column the fit needs."""
    if not rows:
        raise ValueError("no per-case rows to fit")
    missing = [column for column in REQUIRED_COLUMNS if column not in rows[0]]
    if missing:
        raise ValueError(f"per-case rows lack the columns {missing}")


def json_safe(value: object) -> object:
    """NaN/inf → None, numpy scalars → Python, recursively (fit.json stays strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value


def _condition_label(ratio: float, name: str) -> str:
    return "Real only" if ratio == 0 else f"with {ratio:g}× synthetic ({name})"


def _fit_table(fits: list[Record], levels: Sequence[str]) -> list[str]:
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
        n_at = " | ".join(n_ci(f["n_at"][level]) if shown else "–" for level in levels)
        slope = f["log_linear"]["slope"]
        label = _condition_label(f["synthetic_ratio"], f["condition"])
        note = law["reason"] if not law["converged"] else law["warning"]
        if not shown:
            note = "no claim: " + "; ".join(claims["reasons"])
        lines.append(
            f"| {short_label(f['metric'])} | {label} | {v_ci(law['a']) if shown else '–'} "
            f"| {v_ci(law['b'], 3)} | {v_ci(law['c'])} | {n_at} "
            f"| {_yes_no(f['saturated']['value'])} | {'–' if slope is None else f'{slope:.3f}'} "
            f"| {note or ''} |"
        )
    return lines


def _yes_no(value: object) -> str:
    return {True: "yes", False: "no"}.get(value, "–")  # type: ignore[call-overload]


def _points_table(fits: list[Record]) -> list[str]:
    lines = ["| metric | condition | n real | value [95% CI] | seeds |", "|---|---|---|---|---|"]
    for f in fits:
        label = _condition_label(f["synthetic_ratio"], f["condition"])
        zero = [f["label_free"]] if f.get("label_free") else []
        for p in zero + f["points"]:
            n_text = f"{p['n_real']:,}" if p["n_real"] else "0 (synthetic only)"
            lines.append(
                f"| {short_label(f['metric'])} | {label} | {n_text} | {v_ci(p)} | {p['n_seeds']} |"
            )
    return lines


def _savings_table(savings: list[Record]) -> list[str]:
    lines = [
        "| metric | condition | target | real-only n | n with synthetic | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for s in savings:
        target = s["target"]
        what = (
            f"real-only value at n = {target['parameter']:,.0f} ({v_ci(target)})"
            if target["kind"] == "real_only_at_n"
            else f"{target['parameter']:.0%} of real-only plateau ({v_ci(target)})"
        )
        lines.append(
            f"| {short_label(s['metric'])} | {s['synthetic_ratio']:g}× synthetic | {what} "
            f"| {n_ci(s['n_real_only'])} | {n_ci(s['n_with_synthetic'])} "
            f"| {v_ci(s['ratio'], 1)}{' (extrapolated)' if s['extrapolated'] else ''} |"
        )
    return lines


def markdown_fit(data: Record) -> str:
    """fit.md from fit.json's content: headlines, then per test set × organ tables."""
    levels = [f"{float(level):g}" for level in data["settings"].get("levels", [])]
    lines = headline_section(data)
    groups: dict[tuple[str, str], list[Record]] = {}
    for f in data["fits"]:
        groups.setdefault((f["test_set"], f["organ"]), []).append(f)
    for (test_set, organ), fits in groups.items():
        savings = [s for s in data["savings"] if (s["test_set"], s["organ"]) == (test_set, organ)]
        lines += ["", f"## {test_set} — {organ}", "", "### Fits", "", *_fit_table(fits, levels)]
        if savings:
            lines += ["", "### Real scans saved by synthetic data", "", *_savings_table(savings)]
        lines += ["", "### Measured points", "", *_points_table(fits)]
    return "\n".join(lines) + "\n"


def write_fit_files(data: Record, out_dir: str | Path) -> tuple[Path, Path]:
    """Write fit.json (`data`, already JSON-safe) and fit.md atomically into out_dir; returns
    their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "fit.json", out / "fit.md"
    write_text_atomic(json_path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(md_path, markdown_fit(data))
    return json_path, md_path
