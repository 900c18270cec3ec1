"""An "anchor-style" tumor synthesizer: a speed baseline modelled on the public SyntheticTumors way.

What it models: the per-sample cost of the widely used public liver-tumor generator
(SyntheticTumors; licensed CC BY-NC-ND). This module is written ONLY from the following published
or measured facts and general knowledge; none of that code was looked at, copied or adapted:

- it is called once per training sample on the whole 1 mm CT volume and its label map, and crops
  to the organ's (liver's) bounding box itself;
- one precomputed correlated-noise texture per data-loader process (the public one costs ~70 s and
  3.1 GB once per process); here `precompute_texture` builds one Gaussian-filtered uniform-noise
  texture large enough for the largest organ box, outside any timed region, and reports its cost;
- per tumor: a location inside the organ (a random organ voxel; the optional vessel / edge checks
  are left out, which only makes this baseline cheaper), an ellipsoid with random axes, an elastic
  deformation of the ellipsoid mask (random displacement field, Gaussian-smoothed,
  `scipy.ndimage.map_coordinates`), a Gaussian blur of the tumor mask in its box, the texture
  blended into the CT towards a target intensity; then the organ-box result is written back;
- measured earlier on the benchmark machine, for calibration only (nothing here is tuned to it):
  a fixed 210-270 ms per call on the full volume, then 7-55 ms per tumor; 5-17 ms per tumor on a
  96³ crop.

Where the facts leave a choice open the cheaper option is taken (projection bounding box,
nearest-neighbour warp of the binary mask, organ mean instead of median), so the baseline is
conservative: if anything it is faster than the public code. It places its ellipsoid in the
organ's mask for every organ: it has no hollow-organ (colon, esophagus) or uterus logic, which is
fine for a speed baseline (its per-tumor work is the same whatever the organ), but its tumors in
those organs are not realistic. numpy/scipy only; run it with one thread (the benchmark does).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

TUMOR_LABEL = 2  # written into the label map where the tumor lands (organ voxels are 1)


@dataclass(frozen=True)
class AnchorTexture:
    """The per-process correlated-noise texture, in [0, 1], and what it cost to make once."""

    array: np.ndarray  # float32
    seconds: float
    nbytes: int


def precompute_texture(
    shape: Sequence[int], seed: int = 0, sigma_vox: float = 2.0
) -> AnchorTexture:
    """Gaussian-filtered uniform noise of `shape`, rescaled to [0, 1] (done once per process)."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0.0, 1.0, size=tuple(int(n) for n in shape)).astype(np.float32)
    texture = ndimage.gaussian_filter(noise, sigma=sigma_vox)
    low, high = float(texture.min()), float(texture.max())
    texture = (texture - low) / max(high - low, 1e-6)
    texture = texture.astype(np.float32, copy=False)
    return AnchorTexture(texture, time.perf_counter() - start, texture.nbytes)


def bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The mask's bounding box (per-axis projections; None when empty)."""
    box = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)  # type: ignore[return-value]


