"""The synthesizer's shared vocabulary: a tumor's parameter record, the crop it lives in, its shape.

Parameters are drawn first (profiles + a numpy Generator) into a `TumorParams`, then applied by a
pure function; the record alone rebuilds the same tumor bit for bit (the TorchIO pattern).
All positions are RAS world mm; all sizes mm; all intensities HU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from tumorscale.geometry import spacing_of

DEFAULT_SIZE_MIX: tuple[float, float, float] = (4.0, 2.0, 1.0)


class NoRoom(Exception):
    """A sampler cannot place a tumor in this scan; `reason` says why in words (the caller records
    it as a skipped tumor, never a crash)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class EllipsoidGeometry:
    """Parenchymal tumors: the ellipsoid's equivalent diameter when it differs from the intended
    one (a bulging tumor is drawn larger so that what neighbours leave has the intended size)."""

    shape_diameter_mm: float


@dataclass(frozen=True)
class WallGeometry:
    """Wall thickening of a hollow organ: a segment of the tracked centreline, arc and depths."""

    polyline_mm: tuple[tuple[float, float, float], ...]  # tracked centreline, RAS mm
    centre_index: int  # vertex the arc lengths count from
    segment_start_mm: float  # arc length of the segment's ends from that vertex
    segment_end_mm: float
    taper_mm: float  # thinner shoulders over this length at each end
    arc_deg: float  # 360 = annular, else eccentric
    start_deg: float  # where an eccentric arc starts around the tube
    inner_depth_mm: float  # inner boundary below the organ surface (narrows the lumen)
    outward_mm: float  # outer boundary outside the organ surface
    organ_radius_mm: float  # the tube's radius where the segment was placed
    irregularity: float  # relative amplitude of the smooth surface bumps
    growth_max_hu: float  # outward growth stops at brighter tissue than this
    target_hu: float  # intended absolute HU of the tumor

    @property
    def length_mm(self) -> float:
        return self.segment_end_mm - self.segment_start_mm

    @property
    def thickness_mm(self) -> float:
        return self.inner_depth_mm + self.outward_mm


@dataclass(frozen=True)
class PolypGeometry:
    """A polypoid mass on a hollow organ's inner wall, growing into the lumen."""

    base_radius_mm: float
    height_mm: float
    lobulation: float
    organ_radius_mm: float
    target_hu: float


@dataclass(frozen=True)
class EndometrialGeometry:
    """An endometrial mass: an ellipsoid on the uterus' cavity axis (semi-axes in mm)."""

    long_mm: float
    transverse_mm: float
    ap_mm: float
    irregularity: float
    growth_max_hu: float


@dataclass(frozen=True)
class FibroidGeometry:
    """A fibroid: a near-sphere whose centre depth sets its type."""

    radius_mm: float
    location: str  # intramural | submucosal | subserosal
    irregularity: float
    growth_max_hu: float


Geometry = EllipsoidGeometry | WallGeometry | PolypGeometry | EndometrialGeometry | FibroidGeometry
GEOMETRY_TYPES: dict[str, type] = {
    "ellipsoid": EllipsoidGeometry,
    "wall": WallGeometry,
    "polyp": PolypGeometry,
    "endometrial": EndometrialGeometry,
    "fibroid": FibroidGeometry,
}


def geometry_to_dict(geometry: Geometry | None) -> dict[str, object] | None:
    """JSON-ready form of a geometry record: its fields plus its `type` name."""
    if geometry is None:
        return None
    name = next(key for key, cls in GEOMETRY_TYPES.items() if isinstance(geometry, cls))
    data = asdict(geometry)
    if "polyline_mm" in data:
        data["polyline_mm"] = [list(point) for point in data["polyline_mm"]]
    return {"type": name, **data}


def geometry_from_dict(data: dict[str, object] | None) -> Geometry | None:
    """The geometry record of `geometry_to_dict`'s output (None stays None)."""
    if not data:
        return None
    values = dict(data)
    name = str(values.pop("type", ""))
    if name not in GEOMETRY_TYPES:
        raise ValueError(f"unknown tumor geometry type {name!r}; expected {sorted(GEOMETRY_TYPES)}")
    if "polyline_mm" in values:
        values["polyline_mm"] = tuple(
            tuple(float(v) for v in point)
            for point in values["polyline_mm"]  # type: ignore[union-attr]
        )
    if "centre_index" in values:
        values["centre_index"] = int(values["centre_index"])  # type: ignore[arg-type]
    return GEOMETRY_TYPES[name](**values)


