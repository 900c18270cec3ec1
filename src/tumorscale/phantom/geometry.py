"""Implicit shapes in world mm (RAS): negative inside, positive outside, ~distance near the edge.

Every shape answers two questions: where it is (`bounds`, an axis-aligned world box) and how far a
point is from its surface (`distance`). `distance_on_grid` evaluates a shape on an axis-aligned
box of voxel centres given by three 1-D coordinate arrays; composite shapes override it so each
part is evaluated only inside its own box (the speed of the phantom depends on this).

Distances are exact for spheres and capsules and first-order approximations elsewhere (ellipsoids,
wobbled surfaces); only their sign and their value within about a voxel of the surface matter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Value used where a part is not evaluated (outside its box): far outside every surface.
FAR_MM = 1.0e4

Box = tuple[np.ndarray, np.ndarray]


def _as_float32(value: np.ndarray | float) -> np.ndarray:
    return np.asarray(value, dtype=np.float32)


def axes_in_box(
    xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, box: Box, pad_mm: float
) -> tuple[slice, slice, slice] | None:
    """Index ranges of the coordinate arrays that fall inside `box` grown by `pad_mm`."""
    ranges = []
    for coords, low, high in zip((xs, ys, zs), box[0], box[1], strict=True):
        start = int(np.searchsorted(coords, low - pad_mm, side="left"))
        stop = int(np.searchsorted(coords, high + pad_mm, side="right"))
        if stop <= start:
            return None
        ranges.append(slice(start, stop))
    return ranges[0], ranges[1], ranges[2]


class Implicit(ABC):
    """A solid defined by a signed distance-like function of world position (mm)."""

    @abstractmethod
    def bounds(self) -> Box:
        """(low, high) world corners (mm) of a box that contains the whole solid."""

    @abstractmethod
    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Signed distance (mm) at broadcastable world coordinates."""

    def distance_on_grid(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
        """Signed distance on the box of voxel centres xs × ys × zs (ascending 1-D arrays, mm)."""
        x = _as_float32(xs)[:, None, None]
        y = _as_float32(ys)[None, :, None]
        z = _as_float32(zs)[None, None, :]
        values = self.distance(x, y, z)
        return np.broadcast_to(values, (len(xs), len(ys), len(zs))).astype(np.float32, copy=False)

    def distance_at(self, points: np.ndarray) -> np.ndarray:
        """Signed distance at an (N, 3) array of world points (mm)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return np.asarray(self.distance(points[:, 0], points[:, 1], points[:, 2]), dtype=float)


def grid_distance_in_box(
    shape: Implicit, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, pad_mm: float = 2.0
) -> np.ndarray:
    """Evaluate `shape` on the grid, only inside its own bounds (FAR_MM elsewhere)."""
    out = np.full((len(xs), len(ys), len(zs)), FAR_MM, dtype=np.float32)
    window = axes_in_box(xs, ys, zs, shape.bounds(), pad_mm)
    if window is not None:
        out[window] = shape.distance_on_grid(xs[window[0]], ys[window[1]], zs[window[2]])
    return out


@dataclass(frozen=True)
class Ellipsoid(Implicit):
    """An ellipsoid with semi-axes `radii` (mm) along the columns of `rotation`."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    rotation: np.ndarray | None = field(default=None, compare=False)

    def bounds(self) -> Box:
        radii = np.asarray(self.radii, dtype=float)
        if self.rotation is None:
            half = radii
        else:
            half = np.sqrt(((np.asarray(self.rotation) * radii[None, :]) ** 2).sum(axis=1))
        center = np.asarray(self.center, dtype=float)
        return center - half, center + half

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        dx, dy, dz = x - self.center[0], y - self.center[1], z - self.center[2]
        if self.rotation is not None:
            r = np.asarray(self.rotation, dtype=np.float32)
            # Body coordinates: project onto the rotated axes (columns of r).
            dx, dy, dz = (
                r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
                r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
                r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz,
            )
        a, b, c = (float(v) for v in self.radii)
        # Quilez's ellipsoid bound: k0 (k0 - 1) / k1 is exact on the surface and smooth nearby.
        k0 = np.sqrt((dx / a) ** 2 + (dy / b) ** 2 + (dz / c) ** 2)
        k1 = np.sqrt((dx / (a * a)) ** 2 + (dy / (b * b)) ** 2 + (dz / (c * c)) ** 2)
        # At the exact centre the bound is 0/0; its limit there is about minus the smallest radius.
        return np.where(k1 > 1e-9, k0 * (k0 - 1.0) / np.maximum(k1, 1e-9), -min(a, b, c))


@dataclass(frozen=True)
class ZEllipse(Implicit):
    """A column whose horizontal cross-section is an ellipse varying with height.

    `heights` (ascending, mm) sample the centre (cx, cy) and semi-axes (ax, ay) linearly; the column
    spans [heights[0], heights[-1]] with flat caps. `back_cut` (mm, optional) flattens the posterior
    side: points with y < cy - back_cut·ay are outside (the flat back of a supine body).
    """

    heights: tuple[float, ...]
    cx: tuple[float, ...]
    cy: tuple[float, ...]
    ax: tuple[float, ...]
    ay: tuple[float, ...]
    back_cut: float | None = None

    def bounds(self) -> Box:
        low = (min(c - a for c, a in zip(self.cx, self.ax, strict=True)),
               min(c - a for c, a in zip(self.cy, self.ay, strict=True)), self.heights[0])
        high = (max(c + a for c, a in zip(self.cx, self.ax, strict=True)),
                max(c + a for c, a in zip(self.cy, self.ay, strict=True)), self.heights[-1])
        return np.asarray(low, dtype=float), np.asarray(high, dtype=float)

    def _profiles(self, z: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(
            np.interp(z, self.heights, values).astype(np.float32)
            for values in (self.cx, self.cy, self.ax, self.ay)
        )

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        cx, cy, ax, ay = self._profiles(z)
        dx, dy = x - cx, y - cy
        k0 = np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2)
        k1 = np.sqrt((dx / (ax * ax)) ** 2 + (dy / (ay * ay)) ** 2)
        d = np.where(k1 > 1e-9, k0 * (k0 - 1.0) / np.maximum(k1, 1e-9), -np.minimum(ax, ay))
        if self.back_cut is not None:
            d = np.maximum(d, (cy - self.back_cut * ay) - y)
        caps = np.maximum(self.heights[0] - z, z - self.heights[-1])
        return np.maximum(d, caps)

    def distance_on_grid(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
        # Profiles are per slice: evaluate slice by slice to keep temporaries small.
        out = np.empty((len(xs), len(ys), len(zs)), dtype=np.float32)
        x = _as_float32(xs)[:, None]
        y = _as_float32(ys)[None, :]
        for k, height in enumerate(np.asarray(zs, dtype=np.float32)):
            out[:, :, k] = self.distance(x, y, height)
        return out


def _segment_terms(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts = points[:-1]
    vectors = points[1:] - points[:-1]
    lengths2 = np.maximum((vectors**2).sum(axis=1), 1e-9)
    return starts, vectors, lengths2


@dataclass(frozen=True)
class Tube(Implicit):
    """A chain of capsules along a polyline: points (N, 3) mm, radius per point (linear between).

    `radii` may also be one value, or values at evenly spaced fractions of the length.
    """

    points: np.ndarray = field(compare=False)
    radii: np.ndarray = field(compare=False)

    def __post_init__(self) -> None:
        points = np.asarray(self.points, dtype=float).reshape(-1, 3)
        if len(points) < 2:
            raise ValueError("a Tube needs at least two points")
        radii = np.atleast_1d(np.asarray(self.radii, dtype=float))
        if radii.size not in (1, len(points)):
            # Radii given at evenly spaced fractions of the length (e.g. at control points).
            radii = interpolate_along(points, radii)
        radii = np.broadcast_to(radii, (len(points),)).copy()
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "radii", radii)

    def bounds(self) -> Box:
        reach = float(self.radii.max())
        return self.points.min(axis=0) - reach, self.points.max(axis=0) + reach

    def arc_length(self) -> np.ndarray:
        """Cumulative length (mm) along the centreline at each point."""
        steps = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        return np.concatenate([[0.0], np.cumsum(steps)])

    def _segment_distance(self, index: int, x, y, z) -> np.ndarray:
        start = self.points[index]
        vector = self.points[index + 1] - start
        length2 = max(float(vector @ vector), 1e-9)
        px, py, pz = x - start[0], y - start[1], z - start[2]
        t = np.clip((px * vector[0] + py * vector[1] + pz * vector[2]) / length2, 0.0, 1.0)
        qx, qy, qz = px - t * vector[0], py - t * vector[1], pz - t * vector[2]
        radius = self.radii[index] + t * (self.radii[index + 1] - self.radii[index])
        return np.sqrt(qx * qx + qy * qy + qz * qz) - radius

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        best = None
        for index in range(len(self.points) - 1):
            d = self._segment_distance(index, x, y, z)
            best = d if best is None else np.minimum(best, d)
        return best

    def distance_on_grid(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
        out = np.full((len(xs), len(ys), len(zs)), FAR_MM, dtype=np.float32)
        x = _as_float32(xs)
        y = _as_float32(ys)
        z = _as_float32(zs)
        for index in range(len(self.points) - 1):
            ends = self.points[index : index + 2]
            reach = float(self.radii[index : index + 2].max())
            box = (ends.min(axis=0) - reach, ends.max(axis=0) + reach)
            window = axes_in_box(xs, ys, zs, box, 3.0)
            if window is None:
                continue
            d = self._segment_distance(
                index,
                x[window[0]][:, None, None],
                y[window[1]][None, :, None],
                z[window[2]][None, None, :],
            )
            np.minimum(out[window], d, out=out[window])
        return out


@dataclass(frozen=True)
class Union(Implicit):
    """Inside any part."""

    parts: tuple[Implicit, ...]

    def bounds(self) -> Box:
        boxes = [part.bounds() for part in self.parts]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def distance(self, x, y, z):
        return _reduce(np.minimum, [part.distance(x, y, z) for part in self.parts])

    def distance_on_grid(self, xs, ys, zs):
        out = np.full((len(xs), len(ys), len(zs)), FAR_MM, dtype=np.float32)
        for part in self.parts:
            window = axes_in_box(xs, ys, zs, part.bounds(), 3.0)
            if window is not None:
                d = part.distance_on_grid(xs[window[0]], ys[window[1]], zs[window[2]])
                np.minimum(out[window], d, out=out[window])
        return out


@dataclass(frozen=True)
class Intersection(Implicit):
    """Inside every part."""

    parts: tuple[Implicit, ...]

    def bounds(self) -> Box:
        boxes = [part.bounds() for part in self.parts]
        return np.max([b[0] for b in boxes], axis=0), np.min([b[1] for b in boxes], axis=0)

    def distance(self, x, y, z):
        return _reduce(np.maximum, [part.distance(x, y, z) for part in self.parts])

    def distance_on_grid(self, xs, ys, zs):
        return _reduce(np.maximum, [grid_distance_in_box(p, xs, ys, zs) for p in self.parts])


@dataclass(frozen=True)
class Difference(Implicit):
    """Inside `base` and outside `cut`."""

    base: Implicit
    cut: Implicit

    def bounds(self) -> Box:
        return self.base.bounds()

    def distance(self, x, y, z):
        return np.maximum(self.base.distance(x, y, z), -self.cut.distance(x, y, z))

    def distance_on_grid(self, xs, ys, zs):
        base = self.base.distance_on_grid(xs, ys, zs)
        return np.maximum(base, -grid_distance_in_box(self.cut, xs, ys, zs))


@dataclass(frozen=True)
class Offset(Implicit):
    """The solid grown (positive `amount_mm`) or shrunk (negative) by a distance."""

    base: Implicit
    amount_mm: float

    def bounds(self) -> Box:
        low, high = self.base.bounds()
        grow = max(self.amount_mm, 0.0)
        return low - grow, high + grow

    def distance(self, x, y, z):
        return self.base.distance(x, y, z) - np.float32(self.amount_mm)

    def distance_on_grid(self, xs, ys, zs):
        return self.base.distance_on_grid(xs, ys, zs) - np.float32(self.amount_mm)


@dataclass(frozen=True)
class Slab(Implicit):
    """Points with low ≤ coordinate[axis] ≤ high, inside the box `extent` on the other axes."""

    axis: int
    low: float
    high: float
    extent: Box = field(compare=False)

    def bounds(self) -> Box:
        low, high = np.array(self.extent[0], dtype=float), np.array(self.extent[1], dtype=float)
        low[self.axis], high[self.axis] = self.low, self.high
        return low, high

    def distance(self, x, y, z):
        coordinate = (x, y, z)[self.axis]
        return np.maximum(self.low - coordinate, coordinate - self.high)


@dataclass(frozen=True)
class Waves:
    """A smooth random field: a sum of plane cosines, unit standard deviation on average.

    `vectors` (K, 3) are angular wave vectors (rad/mm), `phases` (K,) radians.
    """

    vectors: np.ndarray = field(compare=False)
    phases: np.ndarray = field(compare=False)

    @classmethod
    def sample(
        cls, rng: np.random.Generator, count: int, wavelength_mm: tuple[float, float]
    ) -> Waves:
        directions = rng.normal(size=(count, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelengths = rng.uniform(*wavelength_mm, size=count)
        phases = rng.uniform(0, 2 * np.pi, count)
        return cls(directions * (2 * np.pi / wavelengths)[:, None], phases)

    def scaled(self, factor: float) -> Waves:
        """The same pattern stretched by `factor` in space."""
        return Waves(self.vectors / factor, self.phases)

    def value(self, x, y, z) -> np.ndarray:
        total = None
        norm = np.float32(np.sqrt(2.0 / max(len(self.phases), 1)))
        for (kx, ky, kz), phase in zip(self.vectors, self.phases, strict=True):
            term = np.cos(np.float32(kx) * x + np.float32(ky) * y + np.float32(kz) * z
                          + np.float32(phase))
            total = term if total is None else total + term
        return total * norm


@dataclass(frozen=True)
class Wobbled(Implicit):
    """A surface pushed in and out by a smooth random field: shape jitter and lobulation."""

    base: Implicit
    waves: Waves
    amplitude_mm: float

    def bounds(self) -> Box:
        low, high = self.base.bounds()
        reach = self.reach_mm
        return low - reach, high + reach

    @property
    def reach_mm(self) -> float:
        """The most the surface can move: the field is bounded by sqrt(2K)."""
        return float(np.sqrt(2.0 * len(self.waves.phases))) * abs(self.amplitude_mm)

    def distance(self, x, y, z):
        push = np.float32(self.amplitude_mm) * self.waves.value(x, y, z)
        return self.base.distance(x, y, z) - push

    def distance_on_grid(self, xs, ys, zs):
        base = grid_distance_in_box(self.base, xs, ys, zs, pad_mm=self.reach_mm + 2.0)
        x = _as_float32(xs)[:, None, None]
        y = _as_float32(ys)[None, :, None]
        z = _as_float32(zs)[None, None, :]
        return base - np.float32(self.amplitude_mm) * self.waves.value(x, y, z)


def _reduce(operation, arrays: list[np.ndarray]) -> np.ndarray:
    result = arrays[0]
    for array in arrays[1:]:
        result = operation(result, array)
    return result


def smooth_path(control: np.ndarray, step_mm: float = 6.0) -> np.ndarray:
    """A Catmull-Rom curve through control points (N, 3), resampled about every `step_mm`."""
    control = np.asarray(control, dtype=float)
    padded = np.vstack([2 * control[0] - control[1], control, 2 * control[-1] - control[-2]])
    samples = [control[0]]
    for index in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[index - 1 : index + 3]
        count = max(int(np.ceil(np.linalg.norm(p2 - p1) / step_mm)), 1)
        for t in np.arange(1, count + 1) / count:
            t2, t3 = t * t, t * t * t
            samples.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                                  + (-p0 + 3 * p1 - 3 * p2 + p3) * t3))
    return np.asarray(samples)


def interpolate_along(path: np.ndarray, control_values: Sequence[float]) -> np.ndarray:
    """Values given at evenly spaced fractions of the path's length, interpolated at each point."""
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    fraction = np.concatenate([[0.0], np.cumsum(steps)]) / max(float(steps.sum()), 1e-9)
    return np.interp(fraction, np.linspace(0, 1, len(control_values)), control_values)


@dataclass(frozen=True)
class HalfSpace(Implicit):
    """Points on the side of a plane opposite its unit `normal` (the plane passes `point`)."""

    point: tuple[float, float, float]
    normal: tuple[float, float, float]

    def bounds(self) -> Box:
        return np.full(3, -np.inf), np.full(3, np.inf)

    def distance(self, x, y, z):
        n = np.asarray(self.normal, dtype=float)
        n = n / np.linalg.norm(n)
        p = self.point
        return (np.float32(n[0]) * (x - np.float32(p[0]))
                + np.float32(n[1]) * (y - np.float32(p[1]))
                + np.float32(n[2]) * (z - np.float32(p[2])))


def model_volume_mm3(shape: Implicit, step_mm: float) -> float:
    """Volume (mm³) of a bounded solid, counted on a `step_mm` grid over its bounds."""
    low, high = shape.bounds()
    axes = [np.arange(lo + step_mm / 2, hi, step_mm) for lo, hi in zip(low, high, strict=True)]
    if any(len(axis) == 0 for axis in axes):
        return 0.0
    inside = 0
    # Slab by slab along z to bound memory for large lesions.
    chunk = max(1, 2_000_000 // (len(axes[0]) * len(axes[1])))
    for start in range(0, len(axes[2]), chunk):
        d = shape.distance_on_grid(axes[0], axes[1], axes[2][start : start + chunk])
        inside += int(np.count_nonzero(d <= 0))
    return inside * step_mm**3