def _random_semi_axes_mm(diameter_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Random ellipsoid semi-axes (mm) whose equivalent diameter is `diameter_mm`."""
    ratios = rng.uniform(0.75, 1.25, size=3)
    ratios /= np.cbrt(np.prod(ratios))
    return ratios * diameter_mm / 2.0


def _insert_one(
    ct_box: np.ndarray,
    label_box: np.ndarray,
    organ_box: np.ndarray,
    organ_voxels: np.ndarray,
    organ_mean_hu: float,
    texture: np.ndarray,
    spacing: np.ndarray,
    diameter_mm: float,
    rng: np.random.Generator,
) -> None:
    """One tumor into the organ box (modified in place)."""
    shape = np.asarray(ct_box.shape)
    pick = organ_voxels[rng.integers(organ_voxels.size)]
    centre = np.asarray(np.unravel_index(pick, ct_box.shape))
    semi_vox = _random_semi_axes_mm(diameter_mm, rng) / spacing
    elastic_sigma = float(np.clip(semi_vox.mean() / 4.0, 1.0, 6.0))  # grows with size
    elastic_alpha = rng.uniform(0.1, 0.2) * float(semi_vox.min())  # boundary displacement, voxels
    blur_sigma = rng.uniform(0.6, 1.2) / spacing
    margin = np.ceil(semi_vox + elastic_alpha + 3.0 * blur_sigma).astype(int) + 1
    low = np.maximum(centre - margin, 0)
    high = np.minimum(centre + margin + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
    size = tuple(int(b - a) for a, b in zip(low, high, strict=True))

    # Ellipsoid with random axes.
    grid = np.ogrid[tuple(slice(int(a) - int(c), int(b) - int(c))
                          for a, b, c in zip(low, high, centre, strict=True))]
    inside = sum((g / r) ** 2 for g, r in zip(grid, semi_vox, strict=True)) <= 1.0
    ellipsoid = inside.astype(np.float32)

    # Elastic deformation: random displacement field, Gaussian-smoothed, warp (nearest neighbour).
    coords = np.indices(size, dtype=np.float32)
    for axis in range(3):
        field = rng.uniform(-1.0, 1.0, size=size).astype(np.float32)
        field = ndimage.gaussian_filter(field, sigma=elastic_sigma)
        field *= elastic_alpha / max(float(np.abs(field).max()), 1e-6)
        coords[axis] += field
    warped = ndimage.map_coordinates(ellipsoid, coords, order=0, mode="constant", cval=0.0)

    # Gaussian blur of the tumor mask in its box, kept inside the organ.
    weight = ndimage.gaussian_filter(warped, sigma=blur_sigma) * organ_box[box]

    # Texture blended into the CT towards a target intensity (hypodense, with heterogeneity).
    target_hu = organ_mean_hu - rng.uniform(20.0, 80.0)
    amplitude = rng.uniform(10.0, 30.0)
    window = texture[box]
    tumor_hu = target_hu + amplitude * (window - 0.5)
    region = ct_box[box]
    region += weight * (tumor_hu - region)
    label_box[box][(warped > 0.5) & organ_box[box]] = TUMOR_LABEL


def anchor_insert(
    ct: np.ndarray,
    label: np.ndarray,
    texture: AnchorTexture,
    spacing: Sequence[float],
    diameter_range_mm: tuple[float, float],
    rng: np.random.Generator,
    count: int = 1,
    organ_label: int = 1,
) -> int:
    """Insert `count` tumors into the organ (`label == organ_label`) of the whole `ct`, in place.

    `ct` is float32 HU, `label` an integer label map of the same shape; tumor voxels become
    `TUMOR_LABEL`. Diameters (equivalent, mm) are uniform in `diameter_range_mm`. Returns the
    number of tumors inserted (0 when the organ is empty).
    """
    organ = label == organ_label
    box = bounding_box(organ)
    if box is None:
        return 0
    organ_box = organ[box]
    ct_box = ct[box].astype(np.float32, copy=True)
    label_box = label[box].copy()
    organ_voxels = np.flatnonzero(organ_box)
    organ_mean_hu = float(ct_box[organ_box].mean())
    extent = tuple(s.stop - s.start for s in box)
    if any(e > t for e, t in zip(extent, texture.array.shape, strict=True)):
        raise ValueError(f"texture {texture.array.shape} smaller than the organ box {extent}")
    window = texture.array[tuple(slice(0, e) for e in extent)]
    spacing_arr = np.asarray(spacing, dtype=float)
    for _ in range(count):
        diameter = rng.uniform(*diameter_range_mm)
        _insert_one(ct_box, label_box, organ_box, organ_voxels, organ_mean_hu, window,
                    spacing_arr, diameter, rng)
    ct[box] = ct_box
    label[box] = label_box
    return count
