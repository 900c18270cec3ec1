"""Tumor sizes shared by every module: equivalent diameter and the paper's size classes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SizeClass:
    """One of the paper's tumor size classes (equivalent diameter in [min_mm, max_mm))."""

    name: str  # what records, options and the synthesizer say: "small"
    label: str  # how tables and reports print it, in mm: "<20"
    min_mm: float
    max_mm: float


# The paper's size analysis: small < 20 mm, medium 20-50 mm (50 itself included), large > 50 mm.
SIZE_CLASSES: tuple[SizeClass, ...] = (
    SizeClass("small", "<20", 0.0, 20.0),
    SizeClass("medium", "20-50", 20.0, 50.0),
    SizeClass("large", ">50", 50.0, math.inf),
)
SIZE_CLASS_NAMES: tuple[str, ...] = tuple(size.name for size in SIZE_CLASSES)
SIZE_CLASS_LABELS: tuple[str, ...] = tuple(size.label for size in SIZE_CLASSES)


def equivalent_diameter_mm(volume_mm3: float | np.ndarray) -> float | np.ndarray:
    """Diameter (mm) of the sphere with the given volume (mm³): 2·(3V/4π)^(1/3)."""
    diameter = 2.0 * np.cbrt(3.0 * np.asarray(volume_mm3, dtype=float) / (4.0 * math.pi))
    return float(diameter) if np.ndim(diameter) == 0 else diameter


def size_class_of(diameter_mm: float) -> SizeClass:
    """The size class of an equivalent diameter; 50 mm itself is medium."""
    if diameter_mm < 0:
        raise ValueError(f"diameter must be >= 0 mm, got {diameter_mm}")
    for size in SIZE_CLASSES:
        if size.min_mm <= diameter_mm < size.max_mm or diameter_mm == size.max_mm == 50.0:
            return size
    raise ValueError(f"diameter must be finite, got {diameter_mm}")


def in_size_class(diameter_mm: float, size_class: str) -> bool:
    """Whether a built tumor's equivalent diameter lies in the named size class (a tumor that
    built nothing, 0 mm, has none)."""
    if size_class not in SIZE_CLASS_NAMES:
        names = ", ".join(SIZE_CLASS_NAMES)
        raise ValueError(f"size class must be one of {names}; got {size_class!r}")
    return diameter_mm > 0 and size_class_of(diameter_mm).name == size_class
