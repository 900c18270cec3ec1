"""Per-case anatomy: sample body habitus and organ jitter, lay out every structure in mm.

Anatomy frame: x towards the patient's left, y anterior, z superior (LAS; `render.Grid.affine`
maps it to RAS by negating x); the body axis is x = y = 0.
Positions are tied to two landmarks that move with habitus: the vertebral body centre `spine_y`
(posterior organs, vessels) and the inner anterior abdominal wall `front_y` (anterior organs), so a
heavier patient gets more fat, not bigger organs. `build_anatomy` only samples numbers and builds
shapes; painting happens in `render`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tumorscale.geometry import rotation_matrix
from tumorscale.phantom.geometry import (
    Ellipsoid,
    Implicit,
    Intersection,
    Offset,
    Slab,
    Tube,
    Union,
    Waves,
    Wobbled,
    ZEllipse,
    interpolate_along,
    smooth_path,
)
from tumorscale.phantom.render import HuField, Layer
from tumorscale.phantom.tissues import Tissue

T = Tissue
CAVITY = frozenset({T.VISCERAL_FAT})
BODY_WALL = frozenset({T.VISCERAL_FAT, T.MUSCLE, T.SUBCUTANEOUS_FAT})


@dataclass(frozen=True)
class HollowOrgan:
    """A tube-shaped organ: centreline (N, 3) mm, outer radius per point, wall thickness."""

    path: np.ndarray = field(compare=False)
    radii: np.ndarray = field(compare=False)
    wall_mm: float
    tissue: Tissue

    @property
    def outer(self) -> Tube:
        return Tube(self.path, self.radii)


@dataclass(frozen=True)
class Anatomy:
    """One case's anatomy: layers to paint in order, and the shapes the lesion model needs."""

    sex: str
    # Body extent in-plane and the scanned z range (world mm, low and high corners).
    field_of_view: tuple[np.ndarray, np.ndarray]
    layers: tuple[Layer, ...]
    body: Implicit
    # Solid organs by tissue (kidneys per side), uterine cavity, hollow organs.
    solid: dict[Tissue, Implicit]
    hollow: dict[Tissue, HollowOrgan]
    uterine_cavity: Ellipsoid | None
    pancreas_path: np.ndarray = field(compare=False)
    habitus: dict[str, float]


def _fluid_level(level_y: float, lower: str, upper: str, hu_table: dict[str, float]) -> HuField:
    """Lumen contents: `lower` below the horizontal plane y = level_y (supine: dependent side)."""

    def field_(x, y, z, distance):
        below = np.clip(0.5 - (y - np.float32(level_y)) / np.float32(2.0), 0.0, 1.0)
        return hu_table[upper] + below * np.float32(hu_table[lower] - hu_table[upper])

    return field_


def _stool(waves: Waves, hu_table: dict[str, float]) -> HuField:
    """Mottled faeces: soft material with gas bubbles."""

    def field_(x, y, z, distance):
        pattern = waves.value(x, y, z)
        gas = np.clip((pattern - np.float32(1.1)) * np.float32(2.0), 0.0, 1.0)
        base = hu_table["stool"] + np.float32(25.0) * pattern
        return base + gas * (np.float32(hu_table["lumen_air"]) - base)

    return field_


