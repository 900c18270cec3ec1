"""Surface distances between two masks, surfel-area weighted as DeepMind's surface-distance.

The surface of a mask is the set of corner points of the voxel grid whose 2x2x2 neighbourhood is
neither all inside nor all outside; each such "surfel" carries the area of the marching-cubes
surface in its neighbourhood (`surfel_areas`). Every result here equals the reference library's
to floating-point rounding (tests check 1e-6 on random shapes and spacings), but is computed on
the box around the two masks with a k-d tree between the two surfel sets instead of distance
transforms, which is what makes it fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.spatial import cKDTree

from tumorscale.masks import Box, bounding_box, union_box
from tumorscale.metrics.surfel_areas import surfel_area_table

Spacing = tuple[float, float, float]

# Bit of each voxel of the 2x2x2 neighbourhood, by offset (same order as the reference library).
_NEIGHBOUR_BITS = {
    (0, 0, 0): 7, (0, 0, 1): 6, (0, 1, 0): 5, (0, 1, 1): 4,
    (1, 0, 0): 3, (1, 0, 1): 2, (1, 1, 0): 1, (1, 1, 1): 0,
}  # fmt: skip

# Most surfels of a reasonable prediction lie within a few voxels of the other surface: scanning
# offsets nearest-first finds them with one gather per offset; the rest go to a k-d tree.
_SEARCH_RADIUS_VOXELS = 6
_SEARCH_BUDGET = 100  # give up scanning after this many gathers per point, on average
_MAX_OFFSETS = 2000  # bounds the scan on very anisotropic grids (e.g. 0.7 x 0.7 x 5 mm)


@dataclass(frozen=True)
class SurfaceDistances:
    """Per-surfel distances (mm) to the other surface and surfel areas (mm²), sorted by distance.

    An empty mask has no surfels; the other mask's distances are then all infinite.
    """

    truth_to_pred_mm: np.ndarray
    truth_areas_mm2: np.ndarray
    pred_to_truth_mm: np.ndarray
    pred_areas_mm2: np.ndarray

    @property
    def truth_empty(self) -> bool:
        return self.truth_areas_mm2.size == 0

    @property
    def pred_empty(self) -> bool:
        return self.pred_areas_mm2.size == 0


def _neighbour_codes(crop: np.ndarray) -> np.ndarray:
    """8-bit neighbourhood code at every voxel corner of a crop (one more corner per axis)."""
    padded = np.pad(crop.astype(np.uint8), 1)
    corners = tuple(n + 1 for n in crop.shape)
    codes = np.zeros(corners, np.uint8)
    for (a, b, c), bit in _NEIGHBOUR_BITS.items():
        codes |= padded[a : a + corners[0], b : b + corners[1], c : c + corners[2]] << bit
    return codes


def _surfels(crop: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corner coordinates (N, 3) of the surfels of a crop and their areas (N,)."""
    codes = _neighbour_codes(crop)
    on_surface = (codes != 0) & (codes != 255)
    coords = np.argwhere(on_surface)
    return coords, areas[codes[on_surface]]


