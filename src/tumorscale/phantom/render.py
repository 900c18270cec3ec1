"""Rendering: paint implicit layers onto a RAS voxel grid with partial-volume edges, then add noise.

Painting is a painter's algorithm on three arrays: CT (float32 HU), a tissue label map and a
lesion map. A layer blends its HU in with fractional coverage clip(0.5 - d / w, 0, 1), where d
is the signed distance (mm) at the voxel centre and w the voxel size (or a wider edge for
ill-defined boundaries); its label goes to voxels with d <= 0 (coverage >= 50 %). A layer may be
limited to voxels whose current label is in `allowed`: that is how organs stay in the abdominal
cavity, vessels run through the liver, and lesions stay inside their organ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tumorscale.phantom.geometry import Implicit, axes_in_box
from tumorscale.phantom.tissues import Tissue

# A per-voxel HU field: (xs, ys, zs, distance) -> HU broadcastable to the box.
HuField = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]

# The anatomy frame's x points to the patient's left; RAS x points to the patient's right.
ANATOMY_TO_RAS = np.diag([-1.0, 1.0, 1.0, 1.0])

# Largest box (voxels) evaluated at once; bigger boxes go slab by slab along z.
_CHUNK_VOXELS = 4_000_000


@dataclass(frozen=True)
class Grid:
    """An axis-aligned voxel grid in the anatomy frame: `shape` voxels of `spacing` mm, first centre
    at `origin`. The anatomy frame is LAS (x to the patient's left); `affine` maps to RAS mm."""

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]

    @classmethod
    def covering(
        cls, low: np.ndarray, high: np.ndarray, spacing: tuple[float, float, float],
        shape: tuple[int, int, int] | None = None,
    ) -> Grid:
        """A grid centred on the box [low, high]: `shape` voxels of `spacing` mm.

        Without `shape`, as many voxels as cover the box.
        """
        low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        spacing_arr = np.asarray(spacing, dtype=float)
        counts = (
            np.asarray(shape, dtype=int) if shape is not None
            else np.ceil((high - low) / spacing_arr).astype(int)
        )
        # Round the origin to micrometres so the affine is exact and reproducible.
        origin = np.round((low + high) / 2 - (counts - 1) / 2 * spacing_arr, 3)
        return cls(tuple(float(v) for v in origin), tuple(float(v) for v in spacing_arr),
                   tuple(int(n) for n in counts))

    def _axis(self, axis: int) -> np.ndarray:
        return self.origin[axis] + np.arange(self.shape[axis]) * self.spacing[axis]

    @property
    def xs(self) -> np.ndarray:
        return self._axis(0)

    @property
    def ys(self) -> np.ndarray:
        return self._axis(1)

    @property
    def zs(self) -> np.ndarray:
        return self._axis(2)

    @property
    def affine(self) -> np.ndarray:
        """Voxel (i, j, k) -> RAS mm (RAS x is the anatomy frame's x negated)."""
        affine = np.diag([*self.spacing, 1.0])
        affine[:3, 3] = self.origin
        return ANATOMY_TO_RAS @ affine

    @property
    def voxel_mm(self) -> float:
        """One length for partial-volume blending: the geometric mean of the spacing."""
        return float(np.prod(self.spacing) ** (1.0 / 3.0))


@dataclass(frozen=True)
class Layer:
    """One structure to paint: its shape, its intensity, the label it sets, where it may go.

    hu: a tissue intensity name (looked up in the case's HU table), a number, or a field.
    label: tissue label set where the layer covers >= 50 % (None leaves labels as they are).
    allowed: paint only where the current label is one of these (None: everywhere).
    edge_mm: blend width of the boundary when wider than a voxel (ill-defined edges).
    lesion: value written to the lesion map where the layer covers >= 50 % (0: not a lesion).
    """

    name: str
    shape: Implicit
    hu: str | float | HuField
    label: Tissue | None
    allowed: frozenset[Tissue] | None = None
    edge_mm: float = 0.0
    lesion: int = 0


