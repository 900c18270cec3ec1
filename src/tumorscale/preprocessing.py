"""The preprocessing record: how a CT becomes network input, in one place for every layer.

`Preprocessing` holds the target voxel spacing (mm, RAS x, y, z), the HU window and the
intensity range the window is mapped onto. The preprocessed cache
(`data.settings.PreprocessSettings`), the training config (`train.config.DataConfig`) and the
model file (`models.spec.ModelSpec`) each embed this one record, and `scale_intensity` is the one
function that turns HU into network intensities, in training (patches read from the cache) and
in prediction (`infer.preprocess.prepare_input`) alike.

Defaults: the paper's 1.5 mm isotropic and HU window [-175, 250], mapped to HU / 100
([-1.75, 2.5]) rather than the paper's [0, 1]. Input 0 then sits at water, so the unnormalised
pointwise stem of `tiny` (and MONAI's residual UNet) starts its thresholds at the fat /
soft-tissue boundary and learns about twice as fast. It then reads absolute HU: trained without
augmentation it does not transfer to another scanner style; with the intensity augmentations
it did, close to [0, 1] (`benchmarks/RESULTS.md`, tenth session). Networks with a normalised
stem (`S`, `M`, `L`) are invariant to the map.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

import numpy as np

MAX_SPACING_MM = 50.0
UNIT_RANGE = (0.0, 1.0)  # the paper's map; the default of records written before HU / 100
# The default window [-175, 250] HU as HU / 100.
WATER_RANGE = (-1.75, 2.5)


@dataclass(frozen=True)
class Preprocessing:
    """Target spacing, HU window and intensity range (sizes in mm, intensities in HU).

    spacing_mm: target voxel size per RAS axis (one number: isotropic).
    hu_window: (low, high) HU; intensities are clipped to it.
    intensity_range: (low, high) the clipped window is mapped onto linearly; None keeps the
      clipped HU unscaled.
    """

    spacing_mm: tuple[float, float, float] = (1.5, 1.5, 1.5)
    hu_window: tuple[float, float] = (-175.0, 250.0)
    intensity_range: tuple[float, float] | None = WATER_RANGE

    def __post_init__(self) -> None:
        spacing = self.spacing_mm
        if isinstance(spacing, int | float):
            spacing = (spacing, spacing, spacing)
        spacing = _floats(spacing, "spacing_mm")
        if len(spacing) != 3 or not all(0 < v <= MAX_SPACING_MM for v in spacing):
            raise ValueError(f"spacing_mm must be three sizes in (0, {MAX_SPACING_MM:g}] mm; "
                             f"got {self.spacing_mm!r}")  # fmt: skip
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "hu_window", _interval(self.hu_window, "hu_window"))
        if self.intensity_range is not None:
            interval = _interval(self.intensity_range, "intensity_range")
            object.__setattr__(self, "intensity_range", interval)

    @property
    def pad_value(self) -> float:
        """The network intensity of air beyond a volume's border (the window's low end)."""
        if self.intensity_range is None:
            return self.hu_window[0]
        return self.intensity_range[0]

    @property
    def intensity_span(self) -> float:
        """How many network intensity units the HU window spans (4.25 for the default)."""
        low, high = self.intensity_range or self.hu_window
        return high - low

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (lists, not tuples)."""
        return {
            "spacing_mm": list(self.spacing_mm),
            "hu_window": list(self.hu_window),
            "intensity_range": None if self.intensity_range is None else list(self.intensity_range),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Inverse of `to_dict`; missing keys take the defaults, unknown keys are an error."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing key(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(data))

    def with_legacy(self, **legacy: Any) -> Preprocessing:
        """This record with the values given under older, flat names (None: not given):
        spacing_mm / target_spacing_mm, hu_window / hu_clip, intensity_range, and scale_to_unit
        (False: no scaling; True: keep the range, [0, 1] if there was none)."""
        changes: dict[str, Any] = {}
        aliases = {"spacing_mm": "spacing_mm", "target_spacing_mm": "spacing_mm",
                   "hu_window": "hu_window", "hu_clip": "hu_window",
                   "intensity_range": "intensity_range"}  # fmt: skip
        for name, value in legacy.items():
            if value is None:
                continue
            if name == "scale_to_unit":
                if not isinstance(value, bool | np.bool_):
                    raise ValueError(f"scale_to_unit must be true or false; got {value!r}")
                range_ = changes.get("intensity_range", self.intensity_range)
                changes["intensity_range"] = (range_ or UNIT_RANGE) if value else None
            elif name in aliases:
                changes[aliases[name]] = value
            else:
                raise TypeError(f"unknown preprocessing setting {name!r}")
        return replace(self, **changes) if changes else self


class HasPreprocessing(Protocol):
    """A record that embeds the preprocessing (PreprocessSettings, ModelSpec, DataConfig)."""

    @property
    def preprocessing(self) -> Preprocessing: ...


def scale_intensity(hu: np.ndarray, record: Preprocessing | HasPreprocessing) -> np.ndarray:
    """HU clipped to the record's window and mapped linearly onto its intensity range; float32.

    `record` is a `Preprocessing` or a record that embeds one (`.preprocessing`). Training
    (patches read from the cache) and prediction (`infer.preprocess.prepare_input`) both call
    this function, so the network sees the same numbers for the same HU.
    """
    settings = record if isinstance(record, Preprocessing) else record.preprocessing
    low, high = settings.hu_window
    clipped = np.clip(hu.astype(np.float32, copy=False), low, high)
    if settings.intensity_range is None:
        return clipped
    scaled = clipped - np.float32(low)
    scaled *= np.float32(1.0 / (high - low))
    out_low, out_high = settings.intensity_range
    if (out_low, out_high) != UNIT_RANGE:
        scaled = scaled * np.float32(out_high - out_low) + np.float32(out_low)
    return scaled


def _floats(values: Any, name: str) -> tuple[float, ...]:
    try:
        result = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers; got {values!r}") from None
    if not all(math.isfinite(v) for v in result):
        raise ValueError(f"{name} must be finite; got {values!r}")
    return result


def _interval(values: Any, name: str) -> tuple[float, float]:
    interval = _floats(values, name)
    if len(interval) != 2 or not interval[0] < interval[1]:
        raise ValueError(f"{name} must be (low, high) with low < high; got {values!r}")
    return interval[0], interval[1]
