"""The reference lesion model: the phantom's stand-in for radiologist-annotated real tumors.

Independent of `tumorscale.synth` on purpose (it shares no code), so a synthesizer can be judged
against tumors it did not make. Parameters are drawn first (`plan_tumors`), then turned into
layers painted after the anatomy; each lesion is described by a `ReferenceTumor`.

Per organ (portal-venous contrast relative to the organ's parenchyma, notes §6-§7):
- pancreas: hypodense mass (≈ -40 HU), ill-defined edge, two thirds in the head; may bulge the
  pancreas contour (the pancreas mask grows with it).
- liver: 1-4 hypodense metastases (-30…-70 HU), some with an enhancing rim, large ones necrotic.
- kidney: heterogeneous mass, hypodense vs cortex; half are exophytic (the lesion may leave the
  kidney into the perirenal fat, never into another organ; the kidney mask keeps its own shape).
- colon, esophagus: a segment of eccentric or annular wall thickening that narrows the lumen; the
  organ mask grows to contain it.
- uterus: hypodense endometrial mass in the uterine cavity.
Sizes follow the bins <20, 20-50, >50 mm equivalent diameter, mostly small and medium.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tumorscale.geometry import rotation_matrix
from tumorscale.organs import TUMOR_ORGANS
from tumorscale.phantom.anatomy import Anatomy, HollowOrgan
from tumorscale.phantom.geometry import (
    Difference,
    Ellipsoid,
    HalfSpace,
    Implicit,
    Intersection,
    Tube,
    Union,
    Waves,
    Wobbled,
    model_volume_mm3,
)
from tumorscale.phantom.render import HuField, Layer
from tumorscale.phantom.tissues import Tissue
from tumorscale.sizes import equivalent_diameter_mm

T = Tissue
DIAMETER_RANGES_MM = ((10.0, 20.0), (20.0, 50.0), (50.0, 75.0))
SIZE_BIN_WEIGHTS = (0.5, 0.35, 0.15)
MAX_DIAMETER_MM = {"pancreas": 50.0, "liver": 75.0, "kidney": 70.0, "colon": 60.0,
                   "esophagus": 45.0, "uterus": 42.0}
# Parenchyma intensity (name in the HU table) the contrast of each organ's tumors refers to.
REFERENCE_TISSUE = {"pancreas": "pancreas", "liver": "liver", "kidney": "kidney_cortex",
                    "colon": "bowel_wall", "esophagus": "bowel_wall", "uterus": "myometrium"}
# Lesion-map value of each organ (1-based, registry order).
LESION_INDEX = {organ: index + 1 for index, organ in enumerate(TUMOR_ORGANS)}
SECOND_ORGAN_PROBABILITY = 0.25


@dataclass(frozen=True)
class ReferenceTumor:
    """One reference tumor, as the manifest stores it (world RAS mm, HU)."""

    organ: str
    kind: str
    center_mm: tuple[float, float, float]
    diameter_mm: float  # equivalent diameter (6 V / π)^(1/3) of the lesion model
    contrast_hu: float  # intended core median minus the organ's parenchyma HU
    lesion_hu: float  # intended core HU
    edge_mm: float
    necrotic: bool = False
    rim: bool = False
    side: str | None = None  # kidney: "left" / "right"

    def to_json(self) -> dict:
        record = asdict(self)
        record["center_mm"] = [round(float(v), 2) for v in self.center_mm]
        for key in ("diameter_mm", "contrast_hu", "lesion_hu", "edge_mm"):
            record[key] = round(float(record[key]), 2)
        return record


@dataclass(frozen=True)
class PlannedTumor:
    """A record plus everything needed to paint it."""

    record: ReferenceTumor
    shape: Implicit
    texture: Waves
    texture_hu: float
    necrosis_hu: float
    rim_hu: float
    rim_mm: float
    label: Tissue | None
    allowed: frozenset[Tissue]

    def layer(self) -> Layer:
        return Layer(f"{self.record.organ} lesion", self.shape, self._field(), self.label,
                     self.allowed, self.record.edge_mm, LESION_INDEX[self.record.organ])

    def _field(self) -> HuField:
        base = np.float32(self.record.lesion_hu)
        radius = np.float32(self.record.diameter_mm / 2.0)

        def field_(x, y, z, distance):
            depth = -distance
            hu = base + np.float32(self.texture_hu) * self.texture.value(x, y, z)
            if self.necrosis_hu:
                core = np.clip((depth - 0.45 * radius) / (0.15 * radius), 0.0, 1.0)
                hu = hu + np.float32(self.necrosis_hu) * core
            if self.rim_hu:
                shell = np.clip(1.0 - depth / np.float32(self.rim_mm), 0.0, 1.0) * (depth >= 0)
                hu = hu + np.float32(self.rim_hu) * shell
            return hu

        return field_


def _sample_diameter(rng: np.random.Generator, organ: str) -> float:
    low, high = DIAMETER_RANGES_MM[int(rng.choice(3, p=SIZE_BIN_WEIGHTS))]
    return float(min(rng.uniform(low, high), MAX_DIAMETER_MM[organ]))


def _volume_step(diameter_mm: float) -> float:
    return float(np.clip(diameter_mm / 30.0, 0.3, 1.0))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    return rotation_matrix(rng.uniform(0, 2 * np.pi, 3))


def _blob(rng: np.random.Generator, center: np.ndarray, diameter_mm: float,
          rotation: np.ndarray | None = None, aspect: tuple[float, float, float] | None = None,
          clip: Implicit | None = None) -> tuple[Implicit, float]:
    """A lobulated solid of equivalent diameter ≈ `diameter_mm`.

    Returns the solid and its equivalent diameter measured on a fine grid, within `clip` (the
    organ it is confined to) when given.
    """
    rotation = _random_rotation(rng) if rotation is None else rotation
    if aspect is None:
        aspect = tuple(rng.uniform(0.8, 1.25, 3))
    aspect_arr = np.asarray(aspect, dtype=float) / np.prod(aspect) ** (1.0 / 3.0)
    lobes = []
    for _ in range(int(rng.integers(0, 4))):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        lobes.append((direction * rng.uniform(0.45, 0.75), rng.uniform(0.35, 0.6)))
    waves = Waves.sample(rng, 3, (0.6, 1.5))  # in units of the radius; stretched below
    wobble = rng.uniform(0.04, 0.09)

    def build(radius: float) -> Implicit:
        parts: list[Implicit] = [Ellipsoid(tuple(center), tuple(aspect_arr * radius), rotation)]
        parts += [Ellipsoid(tuple(center + offset * radius), (size * radius,) * 3)
                  for offset, size in lobes]
        return Wobbled(Union(tuple(parts)), waves.scaled(radius), wobble * radius)

    radius = diameter_mm / 2.0
    shape = build(radius)
    volume = model_volume_mm3(shape, _volume_step(diameter_mm))
    radius *= (np.pi / 6.0 * diameter_mm**3 / max(volume, 1e-6)) ** (1.0 / 3.0)
    shape = build(radius)
    measured = shape if clip is None else Intersection((shape, clip))
    return shape, equivalent_diameter_mm(model_volume_mm3(measured, _volume_step(diameter_mm)))


def _inside_point(rng: np.random.Generator, organ: Implicit, depth_mm: float,
                  avoid: list[tuple[np.ndarray, float]], radius_mm: float = 0.0,
                  tries: int = 400) -> np.ndarray | None:
    """A random point at least `depth_mm` inside `organ`, clear of the lesions in `avoid`.

    `avoid` holds (centre, radius) of lesions already placed; a lobulated lesion reaches about
    1.4 radii, so centres stay 1.4 (r1 + r2) + 3 mm apart.
    """
    low, high = organ.bounds()
    candidates = rng.uniform(low, high, size=(tries, 3))
    depth = -organ.distance_at(candidates)
    for point, point_depth in zip(candidates, depth, strict=True):
        if point_depth >= depth_mm and all(
            np.linalg.norm(point - centre) > 1.4 * (radius + radius_mm) + 3.0
            for centre, radius in avoid
        ):
            return point
    return None


def _solid_tumor(rng, organ: str, anatomy: Anatomy, hu_table, avoid) -> PlannedTumor | None:
    diameter = _sample_diameter(rng, organ)
    reference = hu_table[REFERENCE_TISSUE[organ]]
    side = None
    necrotic = rim = False
    rim_hu = rim_mm = necrosis_hu = 0.0
    edge_mm = 0.0
    rotation = aspect = None
    if organ == "pancreas":
        contrast = float(np.clip(rng.normal(-40.0, 12.0), -75.0, -20.0))
        path = anatomy.pancreas_path
        fraction = rng.uniform(0.05, 0.3) if rng.random() < 2 / 3 else rng.uniform(0.35, 0.9)
        center = path[int(fraction * (len(path) - 1))] + rng.normal(0.0, 2.0, 3)
        edge_mm = float(min(rng.uniform(2.5, 4.5), 0.15 * diameter))
        texture_hu = rng.uniform(4.0, 8.0)
        kind = "pdac"
        label, allowed = T.PANCREAS, frozenset({T.PANCREAS, T.VISCERAL_FAT})
    elif organ == "liver":
        contrast = float(rng.uniform(-70.0, -30.0))
        center = None
        for _ in range(4):
            center = _inside_point(rng, anatomy.solid[T.LIVER], 0.5 * diameter + 6.0, avoid,
                                   0.5 * diameter)
            if center is not None:
                break
            diameter *= 0.8
        if center is None:
            return None
        rim = diameter >= 20.0 and rng.random() < 0.5
        if rim:
            rim_hu, rim_mm = float(rng.uniform(20.0, 35.0)), float(rng.uniform(1.5, 2.5))
        texture_hu = rng.uniform(4.0, 9.0)
        kind = "metastasis"
        label, allowed = T.LIVER, frozenset({T.LIVER, T.HEPATIC_VESSEL})
    elif organ == "kidney":
        contrast = float(rng.uniform(-90.0, -40.0))
        side = "left" if rng.random() < 0.5 else "right"
        kidney = anatomy.solid[T.KIDNEY_LEFT if side == "left" else T.KIDNEY_RIGHT]
        exophytic = rng.random() < 0.5
        center = None
        if exophytic:
            low, high = kidney.bounds()
            points = rng.uniform(low, high, size=(400, 3))
            depth = -kidney.distance_at(points)
            ok = np.flatnonzero((depth > 0.0) & (depth < 0.25 * diameter + 2.0))
            center = points[ok[0]] if len(ok) else None
        if center is None:
            diameter = min(diameter, 35.0)
            center = _inside_point(rng, kidney, 0.3 * diameter, avoid, 0.5 * diameter)
            exophytic = False
        if center is None:
            return None
        texture_hu = rng.uniform(8.0, 15.0)
        kind = "rcc_exophytic" if exophytic else "rcc"
        label = None  # the kidney mask keeps its own outline
        kidney_tissue = T.KIDNEY_LEFT if side == "left" else T.KIDNEY_RIGHT
        # Exophytic masses may grow into the perirenal fat; intrarenal ones stay in the kidney.
        allowed = frozenset({kidney_tissue, T.VISCERAL_FAT} if exophytic else {kidney_tissue})
    else:  # uterus
        contrast = float(rng.uniform(-55.0, -25.0))
        cavity = anatomy.uterine_cavity
        # The mass fills and expands the cavity; the uterus bounds its size.
        diameter = min(diameter, 2.6 * cavity.radii[0])
        center = np.asarray(cavity.center) + rng.normal(0.0, 2.0, 3)
        rotation, aspect = cavity.rotation, (1.0, 0.7, 1.5)
        edge_mm = float(min(2.0, 0.2 * diameter))
        texture_hu = rng.uniform(4.0, 8.0)
        kind = "endometrial"
        label, allowed = T.UTERUS, frozenset({T.UTERUS})
    if diameter > 30.0 and organ in ("liver", "kidney") and rng.random() < 0.5:
        necrotic = True
        necrosis_hu = float(rng.uniform(-45.0, -25.0))
    clip = {"liver": anatomy.solid[T.LIVER], "uterus": anatomy.solid.get(T.UTERUS)}.get(organ)
    shape, diameter = _blob(rng, np.asarray(center, dtype=float), diameter, rotation, aspect, clip)
    texture = Waves.sample(rng, 5, (6.0, 20.0))
    record = ReferenceTumor(organ, kind, tuple(float(v) for v in center), diameter, contrast,
                         reference + contrast, edge_mm, necrotic, rim, side)
    return PlannedTumor(record, shape, texture, float(texture_hu), necrosis_hu, rim_hu, rim_mm,
                        label, allowed)


def _wall_thickening(rng, organ: str, hollow: HollowOrgan, fov: tuple[np.ndarray, np.ndarray],
                     hu_table) -> PlannedTumor | None:
    """A segment of eccentric / annular wall thickening that narrows the lumen."""
    path, radii = hollow.path, hollow.radii
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    low, high = fov
    margin = 5.0
    visible = np.all((path > low + margin) & (path < high - margin), axis=1)
    # The longest stretch of the centreline inside the field of view.
    runs = np.split(np.arange(len(path)), np.flatnonzero(np.diff(visible.astype(int))) + 1)
    in_view = max((run for run in runs if visible[run[0]]), key=len, default=np.array([], int))
    if len(in_view) < 3 or arc[in_view[-1]] - arc[in_view[0]] < 20.0:
        return None
    usable = arc[in_view[-1]] - arc[in_view[0]]
    target = _sample_diameter(rng, organ)
    thickening = float(rng.uniform(6.0, 14.0) if organ == "colon" else rng.uniform(5.0, 10.0))
    eccentricity = float(rng.uniform(0.0, 0.8))
    narrowing = float(rng.uniform(0.4, 0.85))
    direction = rng.normal(size=3)
    lesion_hu = float(rng.uniform(45.0, 80.0))
    middle_pick = rng.uniform(0.0, 1.0)

    def build(length: float) -> tuple[Implicit, np.ndarray]:
        length = float(np.clip(length, 12.0, usable - 4.0))
        start_arc = arc[in_view[0]] + middle_pick * max(usable - length, 0.0)
        stops = np.linspace(start_arc, start_arc + length, 9)
        centre = np.stack([np.interp(stops, arc, path[:, a]) for a in range(3)], axis=1)
        radius = np.interp(stops, arc, radii)
        tangent = np.gradient(centre, axis=0)
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        normal = direction - (tangent @ direction)[:, None] * tangent
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-6)
        taper = 0.35 + 0.65 * np.sin(np.linspace(0.0, np.pi, len(stops)))
        thick = thickening * taper
        outer = Tube(centre + (0.5 * eccentricity * thick)[:, None] * normal,
                     radius + thick * (1.0 - 0.5 * eccentricity))
        lumen_radius = np.maximum(radius - hollow.wall_mm, 0.5) * (1.0 - narrowing * taper)
        lumen = Tube(centre - (0.3 * eccentricity * thick)[:, None] * normal,
                     np.maximum(lumen_radius, 0.3))
        ends = (HalfSpace(tuple(centre[0]), tuple(-tangent[0])),
                HalfSpace(tuple(centre[-1]), tuple(tangent[-1])))
        return Intersection((Difference(outer, lumen), *ends)), centre

    length = 40.0
    shape, centre = build(length)
    step = _volume_step(target)
    volume = model_volume_mm3(shape, step)
    length *= (np.pi / 6.0 * target**3) / max(volume, 1e-6)
    shape, centre = build(length)
    diameter = equivalent_diameter_mm(model_volume_mm3(shape, step))
    reference = hu_table[REFERENCE_TISSUE[organ]]
    middle = tuple(float(v) for v in centre[len(centre) // 2])
    record = ReferenceTumor(organ, "wall_thickening", middle, diameter, lesion_hu - reference,
                         lesion_hu, 0.0)
    return PlannedTumor(record, shape, Waves.sample(rng, 5, (6.0, 20.0)),
                        float(rng.uniform(3.0, 7.0)), 0.0, 0.0, 0.0, hollow.tissue,
                        frozenset({hollow.tissue, T.VISCERAL_FAT}))


def _organ_tumors(rng: np.random.Generator, organ: str, anatomy: Anatomy,
                  hu_table: dict[str, float]) -> list[PlannedTumor]:
    if organ in ("colon", "esophagus"):
        tissue = T.COLON if organ == "colon" else T.ESOPHAGUS
        tumor = _wall_thickening(rng, organ, anatomy.hollow[tissue], anatomy.field_of_view,
                                 hu_table)
        return [tumor] if tumor is not None else []
    planned: list[PlannedTumor] = []
    avoid: list[tuple[np.ndarray, float]] = []
    for _ in range(int(rng.integers(1, 5)) if organ == "liver" else 1):
        tumor = _solid_tumor(rng, organ, anatomy, hu_table, avoid)
        if tumor is not None:
            # Keep further lesions of the organ apart (their masks must stay separate).
            avoid.append((np.asarray(tumor.record.center_mm), 0.5 * tumor.record.diameter_mm))
            planned.append(tumor)
    return planned


def plan_tumors(rng: np.random.Generator, anatomy: Anatomy, hu_table: dict[str, float],
                tumor_fraction: float, tumor_organs: tuple[str, ...]) -> list[PlannedTumor]:
    """Decide whether the case has tumors, in which organs, and draw each tumor's parameters."""
    present = [organ for organ in tumor_organs if organ != "uterus" or anatomy.sex == "F"]
    if rng.random() >= tumor_fraction or not present:
        return []
    count = 2 if (len(present) > 1 and rng.random() < SECOND_ORGAN_PROBABILITY) else 1
    planned: list[PlannedTumor] = []
    organs_done = 0
    # Organs in random order; one where no tumor fits (e.g. too little esophagus in view) passes
    # its turn to the next.
    for organ in (present[i] for i in rng.permutation(len(present))):
        if organs_done == count:
            break
        tumors = _organ_tumors(rng, organ, anatomy, hu_table)
        organs_done += bool(tumors)
        planned += tumors
    return planned
