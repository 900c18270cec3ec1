"""What a phantom cohort looks like: spacing, tumor share, scanner style, grid, orientation."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from tumorscale.organs import TUMOR_ORGANS
from tumorscale.phantom.tissues import STYLES

# Orientations seen in the wild (DICOM-derived LPS, NIfTI RAS / LAS, feet-first I variants).
DEFAULT_ORIENTATIONS: tuple[str, ...] = ("LPS", "RAS", "LAS", "RPI", "LPI")
_AXIS_PAIRS = ({"L", "R"}, {"A", "P"}, {"S", "I"})


@dataclass(frozen=True)
class PhantomOptions:
    """Options of `generate_phantom` / `write_cohort`; all sizes in mm.

    inplane_spacing_mm, slice_spacing_mm: (low, high) ranges each case's spacing is drawn from.
    tumor_fraction: share of cases that carry reference tumors (the rest are controls).
    style: "standard" (portal-venous phase) or "ood" (arterial-ish, noisier, thicker slices).
    shape: a fixed grid shape (i, j, k in RAS order); the spacing then follows from the field
      of view (the spacing ranges are not used).
    tumor_organs: organs that may carry tumors (among pancreas, liver, kidney, colon, esophagus,
      uterus); a case's organs are chosen at random among these that it has.
    female_fraction: probability that a case is female (has a uterus).
    orientations: axis codes a case is written in, chosen per case in turn (index 1 gets the
      first).
    noise_sd_hu: (low, high) noise standard deviation; None uses the style's range.
    fov_margin_mm: air kept around the body on each side of the in-plane field of view.
    """

    inplane_spacing_mm: tuple[float, float] = (0.6, 1.0)
    slice_spacing_mm: tuple[float, float] = (1.0, 5.0)
    tumor_fraction: float = 0.5
    style: str = "standard"
    shape: tuple[int, int, int] | None = None
    tumor_organs: tuple[str, ...] = TUMOR_ORGANS
    female_fraction: float = 0.5
    orientations: tuple[str, ...] = DEFAULT_ORIENTATIONS
    noise_sd_hu: tuple[float, float] | None = None
    fov_margin_mm: float = 12.0

    def __post_init__(self) -> None:
        for name in ("inplane_spacing_mm", "slice_spacing_mm"):
            _check_range(name, getattr(self, name), upper_mm=20.0)
        if self.noise_sd_hu is not None:
            low, high = _pair("noise_sd_hu", self.noise_sd_hu)
            if not 0 <= low <= high:
                raise ValueError(f"noise_sd_hu must be 0 <= low <= high; got {self.noise_sd_hu}")
        if not isinstance(self.fov_margin_mm, int | float) or not 0 <= self.fov_margin_mm <= 200:
            raise ValueError(f"fov_margin_mm must be in [0, 200] mm; got {self.fov_margin_mm!r}")
        for name in ("tumor_fraction", "female_fraction"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}")
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}; choose from {', '.join(STYLES)}")
        if self.shape is not None:
            shape = tuple(self.shape)
            if len(shape) != 3 or not all(isinstance(n, int) and n >= 16 for n in shape):
                raise ValueError(f"shape must be three integers >= 16; got {self.shape!r}")
            object.__setattr__(self, "shape", shape)
        unknown = [organ for organ in self.tumor_organs if organ not in TUMOR_ORGANS]
        if unknown or not self.tumor_organs:
            raise ValueError(
                f"tumor_organs must be a non-empty subset of {', '.join(TUMOR_ORGANS)}; "
                f"got {self.tumor_organs!r}"
            )
        object.__setattr__(self, "tumor_organs", tuple(self.tumor_organs))
        if not self.orientations:
            raise ValueError("orientations must name at least one axis code such as 'LPS'")
        for code in self.orientations:
            letters = [set(code.upper()) & pair for pair in _AXIS_PAIRS]
            if len(code) != 3 or any(len(found) != 1 for found in letters):
                raise ValueError(f"orientation {code!r} is not a 3-letter axis code such as 'LPS'")
        object.__setattr__(self, "orientations", tuple(code.upper() for code in self.orientations))

    def signature(self) -> str:
        """A canonical JSON text of the options (what a completed case was made with)."""
        return json.dumps(asdict(self), sort_keys=True)


def _pair(name: str, value: object) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair; got {value!r}") from None
    return low, high


def _check_range(name: str, value: object, upper_mm: float) -> None:
    low, high = _pair(name, value)
    if not (0.0 < low <= high <= upper_mm):
        raise ValueError(f"{name} must satisfy 0 < low <= high <= {upper_mm:g} mm; got {value!r}")