class _Sampler:
    """Small helpers over one Generator (every draw goes through here, in a fixed order)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def u(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high))

    def n(self, sd: float) -> float:
        return float(self.rng.normal(0.0, sd))

    def jitter(self, point: tuple[float, float, float], sd: float) -> np.ndarray:
        return np.asarray(point, dtype=float) + self.rng.normal(0.0, sd, 3)

    def waves(self, count: int, wavelength_mm: tuple[float, float]) -> Waves:
        return Waves.sample(self.rng, count, wavelength_mm)


def build_anatomy(rng: np.random.Generator, sex: str, hu_table: dict[str, float]) -> Anatomy:
    """Sample one case's anatomy and return its layers (painting order) and organ shapes."""
    s = _Sampler(rng)
    layers: list[Layer] = []
    solid: dict[Tissue, Implicit] = {}
    hollow: dict[Tissue, HollowOrgan] = {}

    # --- Habitus: body size and fat.
    build = s.u(0.0, 1.0)
    half_width = 140.0 + 45.0 * build + s.n(5.0)
    half_depth = 95.0 + 40.0 * build + s.n(4.0)
    subcut = (8.0 + 28.0 * build) * s.u(0.75, 1.25)
    muscle = s.u(8.0, 14.0)
    skin = 2.0
    back_cut = 0.92
    back_y = -back_cut * half_depth
    spine_y = back_y + 0.5 * subcut + 70.0 + s.n(2.0)
    front_y = half_depth - skin - subcut - muscle
    inner_x = half_width - skin - subcut - muscle
    lateral = float(np.clip(inner_x / 115.0, 0.9, 1.2))
    organ_z = s.n(8.0)  # craniocaudal shift of the upper-abdominal organs (breathing, habitus)
    z_low, z_high = -195.0 + s.u(-15.0, 10.0), 150.0 + s.u(-10.0, 15.0)

    heights = (-320.0, -150.0, -60.0, 40.0, 260.0)
    width_profile = np.array([1.0, 1.04, 0.97, 1.0, 0.96]) * half_width
    depth_profile = np.array([0.95, 0.97, 1.0, 1.0, 1.02]) * half_depth
    zeros = (0.0,) * len(heights)

    def body_section(inset: float, back: float | None = back_cut) -> ZEllipse:
        return ZEllipse(heights, zeros, zeros, tuple(width_profile - inset),
                        tuple(depth_profile - inset), back)

    body = body_section(0.0)
    layers += [
        Layer("skin", body, "skin", T.SKIN),
        Layer("subcutaneous fat", body_section(skin), "subcutaneous_fat", T.SUBCUTANEOUS_FAT),
        Layer("abdominal wall", body_section(skin + subcut), "muscle", T.MUSCLE),
        Layer("abdominal cavity", body_section(skin + subcut + muscle), "visceral_fat",
              T.VISCERAL_FAT),
    ]

    lift = np.array([0.0, 0.0, organ_z])

    # --- Muscles of the back and the psoas.
    para_y = spine_y - 48.0
    for side in (-1, 1):
        para = ZEllipse(heights, (side * 33.0,) * 5, (para_y,) * 5, (24.0 * s.u(0.9, 1.15),) * 5,
                        (20.0 * s.u(0.9, 1.1),) * 5)
        layers.append(Layer("paraspinal muscle", para, "muscle", T.MUSCLE,
                            frozenset({T.VISCERAL_FAT, T.MUSCLE, T.SUBCUTANEOUS_FAT})))
    for side in (-1, 1):
        control = np.array([[25, spine_y + 6, 45], [38, spine_y + 10, -40],
                            [56, spine_y + 22, -110], [68, spine_y + 42, -190]], dtype=float)
        control[:, 0] *= side
        path = smooth_path(control, 10.0)
        radii = interpolate_along(path, [5.0, 15.0, 21.0, 18.0]) * s.u(0.85, 1.15)
        layers.append(Layer("psoas", Tube(path, radii), "muscle", T.MUSCLE, CAVITY))

    # --- Spine, ribs, pelvis.
    def spine_centre(z: float) -> float:
        # Lumbar lordosis: the lower lumbar spine sits a little more anterior.
        return spine_y + 8.0 * float(np.exp(-(((z + 60.0) / 80.0) ** 2)))

    column_z = tuple(np.linspace(-135.0, z_high + 40.0, 8))
    column_y = tuple(spine_centre(z) for z in column_z)
    body_rx = tuple(np.interp(column_z, (-135.0, 150.0), (26.0, 21.0)))
    body_ry = tuple(np.interp(column_z, (-135.0, 150.0), (19.0, 16.0)))
    column = ZEllipse(column_z, (0.0,) * 8, column_y, body_rx, body_ry)
    bone_ok = frozenset({T.VISCERAL_FAT, T.MUSCLE, T.SUBCUTANEOUS_FAT, T.BONE})
    layers += [
        Layer("vertebral cortex", column, "bone_cortical", T.BONE, bone_ok),
        Layer("vertebral body", Offset(column, -2.0), "bone_cancellous", T.BONE,
              frozenset({T.BONE})),
    ]
    extent = (np.array([-40.0, spine_y - 40, -200.0]), np.array([40.0, spine_y + 40, 200.0]))
    for disc_z in np.arange(-130.0, z_high + 40.0, 34.0) + s.u(-5, 5):
        disc = Intersection((column, Slab(2, disc_z - 4.5, disc_z + 4.5, extent)))
        layers.append(Layer("disc", disc, "disc", T.DISC, frozenset({T.BONE})))
    arch_y = tuple(y - 30.0 for y in column_y)
    arch = ZEllipse(column_z, (0.0,) * 8, arch_y, (15.0,) * 8, (13.0,) * 8)
    spinous = ZEllipse(column_z, (0.0,) * 8, tuple(y - 52.0 for y in column_y), (4.5,) * 8,
                       (13.0,) * 8)
    canal = ZEllipse(column_z, (0.0,) * 8, tuple(y + 1.0 for y in arch_y), (9.0,) * 8, (7.5,) * 8)
    layers += [
        Layer("vertebral arch", Union((arch, spinous)), "bone_cortical", T.BONE, bone_ok),
        Layer("arch marrow", Offset(Union((arch, spinous)), -2.0), "bone_cancellous", T.BONE,
              frozenset({T.BONE})),
        Layer("spinal canal", canal, "csf", T.SPINAL_CANAL, frozenset({T.BONE})),
    ]
    rib_a = half_width - skin - subcut - 0.5 * muscle
    rib_b = half_depth - skin - subcut - 0.5 * muscle
    rib_top = z_high - 5.0 + s.n(5.0)
    for index, reach in enumerate((2.4, 2.3, 2.15, 2.0, 1.6, 1.2)):
        rib_z = rib_top - 24.0 * index
        for side in (-1, 1):
            angles = np.linspace(0.45, reach, 14)
            points = np.stack([side * rib_a * np.sin(angles),
                               -back_cut * rib_b * np.cos(angles) * 0.95 + 4.0,
                               rib_z - 50.0 * (angles / np.pi) ** 1.3], axis=1)
            rib = Tube(points, 5.5)
            layers += [
                Layer("rib cortex", rib, "bone_cortical", T.BONE, bone_ok),
                Layer("rib marrow", Offset(rib, -1.8), "bone_cancellous", T.BONE,
                      frozenset({T.BONE})),
            ]
    pelvis_parts: list[Implicit] = []
    for side in (-1, 1):
        wing = Ellipsoid((side * 0.85 * inner_x, spine_y + 20.0, -135.0), (10.0, 55.0, 42.0),
                         rotation_matrix((0.0, side * 0.25, side * 0.55)))
        femur = Ellipsoid((side * 0.72 * inner_x, spine_y + 45.0, -205.0), (24.0, 24.0, 24.0))
        pelvis_parts += [wing, femur]
    sacrum = Ellipsoid((0.0, spine_y - 12.0, -172.0), (45.0, 18.0, 42.0),
                       rotation_matrix((-0.45, 0.0, 0.0)))
    pelvis_parts.append(sacrum)
    for part in pelvis_parts:
        layers += [
            Layer("pelvic bone", part, "bone_cortical", T.BONE, bone_ok),
            Layer("pelvic marrow", Offset(part, -3.0), "bone_cancellous", T.BONE,
                  frozenset({T.BONE})),
        ]

    # --- Great vessels (painted before the organs so they keep their round sections).
    aorta_path = smooth_path(np.array([
        [5.0, spine_y + 33, z_high + 40], [8.0, spine_y + 34, 60.0], [12.0, spine_y + 36, 0.0],
        [12.0, spine_y + 40, -60.0], [10.0, spine_y + 42, -85.0]]), 8.0)
    aorta_radius = 11.0 * s.u(0.85, 1.15)
    aorta = Tube(aorta_path, interpolate_along(aorta_path, [aorta_radius, 0.82 * aorta_radius]))
    ivc_path = smooth_path(np.array([
        [-20.0, spine_y + 30, -92.0], [-24.0, spine_y + 35, 0.0], [-26.0, spine_y + 40, 60.0],
        [-22.0, spine_y + 32, 110.0], [-15.0, spine_y + 38, z_high + 40]]), 8.0)
    ivc = Tube(ivc_path, 11.0 * s.u(0.85, 1.15))
    layers += [Layer("aorta", aorta, "aorta", T.AORTA, CAVITY),
               Layer("inferior vena cava", ivc, "postcava", T.POSTCAVA, CAVITY)]
    for side in (-1, 1):
        iliac_a = Tube(smooth_path(np.array([[10.0, spine_y + 42, -85.0],
                                             [side * 42.0, spine_y + 42, -140.0],
                                             [side * 72.0, spine_y + 58, -200.0]]), 8.0), 5.5)
        iliac_v = Tube(smooth_path(np.array([[-20.0, spine_y + 30, -92.0],
                                             [side * 38.0, spine_y + 30, -142.0],
                                             [side * 66.0, spine_y + 48, -200.0]]), 8.0), 7.0)
        layers += [Layer("iliac artery", iliac_a, "aorta", T.OTHER_VESSEL, CAVITY),
                   Layer("iliac vein", iliac_v, "other_vessel", T.OTHER_VESSEL, CAVITY)]

    confluence = s.jitter((-5.0, spine_y + 52, 25.0 + organ_z), 3.0)
    hilum = s.jitter((-45.0, spine_y + 55, 62.0 + organ_z), 4.0)
    spleen_centre = s.jitter((0.8 * inner_x, spine_y + 5.0, 85.0 + organ_z), 5.0)
    splenic_hilum = spleen_centre + np.array([-22.0, 12.0, -15.0])
    portal_bend = confluence + np.array([-20.0, 6.0, 20.0])
    portal = Tube(smooth_path(np.array([confluence, portal_bend, hilum]), 6.0),
                  7.0 * s.u(0.85, 1.15))
    splenic = Tube(smooth_path(np.array([confluence, [30.0, spine_y + 50, 32 + organ_z],
                                         [0.6 * inner_x, spine_y + 30, 45 + organ_z],
                                         splenic_hilum]), 6.0), 4.5 * s.u(0.85, 1.15))
    smv = Tube(smooth_path(np.array([confluence, [0.0, spine_y + 58, -20.0],
                                     [5.0, spine_y + 62, -75.0]]), 8.0), 5.0)
    sma = Tube(smooth_path(np.array([[12.0, spine_y + 44, 32.0 + organ_z],
                                     [9.0, spine_y + 58, 10.0], [9.0, spine_y + 64, -60.0]]), 8.0),
               3.5)
    layers += [Layer("portal vein", portal, "portal_vein", T.PORTAL_VEIN, CAVITY),
               Layer("splenic vein", splenic, "portal_vein", T.PORTAL_VEIN, CAVITY),
               Layer("superior mesenteric vein", smv, "other_vessel", T.OTHER_VESSEL, CAVITY),
               Layer("superior mesenteric artery", sma, "aorta", T.OTHER_VESSEL, CAVITY)]

    # --- Kidneys: cortex, medulla, sinus fat, pelvis.
    kidney_z = {1: 8.0 + organ_z + s.n(6.0), -1: -8.0 + organ_z + s.n(6.0)}
    kidney_tissue = {1: T.KIDNEY_LEFT, -1: T.KIDNEY_RIGHT}
    kidney_centres: dict[int, np.ndarray] = {}
    for side in (1, -1):
        centre = s.jitter((side * 0.66 * inner_x, spine_y + 2.0, kidney_z[side]), 3.0)
        kidney_centres[side] = centre
        scale = s.u(0.88, 1.12)
        rotation = rotation_matrix((0.15, side * 0.18, side * 0.45 + s.n(0.08)))
        outline = Wobbled(Ellipsoid(tuple(centre), (26.0 * scale, 22.0 * scale, 54.0 * scale),
                                    rotation), s.waves(3, (50.0, 90.0)), 1.5)
        tissue = kidney_tissue[side]
        solid[tissue] = outline
        medial = rotation @ np.array([-side * 1.0, 0.0, 0.0])
        sinus_centre = centre + medial * 14.0 * scale + np.array([0.0, 4.0, 0.0])
        own = frozenset({tissue})
        renal_vein_end = (-24.0, spine_y + 36.0, kidney_z[side] + 2.0)
        renal_vein_mid = (12.0, spine_y + 54.0, kidney_z[side] + 4.0) if side == 1 else (
            (centre[0] - 24.0) / 2.0, spine_y + 34.0, kidney_z[side] + 2.0)
        layers += [
            Layer("renal vein", Tube(smooth_path(np.array(
                [sinus_centre, renal_vein_mid, renal_vein_end]), 6.0), 4.5), "other_vessel",
                T.OTHER_VESSEL, CAVITY),
            Layer("kidney cortex", outline, "kidney_cortex", tissue, CAVITY),
            Layer("kidney medulla", Offset(outline, -7.0 * scale), "kidney_medulla", None, own),
            Layer("renal sinus",
                  Ellipsoid(tuple(sinus_centre), (11.0, 9.0, 28.0 * scale), rotation),
                  "renal_sinus_fat", None, own),
            Layer("renal pelvis", Ellipsoid(tuple(sinus_centre + medial * 4.0), (6.0, 5.0, 10.0),
                                            rotation), "urine", None, own),
        ]

    def hollow_layers(name: str, organ: HollowOrgan, lumen: HuField | str, lumen_radius=None):
        tube = organ.outer
        inner = Tube(organ.path, lumen_radius if lumen_radius is not None
                     else np.maximum(organ.radii - organ.wall_mm, 0.5))
        return [Layer(name, tube, "bowel_wall", organ.tissue, CAVITY),
                Layer(f"{name} lumen", inner, lumen, None, frozenset({organ.tissue}))]

    stomach_path = smooth_path(np.array([
        [0.45 * inner_x, spine_y + 52, 128.0], [0.6 * inner_x, spine_y + 72, 104.0],
        [0.6 * inner_x, front_y - 42, 75.0], [0.38 * inner_x, front_y - 30, 52.0],
        [10.0, front_y - 28, 44.0], [-15.0, front_y - 28, 45.0]]) + lift, 6.0)
    stomach_radii = interpolate_along(stomach_path, [34.0, 36.0, 30.0, 24.0, 17.0, 11.0])
    stomach = HollowOrgan(stomach_path, stomach_radii * s.u(0.85, 1.15), 4.0, T.STOMACH)
    # The cardia: on the fundus surface, medial, anterior and low; the esophagus ends just inside.
    cardia_direction = np.array([-0.75, 0.25, -0.6]) / np.linalg.norm([-0.75, 0.25, -0.6])
    gej = stomach_path[0] + stomach.radii[0] * cardia_direction
    esophagus_path = smooth_path(np.array([
        [18.0, spine_y + 56, z_high + 40], [20.0, spine_y + 58, 0.5 * (z_high + gej[2]) + 5],
        gej + np.array([-6.0, 0.0, 14.0]), gej - 0.3 * stomach.radii[0] * cardia_direction]), 5.0)
    esophagus = HollowOrgan(esophagus_path, np.full(len(esophagus_path), 10.0 * s.u(0.9, 1.1)),
                            3.5, T.ESOPHAGUS)
    layers += hollow_layers("esophagus", esophagus, "lumen_air",
                            lumen_radius=np.full(len(esophagus_path), 2.5))

    # --- Liver (right and left lobes), gallbladder, hepatic vessels.
    liver_scale = s.u(0.88, 1.12)
    right_lobe = Ellipsoid(tuple(s.jitter((-0.58 * inner_x, spine_y + 48.0, 88.0 + organ_z), 4.0)),
                           (78.0 * liver_scale * lateral, 72.0 * liver_scale, 68.0 * liver_scale),
                           rotation_matrix((0.1, -0.15, 0.2)))
    left_lobe = Ellipsoid(tuple(s.jitter((5.0, front_y - 38.0, 100.0 + organ_z), 4.0)),
                          (58.0 * liver_scale, 32.0 * liver_scale, 32.0 * liver_scale),
                          rotation_matrix((0.0, 0.25, -0.2)))
    liver = Wobbled(Union((right_lobe, left_lobe)), s.waves(3, (60.0, 120.0)), 4.0)
    solid[T.LIVER] = liver
    layers.append(Layer("liver", liver, "liver", T.LIVER, CAVITY))
    gallbladder = Ellipsoid(tuple(s.jitter((-40.0, front_y - 30.0, 50.0 + organ_z), 4.0)),
                            (15.0, 14.0, 32.0) * np.array(s.u(0.7, 1.1)),
                            rotation_matrix((0.5, 0.0, 0.2)))
    layers.append(Layer("gallbladder", gallbladder, "bile", T.GALLBLADDER,
                        frozenset({T.LIVER, T.VISCERAL_FAT})))
    vein_root = np.array([-22.0, spine_y + 34.0, 112.0 + organ_z])
    branches: list[Implicit] = []
    targets = [(-0.8 * inner_x, spine_y + 50, 100), (-0.45 * inner_x, front_y - 20, 100),
               (15.0, front_y - 35, 112)]
    for target in targets:
        end = s.jitter(np.asarray(target) + lift, 8.0)
        branches.append(Tube(smooth_path(np.array([vein_root, (vein_root + end) / 2 + s.jitter(
            (0, 0, 0), 6.0), end]), 6.0), np.array([6.0, 4.0, 2.0])))
    for _ in range(int(s.u(4, 7))):
        end = s.jitter((-0.55 * inner_x, spine_y + 60, 75 + organ_z), 25.0)
        mid = (hilum + end) / 2 + s.jitter((0, 0, 0), 8.0)
        branches.append(Tube(smooth_path(np.array([hilum, mid, end]), 6.0),
                             np.array([5.0, 3.5, 1.8])))
        twig = mid + s.jitter((0, 0, 0), 20.0)
        branches.append(Tube(np.array([mid, twig]), np.array([2.5, 1.5])))
    left_end = s.jitter((10.0, front_y - 40, 95 + organ_z), 6.0)
    branches.append(Tube(smooth_path(np.array([hilum, (hilum + left_end) / 2 + [0, 10, 5],
                                               left_end]), 6.0), np.array([5.0, 3.5, 2.0])))
    layers.append(Layer("hepatic vessels", Union(tuple(branches)), "hepatic_vessel",
                        T.HEPATIC_VESSEL, frozenset({T.LIVER})))

    # --- Spleen.
    spleen_scale = s.u(0.85, 1.2)
    spleen = Wobbled(Ellipsoid(tuple(spleen_centre), (24.0 * spleen_scale, 52.0 * spleen_scale,
                                                      46.0 * spleen_scale),
                               rotation_matrix((0.0, 0.2, -0.65 + s.n(0.1)))),
                     s.waves(3, (40.0, 80.0)), 3.0)
    solid[T.SPLEEN] = spleen
    layers.append(Layer("spleen", spleen, "spleen", T.SPLEEN, CAVITY))

    # --- Pancreas: head by the duodenum, neck over the portal confluence, tail at the spleen.
    pancreas_control = np.array([
        [-38.0, spine_y + 50, 6.0], [-40.0, spine_y + 60, 22.0], [-12.0, spine_y + 70, 28.0],
        [25.0, spine_y + 68, 35.0], [0.52 * inner_x, spine_y + 48, 45.0],
        splenic_hilum + np.array([-10.0, 10.0, -organ_z])]) + lift
    pancreas_control[1:-1] += rng.normal(0.0, 3.0, (len(pancreas_control) - 2, 3))
    pancreas_path = smooth_path(pancreas_control, 5.0)
    pancreas_scale = s.u(0.85, 1.15)
    pancreas_radii = interpolate_along(pancreas_path, [12.0, 15.0, 10.0, 10.5, 9.5, 8.0])
    pancreas = Wobbled(Tube(pancreas_path, pancreas_radii * pancreas_scale),
                       s.waves(3, (18.0, 35.0)), 1.5)
    solid[T.PANCREAS] = pancreas
    layers.append(Layer("pancreas", pancreas, "pancreas", T.PANCREAS, CAVITY))

    # --- Pelvis: uterus, bladder (before the bowel, which they push aside).
    fill = s.u(0.65, 1.15)
    bladder_centre = s.jitter((0.0, front_y - 42.0, -165.0 + 14.0 * fill), 3.0)
    bladder = Wobbled(Ellipsoid(tuple(bladder_centre), (40.0 * fill, 32.0 * fill, 30.0 * fill)),
                      s.waves(3, (40.0, 80.0)), 1.5)
    uterine_cavity = None
    if sex == "F":
        uterus_centre = bladder_centre + np.array([s.n(4.0), -28.0 * fill - 14.0, 36.0 * fill])
        uterus_scale = s.u(0.8, 1.2)
        tilt = rotation_matrix((-0.5 + s.n(0.15), 0.0, s.n(0.1)))  # anteverted
        uterus = Wobbled(Ellipsoid(tuple(uterus_centre), (30.0 * uterus_scale, 21.0 * uterus_scale,
                                                          42.0 * uterus_scale), tilt),
                         s.waves(3, (40.0, 80.0)), 1.5)
        uterine_cavity = Ellipsoid(tuple(uterus_centre), (12.0 * uterus_scale, 3.5,
                                                          26.0 * uterus_scale), tilt)
        solid[T.UTERUS] = uterus
        layers += [Layer("uterus", uterus, "myometrium", T.UTERUS, CAVITY),
                   Layer("endometrium", uterine_cavity, "endometrium", None, frozenset({T.UTERUS}))]
    # The uterus is painted first: it indents the bladder dome, not the other way round.
    layers += [Layer("bladder", bladder, "bladder_wall", T.BLADDER, CAVITY),
               Layer("urine", Offset(bladder, -3.0), "urine", None, frozenset({T.BLADDER}))]

    # --- Hollow organs: duodenum, stomach, colon.
    layers += hollow_layers("stomach", stomach, _fluid_level(
        float(stomach_path[:, 1].mean()) + s.u(-10, 10), "bowel_fluid", "lumen_air", hu_table))

    duodenum_path = smooth_path(np.array([
        [-15.0, front_y - 28, 45.0], [-45.0, spine_y + 75, 42.0], [-66.0, spine_y + 56, 25.0],
        [-66.0, spine_y + 52, -5.0], [-30.0, spine_y + 50, -22.0], [10.0, spine_y + 54, -18.0],
        [28.0, spine_y + 60, 5.0]]) + lift, 6.0)
    duodenum = HollowOrgan(duodenum_path, np.full(len(duodenum_path), 11.0), 2.0, T.DUODENUM)
    layers += hollow_layers("duodenum", duodenum,
                            _fluid_level(float(duodenum_path[:, 1].mean()) + 4.0, "bowel_fluid",
                                         "lumen_air", hu_table))

    colon_control = np.array([
        [-0.62 * inner_x, spine_y + 62, -95.0], [-0.7 * inner_x, spine_y + 45, -40.0],
        [-0.68 * inner_x, spine_y + 45, 5.0], [-0.55 * inner_x, front_y - 38, 22.0],
        [-0.2 * inner_x, front_y - 24, 8.0], [0.22 * inner_x, front_y - 24, 14.0],
        [0.66 * inner_x, spine_y + 62, 58.0], [0.74 * inner_x, spine_y + 35, 20.0],
        [0.74 * inner_x, spine_y + 35, -40.0], [0.64 * inner_x, spine_y + 48, -95.0],
        [0.35 * inner_x, front_y - 48, -118.0], [0.0, front_y - 45, -104.0],
        [-0.15 * inner_x, spine_y + 38, -132.0], [0.0, spine_y + 24, -160.0],
        [0.0, spine_y + 20, -200.0], [0.0, spine_y + 18, -260.0]])
    colon_control[1:-2] += rng.normal(0.0, 4.0, (len(colon_control) - 3, 3))
    colon_control[:8, 2] += 0.5 * organ_z
    colon_path = smooth_path(colon_control, 6.0)
    colon_radii = interpolate_along(colon_path, [28.0, 24.0, 24.0, 22.0, 20.0, 21.0, 20.0, 18.0,
                                                 17.0, 16.0, 15.0, 15.0, 17.0, 20.0, 18.0, 16.0])
    colon = HollowOrgan(colon_path, colon_radii * s.u(0.85, 1.15), 3.0, T.COLON)
    layers.append(Layer("colon", colon.outer, "bowel_wall", T.COLON, CAVITY))
    # Lumen contents differ by segment: stool in the right colon, gas, fluid in the sigmoid.
    steps = np.linalg.norm(np.diff(colon_path, axis=0), axis=1)
    fraction = np.concatenate([[0.0], np.cumsum(steps)])
    fraction /= fraction[-1]
    stool = _stool(s.waves(4, (8.0, 20.0)), hu_table)
    for low, high, contents in ((0.0, 0.2, stool), (0.2, 0.5, "lumen_air"),
                                (0.5, 0.72, "lumen_air"), (0.72, 0.9, None), (0.9, 1.0, stool)):
        pick = np.flatnonzero((fraction >= low) & (fraction <= high))
        pick = np.arange(max(pick[0] - 1, 0), min(pick[-1] + 2, len(colon_path)))
        part_path = colon_path[pick]
        if contents is None:
            contents = _fluid_level(float(part_path[:, 1].mean()) + s.u(-5, 5), "bowel_fluid",
                                    "lumen_air", hu_table)
        lumen = Tube(part_path, np.maximum(colon.radii[pick] - colon.wall_mm, 0.5))
        layers.append(Layer("colon lumen", lumen, contents, None, frozenset({T.COLON})))

    hollow.update({T.COLON: colon, T.ESOPHAGUS: esophagus, T.STOMACH: stomach})
    # The body's in-plane extent (widest sections) and the scanned z range.
    half_x, half_y = float(width_profile.max()), float(depth_profile.max())
    field_of_view = (np.array([-half_x, -half_y, z_low]), np.array([half_x, half_y, z_high]))
    habitus = {"half_width_mm": half_width, "half_depth_mm": half_depth,
               "subcutaneous_fat_mm": subcut, "spine_y_mm": spine_y, "front_y_mm": front_y}
    return Anatomy(sex, field_of_view, tuple(layers), body, solid, hollow, uterine_cavity,
                   pancreas_path, habitus)
