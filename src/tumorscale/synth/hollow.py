"""Hollow organs (colon, esophagus): their profile and the anatomy both of their tumor families
(wall thickening in `wall.py`, the colon's polypoid mass in `polyp.py`) draw from.

The organ mask is split by HU and depth into lumen (air < -300 HU, or anything deeper than the wall
shell) and wall (the non-air outer shell, `wall_shell_mm` deep); the wall's median HU is the
reference of `contrast_hu`. The centreline is tracked through an mm point cloud of the mask
(cross-section centroids, heading from a PCA of the organ's deeper half within ~20-40 mm), so the
tortuous colon and the z-running esophagus are handled alike.

Wall thickening is a segment of the tube, annular (360 deg) or eccentric (90-270 deg arc), whose
inner boundary lies `inner_depth_mm` below the organ surface (it fills the wall and part of the
lumen, narrowing it) and whose outer boundary lies `outward_mm` outside it (reported as
`organ_growth`, so the lesion stays inside the grown organ mask). The segment's polyline, arc and
depths are stored in a `WallGeometry`: the record alone rebuilds the tumor.

The anatomy (the organ's box, its point cloud, the other structures near it) is prepared once
per scan on the `OrganHost` and reused for every tumor drawn in it.

Profile numbers and their sources (synthesis-notes = ../shared/reference/synthesis-notes.md):

Each number, its value, and its source (§ = synthesis-notes section; [assumption] = not sourced):

- lumen air threshold: < -300 HU. §7 colon row.
- wall shell: 3 mm (normal wall 1-5 mm). §6 colon (1-2 mm distended, <= 5 mm collapsed);
  §7 "outer 2-5 mm shell".
- colon tumor HU: 40-90 HU absolute. §7 colon row ([assumption] there).
- esophagus tumor HU: 40-80 HU absolute. §7 esophagus row ([assumption] there).
- colon length: 20-80 mm (small class: 10-30 mm). §7 colon row; §6 "focal (< 5 cm)";
  small-class range [assumption].
- colon thickness: 8-25 mm (small class: 5-10 mm). §7 colon row; small range [assumption].
- esophagus length: 30-80 mm (small class: 12-30 mm). §7 esophagus row (§6: 3-8 cm,
  unverified); small range [assumption].
- esophagus thickness: 10-25 mm, > 13.5 mm typical (small class: 5-10 mm). §6 Durmaz 2020
  cut-off 13.5 mm; §7 esophagus row.
- annular share: colon 0.6, esophagus 0.5 (small class 0.15). §6 "annular most common"
  (colon), "often eccentric" (esophagus); shares [assumption].
- arc of an eccentric thickening: 90-270 deg. §7 colon row.
- polyp share: colon small 0.5, medium 0.3, never large. §6 colon morphology; CTC masses
  3-8 cm; shares [assumption].
- mass effect: none. A radial push from the tube centre would drive lumen gas into the
  thickened wall; the lumen narrowing is the mass effect [assumption].
- esophagus site: lower and middle thirds weighted x3. §7 esophagus row [assumption].
- outward growth: only into voxels of -300 HU .. wall median + 20 HU. §7 "keep fat planes to
  the aorta" [assumption].
- edge blur sigma: 0.8-1.5 mm (polyp 0.6-1.0 mm), 0.3 mm against lumen gas. §8.4 "0.5-2 mm
  mask blur"; gas face [assumption].
- size classes: small < 20, medium 20-50, large > 50 mm. The paper; tumorscale.sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from tumorscale.geometry import spacing_of
from tumorscale.io import Volume
from tumorscale.masks import mask_bounds
from tumorscale.synth.centerline import (
    OrganCloud,
    crop_to_mask,
    equivalent_diameter_of,
    perpendicular,
    soft_occupancy,
)
from tumorscale.synth.draws import uniform
from tumorscale.synth.host import OrganHost, union_of_others
from tumorscale.synth.phase import Phase
from tumorscale.synth.phase_contrast import contrast_for
from tumorscale.synth.reference import LUMEN_AIR_HU, reference_median_hu, wall_median_hu
from tumorscale.synth.types import Crop, CropContext, NoRoom, TumorParams, TumorShape

HOLLOW_KINDS = ("wall_thickening", "polyp")  # polyp: colon only

LOCAL_WALL_RADIUS_MM = 40.0  # the wall median is measured this close to the tumor
AIR_EDGE_MM = 0.3  # blur of the tumor's face against lumen gas
GROWTH_MAX_ABOVE_WALL_HU = 20.0  # outward growth stops at brighter tissue (enhanced organs)
MIN_ORGAN_MM3 = 1500.0  # below this no segment can be tracked
END_MARGIN_MM = 12.0  # polyline beyond each segment end (taper + blur)
# Sampling works on the organ's box plus this margin: more than any tumor reaches outside the
# organ (outward growth <= 24 mm x 1.18 irregularity, + 5 blur sigmas = 36 mm).
SAMPLING_MARGIN_MM = 45.0
TARGET_DIAMETER_MM = {"small": (10.0, 19.0), "medium": (22.0, 46.0), "large": (53.0, 72.0)}
EDGE_MM = (0.8, 1.5)  # wall thickening blur sigma
POLYP_EDGE_MM = (0.6, 1.0)

Range = tuple[float, float]
PerClass = dict[str, Range]


@dataclass(frozen=True)
class HollowProfile:
    """What the hollow-organ families draw from for one organ (numbers: module docstring)."""

    organ: str
    length_mm: PerClass  # wall thickening segment length per size class
    thickness_mm: PerClass
    annular: dict[str, float]  # share of annular (360 deg) thickenings per size class
    polyp: dict[str, float]  # share of polyps per size class
    inward_fraction: Range  # share of the thickening that grows inward
    residual_lumen_mm: Range  # lumen left open by an annular thickening
    search_radius_mm: float  # neighbourhood that defines the local tube


PROFILES: dict[str, HollowProfile] = {
    "colon": HollowProfile(
        organ="colon",
        length_mm={"small": (10.0, 30.0), "medium": (20.0, 80.0), "large": (30.0, 80.0)},
        thickness_mm={"small": (5.0, 10.0), "medium": (8.0, 18.0), "large": (12.0, 25.0)},
        annular={"small": 0.15, "medium": 0.6, "large": 0.6},
        polyp={"small": 0.5, "medium": 0.3, "large": 0.0},
        inward_fraction=(0.6, 0.85),  # the colon lumen is wide: most growth is inward
        residual_lumen_mm=(2.0, 5.0),
        search_radius_mm=30.0,
    ),
    "esophagus": HollowProfile(
        organ="esophagus",
        length_mm={"small": (12.0, 30.0), "medium": (30.0, 80.0), "large": (30.0, 80.0)},
        thickness_mm={"small": (5.0, 10.0), "medium": (10.0, 20.0), "large": (13.5, 25.0)},
        annular={"small": 0.15, "medium": 0.5, "large": 0.5},
        polyp={"small": 0.0, "medium": 0.0, "large": 0.0},
        inward_fraction=(0.3, 0.6),  # a narrow lumen: the wall mostly thickens outward
        residual_lumen_mm=(1.0, 2.5),
        search_radius_mm=15.0,
    ),
}


# ----------------------------------------------------------------------------- anatomy


@dataclass
class HollowAnatomy:
    """A hollow organ prepared for sampling: its box (+ margin) as a small volume, the organ and
    the other structures on it, and the organ's mm point cloud (for the centreline)."""

    organ: str
    phase: Phase  # of the scan: the tumor's target HU is drawn for it
    ct: Volume  # the box, world affine
    mask: np.ndarray  # bool organ on the box
    start: tuple[int, ...]  # the box's first voxel in the scan
    cloud: OrganCloud
    masks: Mapping[str, np.ndarray]  # the scan's masks (the other structures are read from them)
    names: tuple[str, ...]  # this organ's mask names

    def forbidden(self, crop: tuple[slice, ...]) -> np.ndarray:
        """The other structures (bool) on `crop`, a box of this anatomy's volume."""
        return union_of_others(self.masks, self.names, crop, self.start)


