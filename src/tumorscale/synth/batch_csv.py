"""`synthesis.csv`: one row per tumor of a synthetic case, and back to the tumor's parameters.

Columns: case_id, source_id, organ, tumor (number among the case's inserted tumors of that
organ), every `TumorParams` field flattened (center_x_mm ..., semi_axis_scale_1 ...,
rotation_11 ..., geometry as JSON), the achieved contrast, diameter and organ median, and the
reason a tumor was skipped. Floats keep full precision so the CSV reproduces the records exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path

from tumorscale.io import write_csv_atomic
from tumorscale.synth.types import TumorParams, TumorRecord


def _param_columns() -> list[str]:
    columns: list[str] = []
    for item in fields(TumorParams):
        if item.name == "organ":
            continue
        if item.name == "center_mm":
            columns += ["center_x_mm", "center_y_mm", "center_z_mm"]
        elif item.name == "semi_axis_scale":
            columns += [f"semi_axis_scale_{i}" for i in (1, 2, 3)]
        elif item.name == "rotation":
            columns += [f"rotation_{r}{c}" for r in (1, 2, 3) for c in (1, 2, 3)]
        else:
            columns.append(item.name)
    return columns


PARAM_COLUMNS: tuple[str, ...] = tuple(_param_columns())
CSV_COLUMNS: tuple[str, ...] = (
    "case_id",
    "source_id",
    "organ",
    "tumor",
    *PARAM_COLUMNS,
    "achieved_contrast_hu",
    "achieved_diameter_mm",
    "organ_median_hu",
    "skipped",
)


def _flat_params(params: TumorParams) -> dict[str, object]:
    data = params.to_dict()
    row: dict[str, object] = {}
    for name in PARAM_COLUMNS:
        if name.startswith("center_"):
            row[name] = float(params.center_mm["xyz".index(name[7])])
        elif name.startswith("semi_axis_scale_"):
            row[name] = float(params.semi_axis_scale[int(name[-1]) - 1])
        elif name.startswith("rotation_"):
            row[name] = float(params.rotation[3 * (int(name[-2]) - 1) + int(name[-1]) - 1])
        elif name == "geometry":
            row[name] = json.dumps(data["geometry"], sort_keys=True)
        else:
            row[name] = data[name]
    return row


def record_row(case_id: str, source_id: str, tumor: int | None, record: TumorRecord) -> dict:
    """One synthesis.csv row (JSON-ready) for a tumor record; `tumor` numbers inserted tumors."""
    row: dict[str, object] = dict.fromkeys(CSV_COLUMNS)
    row.update(case_id=case_id, source_id=source_id, organ=record.organ, tumor=tumor)
    if record.params is not None:
        row.update(_flat_params(record.params))
    for name in ("achieved_contrast_hu", "achieved_diameter_mm", "organ_median_hu"):
        value = getattr(record, name)
        row[name] = None if value is None else float(value)
    row["skipped"] = record.skipped
    return row


def params_from_row(row: dict[str, object]) -> TumorParams:
    """Rebuild the `TumorParams` of a synthesis.csv row (as dict of strings or of JSON values)."""

    def number(name: str) -> float:
        return float(row[name])  # type: ignore[arg-type]

    data: dict[str, object] = {"organ": row["organ"]}
    for item in fields(TumorParams):
        name = item.name
        if name == "organ":
            continue
        if name == "center_mm":
            data[name] = tuple(number(f"center_{a}_mm") for a in "xyz")
        elif name == "semi_axis_scale":
            data[name] = tuple(number(f"semi_axis_scale_{i}") for i in (1, 2, 3))
        elif name == "rotation":
            data[name] = tuple(number(f"rotation_{r}{c}") for r in (1, 2, 3) for c in (1, 2, 3))
        elif name == "geometry":
            value = row.get(name)
            data[name] = json.loads(value) if isinstance(value, str) and value else value
        elif name in ("kind", "size_class", "phase"):
            data[name] = str(row[name])
        elif name == "seed":
            data[name] = int(float(row[name]))  # type: ignore[arg-type]
        elif name == "exophytic":
            data[name] = row[name] in (True, "True", "true", "1", 1)
        else:
            data[name] = number(name)
    return TumorParams.from_dict(data)


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def write_synthesis_csv(path: Path, rows: Iterable[dict]) -> None:
    """Write synthesis.csv atomically (fixed column order, floats with full precision)."""
    write_csv_atomic(path, CSV_COLUMNS, rows, _csv_value)
