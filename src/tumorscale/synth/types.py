"""The synthesizer's shared vocabulary: a tumor's parameter record, the crop it lives in, its shape.

Parameters are drawn first (profiles + a numpy Generator) into a `TumorParams`, then applied by a
pure function; the record alone rebuilds the same tumor bit for bit (the TorchIO pattern).
All positions are RAS world mm; all sizes mm; all intensities HU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import numpy as np

# Size classes of the paper (equivalent diameter): small < 20 mm, medium 20-50 mm, large > 50 mm.
SIZE_CLASSES: tuple[str, ...] = ("small", "medium", "large")
DEFAULT_SIZE_MIX: tuple[float, float, float] = (4.0, 2.0, 1.0)


@dataclass(frozen=True)
class TumorParams:
    """Everything needed to rebuild one synthetic tumor (JSON/CSV-friendly, no arrays).

    `extra` holds kind-specific geometry as sorted (name, value) pairs, e.g. for wall thickening
    ("length_mm", 45.0), ("thickness_mm", 12.0), ("arc_deg", 270.0), ("start_deg", 30.0).
    """

    organ: str
    kind: str  # e.g. pdac, cyst, metastasis, hcc, rcc, wall_thickening, polyp, endometrial, fibroid
    seed: int  # seeds the pure application step (elastic field, texture)
    center_mm: tuple[float, float, float]  # RAS world
    diameter_mm: float  # intended equivalent diameter
    size_class: str  # small | medium | large
    semi_axis_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-axis jitter, product 1
    rotation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # 3x3 row-major
    elastic_mm: float = 0.0  # amplitude of the smooth random boundary displacement
    elastic_grain_mm: float = 10.0  # spatial scale of that displacement
    contrast_hu: float = -40.0  # intended median(tumor) - median(organ reference region)
    texture_sd_hu: float = 8.0  # heterogeneity of the mean-normalised texture
    texture_grain_mm: float = 3.0  # its correlation length
    edge_mm: float = 1.0  # boundary blur (Gaussian sigma)
    necrosis_hu: float = 0.0  # extra contrast of the necrotic core (0 = none)
    necrosis_fraction: float = 0.0  # core radius as a fraction of the tumor radius
    rim_hu: float = 0.0  # enhancing rim / capsule contrast (0 = none)
    rim_mm: float = 0.0  # its thickness
    exophytic: bool = False  # may leave the organ (kidney), never into another organ
    mass_effect: float = 0.3  # radial push strength (0 = none)
    mass_effect_extent: float = 1.3  # outer radius of the push, in tumor radii
    extra: tuple[tuple[str, float], ...] = ()

    def extra_value(self, name: str, default: float | None = None) -> float:
        for key, value in self.extra:
            if key == name:
                return value
        if default is None:
            raise KeyError(f"{self.kind} tumor record has no {name!r}")
        return default

    @property
    def rotation_matrix(self) -> np.ndarray:
        return np.asarray(self.rotation, dtype=float).reshape(3, 3)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TumorParams:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("center_mm", "semi_axis_scale", "rotation"):
            if name in values:
                values[name] = tuple(float(v) for v in values[name])  # type: ignore[union-attr]
        extra = values.get("extra") or {}
        values["extra"] = tuple(sorted((str(k), float(v)) for k, v in dict(extra).items()))
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Crop:
    """A voxel box of a canonical (RAS) volume: [start, stop) along each axis, with the volume's
    affine so voxel centres can be placed in world mm."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]
    affine: np.ndarray = field(compare=False, repr=False)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    def world_points(self) -> np.ndarray:
        """RAS mm of every voxel centre in the crop, shape (*crop.shape, 3)."""
        grid = np.indices(self.shape, dtype=np.float32)
        grid += np.asarray(self.start, dtype=np.float32).reshape(3, 1, 1, 1)
        points = np.tensordot(self.affine[:3, :3].astype(np.float32), grid, axes=1)
        points += self.affine[:3, 3].astype(np.float32).reshape(3, 1, 1, 1)
        return np.moveaxis(points, 0, -1)

    @classmethod
    def around(
        cls, center_mm: np.ndarray, radius_mm: float, volume_shape: tuple[int, int, int],
        affine: np.ndarray,
    ) -> Crop:
        """The box of voxels within `radius_mm` (per axis) of `center_mm`, clipped to the volume."""
        center_voxel = np.linalg.solve(affine, np.append(np.asarray(center_mm, float), 1.0))[:3]
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        half = np.ceil(radius_mm / spacing)
        start = np.clip(np.floor(center_voxel - half), 0, np.asarray(volume_shape)).astype(int)
        stop = np.clip(np.ceil(center_voxel + half) + 1, 0, np.asarray(volume_shape)).astype(int)
        return cls(tuple(int(v) for v in start), tuple(int(v) for v in stop), np.asarray(affine))


@dataclass
class CropContext:
    """What a shape builder may look at inside its crop (canonical RAS arrays of crop.shape)."""

    ct: np.ndarray  # HU, float32
    organ: np.ndarray  # bool: the target organ
    forbidden: np.ndarray  # bool: every other organ / structure the tumor must not enter
    organ_median_hu: float  # median HU of the organ's reference region (wall for hollow organs)


@dataclass
class TumorShape:
    """A tumor's geometry on its crop, before intensities: everything float32 in [0, 1]."""

    occupancy: np.ndarray  # soft tumor fraction per voxel (edge blur included); >= 0.5 is tumor
    necrosis: np.ndarray | None = None  # weight of the necrotic core
    rim: np.ndarray | None = None  # weight of the enhancing rim / capsule shell
    organ_growth: np.ndarray | None = None  # bool: voxels the organ mask gains (bulging wall)
    # Ellipsoid-normalised radius (1 on the boundary) that drives the mass effect; None: the
    # pipeline derives a plain ellipsoid from the record (centre, diameter, axes, rotation).
    normalised_radius: np.ndarray | None = None


# A shape builder turns a record into a shape on a crop; pure and deterministic.
ShapeBuilder = Callable[[TumorParams, Crop, CropContext], TumorShape]


@dataclass(frozen=True)
class TumorRecord:
    """One row of synthesis.csv: the parameters, what was achieved, or why it was skipped."""

    params: TumorParams | None
    organ: str
    achieved_contrast_hu: float | None = None  # median(tumor) - organ median, measured
    achieved_diameter_mm: float | None = None  # equivalent diameter of the written tumor mask
    organ_median_hu: float | None = None
    skipped: str | None = None  # reason when no tumor was inserted (never a crash)