def anatomy(host: OrganHost) -> HollowAnatomy:
    """The host organ's `HollowAnatomy`, prepared on first use; `NoRoom` when it has none."""
    return host.prepared("hollow", lambda: _prepare(host))


def _prepare(host: OrganHost) -> HollowAnatomy:
    organ = host.organ
    if not host.names:
        raise NoRoom(f"no {organ} mask")
    name = host.names[0]
    full_mask = host.masks[name]
    bounds = mask_bounds(full_mask)
    found = crop_to_mask(full_mask, host.ct.affine, SAMPLING_MARGIN_MM, bounds)
    if found is None or bounds is None:
        raise NoRoom(f"{organ}: organ mask too small (0 voxels, 0 mm3)")
    box, box_affine = found
    mask = _organ_snapshot(np.asarray(full_mask), box, bounds)
    ct = Volume(np.asarray(host.ct.array)[box], box_affine)
    voxels = int(np.count_nonzero(mask))
    organ_mm3 = voxels * float(np.prod(spacing_of(ct.affine)))
    if organ_mm3 < MIN_ORGAN_MM3:
        raise NoRoom(f"{organ}: organ mask too small ({voxels} voxels, {organ_mm3:.0f} mm3)")
    if not _has_wall(np.asarray(ct.array), mask):
        raise NoRoom(f"{organ}: no soft-tissue wall in the organ mask (all air)")
    start = tuple(b.start for b in box)
    return HollowAnatomy(organ, host.phase.phase, ct, mask, start, OrganCloud(mask, ct.affine),
                         host.masks, host.names)


