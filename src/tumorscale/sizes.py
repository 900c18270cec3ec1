"""Tumor size conventions shared by every module: equivalent diameter and the paper's size bins."""

from __future__ import annotations

import math

import numpy as np

# Equivalent-diameter bins of the paper's size analysis: small, medium, large.
SIZE_BINS_MM: tuple[tuple[str, float, float], ...] = (
    ("<20", 0.0, 20.0),
    ("20-50", 20.0, 50.0),
    (">50", 50.0, math.inf),
)


def equivalent_diameter_mm(volume_mm3: float | np.ndarray) -> float | np.ndarray:
    """Diameter (mm) of the sphere with the given volume (mm³): 2·(3V/4π)^(1/3)."""
    diameter = 2.0 * np.cbrt(3.0 * np.asarray(volume_mm3, dtype=float) / (4.0 * math.pi))
    return float(diameter) if np.ndim(diameter) == 0 else diameter


# The synthesizer's size classes and the bin each one stands for.
SIZE_CLASS_BINS: dict[str, str] = {"small": "<20", "medium": "20-50", "large": ">50"}


def in_size_class(diameter_mm: float, size_class: str) -> bool:
    """Whether a built tumor's equivalent diameter lies in its size class's bin (a tumor that
    built nothing, 0 mm, has none)."""
    return diameter_mm > 0 and size_bin(diameter_mm) == SIZE_CLASS_BINS[size_class]


def size_bin(diameter_mm: float) -> str:
    """The size bin ('<20', '20-50', '>50') of an equivalent diameter; 50 mm itself is medium."""
    if diameter_mm < 0:
        raise ValueError(f"diameter must be >= 0 mm, got {diameter_mm}")
    for name, low, high in SIZE_BINS_MM:
        if low <= diameter_mm < high or diameter_mm == high == 50.0:
            return name
    raise ValueError(f"diameter must be finite, got {diameter_mm}")