@dataclass(frozen=True)
class TumorParams:
    """Everything needed to rebuild one synthetic tumor (JSON/CSV-friendly, no arrays).

    `geometry` holds the kind's own shape record (None: a plain ellipsoid of `diameter_mm`).
    `contrast_hu` is what is applied; `floor_shift_hu` is how much an HU floor raised it above the
    contrast drawn for the scan's `phase` (0 when the draw was used as is).
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
    phase: str = "portal_venous"  # contrast phase of the host scan the contrast was drawn for
    floor_shift_hu: float = 0.0  # > 0: an HU floor raised the drawn contrast by this much
    necrosis_floor_shift_hu: float = 0.0  # > 0: the fluid floor raised the core's contrast
    geometry: Geometry | None = None

    @property
    def rotation_matrix(self) -> np.ndarray:
        return np.asarray(self.rotation, dtype=float).reshape(3, 3)

    def to_dict(self) -> dict[str, object]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["geometry"] = geometry_to_dict(self.geometry)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TumorParams:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("center_mm", "semi_axis_scale", "rotation"):
            if name in values:
                values[name] = tuple(float(v) for v in values[name])  # type: ignore[union-attr]
        geometry = values.get("geometry")
        if geometry is None or isinstance(geometry, dict):
            values["geometry"] = geometry_from_dict(geometry)  # type: ignore[arg-type]
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
        return spacing_of(self.affine)

    def world_points(self) -> np.ndarray:
        """RAS mm of every voxel centre in the crop, shape (*crop.shape, 3)."""
        grid = np.indices(self.shape, dtype=np.float32)
        grid += np.asarray(self.start, dtype=np.float32).reshape(3, 1, 1, 1)
        points = np.tensordot(self.affine[:3, :3].astype(np.float32), grid, axes=1)
        points += self.affine[:3, 3].astype(np.float32).reshape(3, 1, 1, 1)
        return np.moveaxis(points, 0, -1)

    def coarsened(self, target_mm: float) -> tuple[tuple[slice, ...], Crop]:
        """Every k-th voxel of this crop per axis, k = round(target / spacing) (at least 1):
        the strided slices into the volume and the coarse crop they form (its own affine)."""
        steps = [max(1, round(target_mm / s)) for s in self.spacing_mm]
        slices = tuple(slice(a, b, k) for a, b, k in zip(self.start, self.stop, steps, strict=True))
        shape = tuple(len(range(s.start, s.stop, s.step)) for s in slices)
        affine = np.asarray(self.affine, float) @ np.diag([*steps, 1.0])
        affine[:3, 3] = (self.affine @ np.append(np.asarray(self.start, float), 1.0))[:3]
        return slices, Crop((0, 0, 0), shape, affine)  # type: ignore[arg-type]

    @classmethod
    def around(
        cls,
        center_mm: np.ndarray,
        radius_mm: float,
        volume_shape: tuple[int, int, int],
        affine: np.ndarray,
    ) -> Crop:
        """The box of voxels within `radius_mm` (per axis) of `center_mm`, clipped to the volume."""
        center_voxel = np.linalg.solve(affine, np.append(np.asarray(center_mm, float), 1.0))[:3]
        spacing = np.asarray(spacing_of(affine))
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


@dataclass(frozen=True)
class TumorFamily:
    """One organ family's synthesizer as data (parenchymal, wall thickening, polyp, uterus).

    sample(host, rng, size_class, kind, seed) -> TumorParams draws a record or raises `NoRoom`;
    shape(params, crop, context) -> TumorShape builds it (pure); crop_radius_mm(params) is the
    half-size of the box it lives in; max_reach_mm(organ, size_class) bounds that for any record
    of the class (what a data loader reads around a tumor centre).
    """

    name: str
    organs: tuple[str, ...]
    kinds: tuple[str, ...]
    sample: Callable[..., TumorParams]
    shape: ShapeBuilder
    crop_radius_mm: Callable[[TumorParams], float]
    max_reach_mm: Callable[[str, str], float]