def _organ_snapshot(
    full_mask: np.ndarray, box: tuple[slice, ...], bounds: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """A bool copy of the organ mask on `box`: only its voxels' bounds are copied, the margin
    around them is zero (and lazily allocated zero pages cost nothing until read)."""
    mask = np.zeros(tuple(b.stop - b.start for b in box), bool)
    inner = tuple(slice(a - b.start, z - b.start) for a, z, b in zip(*bounds, box, strict=True))
    mask[inner] = full_mask[tuple(slice(a, z) for a, z in zip(*bounds, strict=True))]
    return mask


def _has_wall(ct: np.ndarray, mask: np.ndarray) -> bool:
    """Whether any organ voxel is soft tissue (not lumen air): a strided sample first (cheap,
    almost always enough), the whole box only when the sample finds none."""
    sample = (slice(None, None, 4),) * 3
    if (ct[sample][mask[sample]] >= LUMEN_AIR_HU).any():
        return True
    return bool((ct[mask] >= LUMEN_AIR_HU).any())


def local_wall_median(ct: Volume, organ_mask: np.ndarray, centre: np.ndarray) -> float:
    """Wall median HU within LOCAL_WALL_RADIUS_MM of `centre` (the whole organ if none there)."""
    box = Crop.around(centre, LOCAL_WALL_RADIUS_MM, ct.shape, ct.affine).slices
    array = np.asarray(ct.array)  # sliced before any conversion: never the whole volume
    value = wall_median_hu(array[box].astype(np.float32), organ_mask[box], ct.spacing)
    if value is None:
        value = wall_median_hu(array, organ_mask, ct.spacing)
    return float(value) if value is not None else 40.0


def pick_start(cloud: OrganCloud, organ: str, rng: np.random.Generator) -> np.ndarray:
    """A random deep point of the organ (esophagus: lower and middle thirds favoured)."""
    weights = np.ones(len(cloud.points))
    if organ == "esophagus":  # lower and middle thirds favoured (§7 [assumption])
        z = cloud.points[:, 2]
        relative = (z - z.min()) / max(float(np.ptp(z)), 1e-6)
        weights = np.where(relative < 2.0 / 3.0, 3.0, 1.0)
    weights = weights * (cloud.depth > 0.5 * float(np.percentile(cloud.depth, 90)))
    if weights.sum() <= 0:
        weights = np.ones(len(cloud.points))
    return cloud.points[rng.choice(len(cloud.points), p=weights / weights.sum())]


def local_tube(
    cloud: OrganCloud, organ: str, point: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Centre, axis and radius (mm) of the tube at `point`."""
    near = cloud.near(point, PROFILES[organ].search_radius_mm)
    if near.sum() < 8:
        return None
    radius = max(float(cloud.depth[near].max()), 2.0)
    axis = cloud.local_axis(point, max(20.0, 2.0 * radius))
    if axis is None:
        return None
    tangent = axis[1]
    found = cloud.recentre(point, tangent, 3.0, 1.5 * radius)
    if found is None:
        return None
    centre, radius = found
    return centre, tangent, max(radius, 2.0)


def draw_target_hu(organ: str, phase: Phase, kind: str, rng: np.random.Generator) -> float:
    """The tumor's absolute HU, drawn from its kind's range for the scan's phase."""
    spec = contrast_for(organ, kind, phase)
    assert spec.absolute_hu is not None  # hollow kinds are absolute in every phase
    return uniform(rng, spec.absolute_hu)


def random_frame(tangent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows: the tangent and two perpendicular directions, turned by a random angle."""
    u = perpendicular(tangent)
    v = np.cross(tangent, u)
    turn = rng.uniform(0.0, 2 * math.pi)
    u, v = math.cos(turn) * u + math.sin(turn) * v, -math.sin(turn) * u + math.cos(turn) * v
    return np.stack([tangent, u, v])


def occupancy_against_air(margin: np.ndarray, edge_mm: float, ct: np.ndarray) -> np.ndarray:
    """Soft occupancy with the record's blur, but a sharp face where the tumor meets lumen gas:
    a tissue/air boundary is already as sharp as the scanner makes it, and a blurred one would
    paint half-air voxels that drag the tumor's median HU."""
    occupancy = soft_occupancy(margin, edge_mm)
    air = ct < LUMEN_AIR_HU
    if air.any():
        occupancy[air] = soft_occupancy(margin[air], min(edge_mm, AIR_EDGE_MM))
    return occupancy


# ----------------------------------------------------------------------------- size fit


ShapeBuilder = Callable[[TumorParams, Crop, CropContext], TumorShape]
SIZE_FIT_GRID_MM = 1.6  # the size fit builds on a grid this coarse (8x fewer voxels at 0.8 mm)


def built_diameter_mm(
    params: TumorParams,
    anatomy: HollowAnatomy,
    radius_mm: float,
    build: ShapeBuilder,
    wall_median: float,
) -> float:
    """Equivalent diameter (mm) of the tumor as `build` makes it on the anatomy's box
    (occupancy >= 0.5, other structures cut out), on a grid of about SIZE_FIT_GRID_MM: the fit
    only needs the size to a few percent, and the pipeline measures the written tumor itself."""
    ct = anatomy.ct
    crop = Crop.around(np.asarray(params.center_mm), radius_mm, ct.shape, ct.affine)
    strided, coarse = crop.coarsened(SIZE_FIT_GRID_MM)
    ctx = CropContext(
        ct=ct.array[strided].astype(np.float32),
        organ=anatomy.mask[strided],
        forbidden=anatomy.forbidden(crop.slices)[_steps_of(strided)],
        organ_median_hu=wall_median,
    )
    shape = build(params, coarse, ctx)
    return equivalent_diameter_of(shape.occupancy >= 0.5, np.asarray(coarse.spacing_mm))


def _steps_of(strided: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(None, None, s.step) for s in strided)


def finalise(
    params: TumorParams,
    diameter_mm: float,
    anatomy: HollowAnatomy,
    radius_mm: float,
    target_hu: float,
    wall_median: float,
) -> TumorParams:
    """Record the built diameter, and the contrast that brings the tumor to `target_hu` against
    the reference the insertion pipeline will measure around it."""
    reference = reference_median_hu(
        np.asarray(anatomy.ct.array),
        [anatomy.mask],
        params.center_mm,
        radius_mm,
        np.asarray(anatomy.ct.affine),
        hollow=True,
    )
    if not np.isfinite(reference):
        reference = wall_median
    return replace(params, diameter_mm=float(diameter_mm), contrast_hu=float(target_hu - reference))
