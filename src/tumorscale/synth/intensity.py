"""Tumor intensities added onto the scan: the scan's own noise is kept, the contrast is reached.

new = ct + occupancy * (target + noise - ct), where noise is the scan's own residual noise at that
place (`noise.py`) and target = organ median + contrast + texture (mean-normalised) + necrosis,
blended with the rim. So the tumor carries the background's noise (fixes DiffTumor's noise
mismatch, §2c) and the intended contrast is met: one offset of the whole tumor is solved so that
the median of the written tumor voxels minus the organ median equals `contrast_hu` (edge blur,
rim and necrosis would otherwise pull it away). All work is on the tumor's bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tumorscale.masks import bounding_box
from tumorscale.synth.noise import tumor_noise
from tumorscale.synth.shape import NOISE_STREAM, TEXTURE_STREAM
from tumorscale.synth.texture import mean_normalised, smooth_random_field
from tumorscale.synth.types import TumorParams

_SOLVE_STEPS = 8
_SOLVE_SAMPLE = 40_000
_MAX_OFFSET_HU = 150.0  # the weight is >= 0.5 on tumor voxels, so this is never binding


@dataclass(frozen=True)
class Painted:
    """The new HU of a box of the crop and what the tumor achieved."""

    box: tuple[slice, slice, slice]
    values: np.ndarray  # float32 (already rounded when the scan is integer-valued)
    achieved_contrast_hu: float


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else float("nan")


def paint_tumor(
    params: TumorParams,
    ct: np.ndarray,
    original: np.ndarray,
    occupancy: np.ndarray,
    tumor: np.ndarray,
    necrosis: np.ndarray | None,
    rim: np.ndarray | None,
    organ_median_hu: float,
    spacing_mm: tuple[float, float, float],
    hu_range: tuple[float, float],
    integer: bool,
) -> Painted | None:
    """Tumor HU for the crop `ct` (float32, already pushed); None if the occupancy is empty.

    The noise comes from `original` (the crop before the push): interpolation smooths noise,
    so the tumor takes the scan's untouched noise at its own place."""
    box = bounding_box(occupancy > 0)
    if box is None:
        return None
    scan = ct[box]
    occ = occupancy[box]
    inside = tumor[box]
    noise_rng = np.random.default_rng([params.seed, NOISE_STREAM])
    noise = tumor_noise(original, box, spacing_mm, noise_rng)
    rng = np.random.default_rng([params.seed, TEXTURE_STREAM])
    texture = smooth_random_field(rng, scan.shape, spacing_mm, params.texture_grain_mm)
    texture = mean_normalised(texture, inside)
    body = np.float32(organ_median_hu + params.contrast_hu)
    body = body + np.float32(params.texture_sd_hu) * texture
    if necrosis is not None:
        body += np.float32(params.necrosis_hu) * necrosis[box]
    if rim is not None:
        shell = rim[box]
        body = body * (1 - shell) + shell * np.float32(organ_median_hu + params.rim_hu)
    values = scan + occ * (body + noise - scan)
    # One offset for the whole tumor (rim and core keep their contrast to the body).
    offset = _solve_offset(values[inside], occ[inside], organ_median_hu + params.contrast_hu)
    values += np.float32(offset) * occ
    np.clip(values, hu_range[0], hu_range[1], out=values)
    if integer:
        np.rint(values, out=values)
    return Painted(box, values, _median(values[inside]) - organ_median_hu)


def _solve_offset(values: np.ndarray, weight: np.ndarray, goal: float) -> float:
    """Offset d with median(values + weight * d) == goal (secant steps; monotone in d since
    weight >= 0.5 on tumor voxels)."""
    if values.size == 0:
        return 0.0
    if values.size > 4 * _SOLVE_SAMPLE:  # iterate on a subsample, finish on all voxels
        step = values.size // _SOLVE_SAMPLE
        rough = _solve_offset(values[::step], weight[::step], goal)
        final = _median(values + weight * np.float32(rough)) - goal
        return float(np.clip(rough - final / max(_median(weight), 0.5), -_MAX_OFFSET_HU,
                             _MAX_OFFSET_HU))
    d0, f0 = 0.0, _median(values) - goal
    d1 = float(np.clip(-f0 / max(_median(weight), 0.5), -_MAX_OFFSET_HU, _MAX_OFFSET_HU))
    for _ in range(_SOLVE_STEPS):
        f1 = _median(values + weight * np.float32(d1)) - goal
        if abs(f1) < 0.05 or f1 == f0:
            break
        step = f1 * (d1 - d0) / (f1 - f0)
        d0, f0 = d1, f1
        d1 = float(np.clip(d1 - step, -_MAX_OFFSET_HU, _MAX_OFFSET_HU))
    return d1
