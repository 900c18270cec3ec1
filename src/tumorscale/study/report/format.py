"""Values as the report reads and writes them: defensive coercions and number formatting.

fit.json and the run tables may hold anything (a hand-edited file, an older schema): every value
is read through `num`, `as_dict` and `as_list`, and shown through the `fmt_*` functions.
"""

from __future__ import annotations

import math
import re
from typing import Any

from tumorscale.metrics.labels import long_label

N_CAP_FACTOR = 100  # counts beyond 100× the largest measured n read as "> that" (as fit.md)
EMPTY = "–"
ZERO_LABEL = "0 (synthetic only)"  # n = 0: no real scans, synthetic tumors only


def num(value: object) -> float | None:
    """A finite float, or None for anything missing, empty, NaN or not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def metric_label(metric: str) -> str:
    return long_label(metric)


def fmt_value(value: object) -> str:
    number = num(value)
    if number is None:
        return EMPTY
    return f"{number:,.0f}" if abs(number) >= 100 else f"{number:.3f}"


def fmt_count(value: object) -> str:
    number = num(value)
    return EMPTY if number is None else f"{number:,.0f}"


def fmt_interval(value: object, low: object, high: object, fmt=fmt_value) -> str:
    """`0.812 [0.790, 0.830]`; the bracket is left out when the interval is unknown."""
    text = fmt(value)
    if num(low) is not None and num(high) is not None and text != EMPTY:
        text += f" [{fmt(low)}, {fmt(high)}]"
    return text


def fmt_estimate(estimate: object, fmt=fmt_value) -> str:
    """A `{"value", "ci_low", "ci_high", "extrapolated"?, "ci_extrapolated"?}` record as text."""
    record = as_dict(estimate)
    text = fmt_interval(record.get("value"), record.get("ci_low"), record.get("ci_high"), fmt)
    if text == EMPTY:
        return text
    if record.get("extrapolated"):
        return f"{text} (extrapolated)"
    return f"{text} (interval extrapolated)" if record.get("ci_extrapolated") else text


def fmt_scan_count(estimate: object) -> str:
    """A real-scan count estimate; past `N_CAP_FACTOR`× the measured range it reads `> N`."""
    record = as_dict(estimate)
    measured = [num(v) for v in as_list(record.get("measured_range"))]
    cap = measured[-1] * N_CAP_FACTOR if measured and measured[-1] is not None else math.inf

    def count(value: object) -> str:  # far past the data the number itself means little
        number = num(value)
        return f"> {cap:,.0f}" if number is not None and number > cap else fmt_count(number)

    value = num(record.get("value"))
    if value is not None and value > cap:
        return f"{count(value)} (extrapolated)"
    return fmt_estimate(record, count)


def fmt_ratio(value: object) -> str:
    number = num(value)
    return EMPTY if number is None else f"{number:.2f}×"


def count_text(n_real: int) -> str:
    return ZERO_LABEL if n_real == 0 else f"{n_real:,}"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"