def _offsets_by_distance(
    spacing_mm: tuple[float, ...], radius_vox: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Integer offsets (K, 3) within `radius_vox` per axis, nearest first, with lengths in mm."""
    axes = [np.arange(-r, r + 1) for r in radius_vox]
    offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    offsets_mm = offsets * np.asarray(spacing_mm)
    lengths = np.sqrt(np.einsum("ij,ij->i", offsets_mm, offsets_mm))
    order = np.argsort(lengths, kind="stable")
    return offsets[order], lengths[order]


@lru_cache(maxsize=64)
def _search_offsets(spacing_mm: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Offsets within `_SEARCH_RADIUS_VOXELS` of the coarsest axis (at most `_MAX_OFFSETS`).

    Truncating inside a shell is safe: a point not found among the kept offsets goes to the tree.
    """
    reach_mm = _SEARCH_RADIUS_VOXELS * max(spacing_mm)
    radius_vox = tuple(int(np.ceil(reach_mm / s)) for s in spacing_mm)
    offsets, lengths = _offsets_by_distance(spacing_mm, radius_vox)
    keep = min(int(np.count_nonzero(lengths <= reach_mm)), _MAX_OFFSETS)
    return offsets[:keep], lengths[:keep], radius_vox


def _nearest_by_offsets(
    points: np.ndarray, targets: np.ndarray, shape: tuple[int, ...], spacing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact distances of the points whose nearest target is within the search ball.

    Returns the distances (inf where not found) and the indices of the points not found.
    """
    offsets, lengths, radius_vox = _search_offsets(tuple(float(s) for s in spacing))
    padded_shape = tuple(n + 2 * r for n, r in zip(shape, radius_vox, strict=True))
    target_map = np.zeros(padded_shape, bool)
    target_map[tuple((targets + radius_vox).T)] = True
    flat_map = target_map.reshape(-1)
    strides = np.array([padded_shape[1] * padded_shape[2], padded_shape[2], 1])
    positions = (points + radius_vox) @ strides
    flat_offsets = offsets @ strides
    distances = np.full(len(points), np.inf)
    remaining = np.arange(len(points))
    budget = _SEARCH_BUDGET * len(points)
    start, chunk = 0, 4
    while start < len(flat_offsets) and remaining.size and budget > 0:
        # A block of offsets at once: the first hit along each row is the nearest target.
        block = flat_offsets[start : start + chunk]
        hits = flat_map[positions[:, None] + block[None, :]]
        first_hit = hits.argmax(axis=1)  # 0 also when nothing was hit: checked next
        found = hits[np.arange(len(hits)), first_hit]
        first = first_hit[found]
        distances[remaining[found]] = lengths[start + first]
        budget -= remaining.size * block.size
        remaining, positions = remaining[~found], positions[~found]
        start, chunk = start + block.size, chunk * 2
    return distances, remaining


def _nearest_by_tree(points: np.ndarray, targets: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    tree = cKDTree(targets * spacing, balanced_tree=False, compact_nodes=False)
    _, nearest = tree.query(points * spacing)
    # Recomputed from integer offsets so rounding matches a distance transform's to the last bit.
    offsets_mm = (points - targets[nearest]) * spacing
    return np.sqrt(np.einsum("ij,ij->i", offsets_mm, offsets_mm))


def _nearest_distances_mm(
    points: np.ndarray, targets: np.ndarray, shape: tuple[int, ...], spacing: np.ndarray
) -> np.ndarray:
    """Distance (mm) from each corner point to its nearest target corner point."""
    if targets.size == 0:
        return np.full(len(points), np.inf)
    if points.size == 0:
        return np.empty(0)
    distances, missing = _nearest_by_offsets(points, targets, shape, spacing)
    if missing.size:
        distances[missing] = _nearest_by_tree(points[missing], targets, spacing)
    return distances


def _both_directions(
    truth_points: np.ndarray, pred_points: np.ndarray, shape: tuple[int, ...], spacing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    return (
        _nearest_distances_mm(truth_points, pred_points, shape, spacing),
        _nearest_distances_mm(pred_points, truth_points, shape, spacing),
    )


def _sorted(distances: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((areas, distances))
    return distances[order], areas[order]


def surface_distances_in_box(
    truth: np.ndarray, pred: np.ndarray, box: Box | None, spacing_mm: Spacing
) -> SurfaceDistances:
    """Surface distances of two masks known to be empty outside `box` (None: both empty)."""
    if box is None:
        empty = np.empty(0)
        return SurfaceDistances(empty, empty, empty, empty)
    areas = surfel_area_table(spacing_mm)
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    truth_points, truth_areas = _surfels(truth[box], areas)
    pred_points, pred_areas = _surfels(pred[box], areas)
    corners = tuple(n + 1 for n in truth[box].shape)
    truth_to_pred, pred_to_truth = _both_directions(truth_points, pred_points, corners, spacing)
    return SurfaceDistances(
        *_sorted(truth_to_pred, truth_areas), *_sorted(pred_to_truth, pred_areas)
    )


def surface_distances(truth: np.ndarray, pred: np.ndarray, spacing_mm: Spacing) -> SurfaceDistances:
    """Surfel distances between two boolean 3-D masks on a grid with `spacing_mm` (per axis)."""
    if truth.shape != pred.shape or truth.ndim != 3:
        raise ValueError(f"masks must be 3-D and the same shape, got {truth.shape}, {pred.shape}")
    box = union_box(bounding_box(truth), bounding_box(pred))
    return surface_distances_in_box(truth, pred, box, spacing_mm)


def surface_dice(distances: SurfaceDistances, tolerance_mm: float) -> float | None:
    """Normalised surface Dice: surface area within `tolerance_mm` of the other surface (≤ counts).

    None when both masks are empty (0/0); 0 when exactly one is.
    """
    total = distances.truth_areas_mm2.sum() + distances.pred_areas_mm2.sum()
    if total == 0:
        return None
    within = distances.truth_areas_mm2[distances.truth_to_pred_mm <= tolerance_mm].sum()
    within += distances.pred_areas_mm2[distances.pred_to_truth_mm <= tolerance_mm].sum()
    return float(within / total)


def _directed_percentile(distances: np.ndarray, areas: np.ndarray, percent: float) -> float:
    if distances.size == 0:
        return np.inf
    cumulative = np.cumsum(areas) / np.sum(areas)
    index = int(np.searchsorted(cumulative, percent / 100.0))
    return float(distances[min(index, distances.size - 1)])


def robust_hausdorff_mm(distances: SurfaceDistances, percent: float = 95.0) -> float | None:
    """Area-weighted `percent` percentile Hausdorff distance (mm), the larger of both directions.

    None when both masks are empty; infinite when exactly one is.
    """
    if distances.truth_empty and distances.pred_empty:
        return None
    return max(
        _directed_percentile(distances.truth_to_pred_mm, distances.truth_areas_mm2, percent),
        _directed_percentile(distances.pred_to_truth_mm, distances.pred_areas_mm2, percent),
    )


def mean_surface_distance_mm(distances: SurfaceDistances) -> float | None:
    """Symmetric mean surface distance (mm): area-weighted over the surfels of both surfaces.

    None when both masks are empty; infinite when exactly one is.
    """
    total = distances.truth_areas_mm2.sum() + distances.pred_areas_mm2.sum()
    if total == 0:
        return None
    if distances.truth_empty or distances.pred_empty:
        return np.inf
    weighted = np.dot(distances.truth_to_pred_mm, distances.truth_areas_mm2)
    weighted += np.dot(distances.pred_to_truth_mm, distances.pred_areas_mm2)
    return float(weighted / total)