@dataclass
class Canvas:
    """The arrays being painted, on one RAS grid."""

    grid: Grid
    ct: np.ndarray
    labels: np.ndarray
    lesions: np.ndarray

    @classmethod
    def empty(cls, grid: Grid, air_hu: float = -1000.0) -> Canvas:
        shape = grid.shape
        return cls(
            grid,
            np.full(shape, air_hu, dtype=np.float32),
            np.zeros(shape, dtype=np.uint8),
            np.zeros(shape, dtype=np.uint8),
        )

    def paint(self, layer: Layer, hu_table: dict[str, float]) -> int:
        """Blend `layer` into the canvas (only inside its bounding box, slab by slab).

        Returns the number of voxels the layer covers by >= 50 % (those it labels).
        """
        grid = self.grid
        grid_xs, grid_ys, grid_zs = grid.xs, grid.ys, grid.zs
        window = axes_in_box(grid_xs, grid_ys, grid_zs, layer.shape.bounds(), 2.0 * grid.voxel_mm)
        if window is None:
            return 0
        covered = 0
        width = max(grid.voxel_mm, layer.edge_mm)
        allowed_lut = None
        if layer.allowed is not None:
            allowed_lut = np.zeros(256, dtype=bool)
            allowed_lut[[int(t) for t in layer.allowed]] = True
        xs, ys = grid_xs[window[0]], grid_ys[window[1]]
        slab = max(1, _CHUNK_VOXELS // max(len(xs) * len(ys), 1))
        for start in range(window[2].start, window[2].stop, slab):
            zslice = slice(start, min(start + slab, window[2].stop))
            box = (window[0], window[1], zslice)
            distance = layer.shape.distance_on_grid(xs, ys, grid_zs[zslice])
            coverage = np.clip(0.5 - distance / np.float32(width), 0.0, 1.0)
            inside = distance <= 0.0
            if allowed_lut is not None:
                ok = allowed_lut[self.labels[box]]
                coverage *= ok
                inside &= ok
            if not coverage.any():
                continue
            covered += int(np.count_nonzero(inside))
            hu = _layer_hu(layer, hu_table, xs, ys, grid_zs[zslice], distance)
            ct = self.ct[box]
            ct += coverage * (hu - ct)
            if layer.label is not None:
                self.labels[box][inside] = int(layer.label)
            if layer.lesion:
                self.lesions[box][inside] = layer.lesion
        return covered


    def placed_volume_mm3(self, layer: Layer, step_mm: float) -> float:
        """Volume (mm³) the layer would label, measured on a fine `step_mm` grid.

        A fine point counts when it is inside the shape and the voxel it falls in has an allowed
        label: the layer's volume as placed in this case, free of the voxel grid's coarseness.
        """
        grid = self.grid
        low, high = layer.shape.bounds()
        axes = [np.arange(lo + step_mm / 2, hi, step_mm) for lo, hi in zip(low, high, strict=True)]
        if any(len(axis) == 0 for axis in axes):
            return 0.0
        spacing = np.asarray(grid.spacing)
        origin = np.asarray(grid.origin)
        allowed_lut = np.ones(256, dtype=bool)
        if layer.allowed is not None:
            allowed_lut[:] = False
            allowed_lut[[int(t) for t in layer.allowed]] = True
        count = 0
        chunk = max(1, 2_000_000 // (len(axes[0]) * len(axes[1])))
        for start in range(0, len(axes[2]), chunk):
            zs = axes[2][start : start + chunk]
            inside = np.argwhere(layer.shape.distance_on_grid(axes[0], axes[1], zs) <= 0)
            if not len(inside):
                continue
            points = np.stack([axes[0][inside[:, 0]], axes[1][inside[:, 1]], zs[inside[:, 2]]], 1)
            voxels = np.rint((points - origin) / spacing).astype(int)
            in_grid = np.all((voxels >= 0) & (voxels < np.asarray(grid.shape)), axis=1)
            voxels = voxels[in_grid]
            labels = self.labels[voxels[:, 0], voxels[:, 1], voxels[:, 2]]
            count += int(np.count_nonzero(allowed_lut[labels]))
        return count * step_mm**3


def _layer_hu(layer: Layer, hu_table: dict[str, float], xs, ys, zs, distance) -> np.ndarray | float:
    if isinstance(layer.hu, str):
        return np.float32(hu_table[layer.hu])
    if callable(layer.hu):
        x = np.asarray(xs, dtype=np.float32)[:, None, None]
        y = np.asarray(ys, dtype=np.float32)[None, :, None]
        z = np.asarray(zs, dtype=np.float32)[None, None, :]
        return np.asarray(layer.hu(x, y, z, distance), dtype=np.float32)
    return np.float32(layer.hu)


def add_correlated_noise(
    ct: np.ndarray, rng: np.random.Generator, sd_hu: float, grain_mm: float,
    spacing: tuple[float, float, float],
) -> None:
    """Add in-plane correlated Gaussian noise of standard deviation `sd_hu`, in place.

    White noise smoothed in-plane with a Gaussian of `grain_mm` (CT noise is correlated within a
    slice by the reconstruction kernel, nearly independent across slices), rescaled to the exact
    target SD. Generated slab by slab along k to keep memory flat.
    """
    sigma = (grain_mm / spacing[0], grain_mm / spacing[1])
    nx, ny, nz = ct.shape
    slab = max(1, _CHUNK_VOXELS // max(nx * ny, 1))
    # Variance left after smoothing, from the kernel itself (deterministic, size independent).
    impulse = np.zeros((33, 33), dtype=np.float64)
    impulse[16, 16] = 1.0
    kernel = ndimage.gaussian_filter(impulse, sigma, mode="constant", truncate=3.0)
    scale = np.float32(sd_hu / np.sqrt((kernel**2).sum()))
    for start in range(0, nz, slab):
        stop = min(start + slab, nz)
        noise = rng.standard_normal((nx, ny, stop - start), dtype=np.float32)
        for axis in (0, 1):
            if sigma[axis] > 0.05:
                ndimage.gaussian_filter1d(
                    noise, sigma[axis], axis=axis, output=noise, mode="wrap", truncate=3.0
                )
        noise *= scale
        ct[:, :, start:stop] += noise


def to_int16_hu(ct: np.ndarray) -> np.ndarray:
    """Round HU to int16 in the range scanners store ([-1024, 3071])."""
    return np.clip(np.rint(ct), -1024, 3071).astype(np.int16)
