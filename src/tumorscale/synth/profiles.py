"""Organ profiles of the parenchymal organs (liver, pancreas, kidney) as data, with their sources.

All sizes are equivalent diameters in mm; all contrasts are HU relative to the organ's local median
(portal-venous phase), reached through a mean-normalised texture (see `texture.py`). Sources are
the facts collected in `shared/reference/synthesis-notes.md`; section numbers below refer to it.
Numbers marked [assumption] there are calibrated guesses to be tuned against real tumors (§9).

Hollow organs (colon, esophagus) and the uterus have their own profiles in `hollow.py` and
`uterus.py`; this module only names them. Contrast ranges per scan phase: `phase_contrast.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

PARENCHYMAL_ORGANS: tuple[str, ...] = ("liver", "pancreas", "kidney")
HOLLOW_ORGANS: tuple[str, ...] = ("colon", "esophagus")
SYNTH_ORGANS: tuple[str, ...] = ("pancreas", "liver", "kidney", "colon", "esophagus", "uterus")

Range = tuple[float, float]


@dataclass(frozen=True)
class KindProfile:
    """One tumor kind of an organ: how often it occurs and how it looks (uniform ranges)."""

    name: str
    probability: float
    contrast_hu: Range  # median(tumor) - median(organ)
    texture_sd_hu: Range  # heterogeneity of the mean-normalised texture
    texture_grain_mm: Range
    edge_mm: Range  # boundary blur sigma
    necrosis_probability: float = 0.0  # only for tumors > NECROSIS_MIN_DIAMETER_MM
    necrosis_hu: Range = (-55.0, -45.0)  # extra contrast of the core (§7 liver, §8.5)
    necrosis_fraction: Range = (0.3, 0.6)  # core radius / tumor radius
    rim_probability: float = 0.0
    rim_hu: Range = (0.0, 0.0)  # rim / capsule HU relative to the organ median
    rim_mm: Range = (1.0, 3.0)  # shell thickness (§8.5: 1-3 mm)
    absolute_hu: Range | None = None  # cysts: target HU is absolute, contrast = it - organ median
    contrast_normal: Range | None = None  # (mean, sd): draw normally, clipped to contrast_hu


@dataclass(frozen=True)
class OrganProfile:
    """Everything `sample_params` draws from for one parenchymal organ."""

    organ: str
    kinds: tuple[KindProfile, ...]
    diameter_mm: dict[str, Range]  # per size class (small / medium / large)
    # How the tumor may leave the organ: "clip" (never), "bulge" (contour bulge, the organ mask
    # grows with it), or "exophytic" (kidney: outside allowed for medium/large, never into another
    # organ, the organ mask does not grow).
    boundary: str
    exophytic_probability: float = 0.0
    interior_margin_mm: float = 2.0  # the centre stays at least this deep inside the organ
    fit_fraction: float = 1.0  # preferred centre depth in tumor radii (relaxed when nothing fits)
    head_prior: float = 0.0  # pancreas: share of tumors in the head (patient's right)
    vessel_margin_hu: float | None = None  # liver: bright voxels above median + margin are vessels
    elastic_fraction: Range = (0.06, 0.12)  # boundary displacement SD / tumor radius
    mass_effect: Range = (0.25, 0.35)  # radial push strength (§3 Pixel2Cancer `expand`, §8.7)
    mass_effect_extent: float = 1.3  # in tumor radii (§1a [note], §3)


NECROSIS_MIN_DIAMETER_MM = 20.0  # necrotic core only for tumors > 2 cm (§7 liver, §3 step 5)
MIN_ORGAN_VOLUME_MM3 = 1000.0  # smaller organ masks are skipped ("too small")
# Absolute HU floors: a solid tumor is soft tissue (> ~15 HU even unenhanced), a cyst or necrotic
# core is fluid (~0-20 HU, §7 pancreas cysts); neither may look like fat on a dark organ.
SOLID_TUMOR_MIN_HU = 15.0
CYST_MIN_HU = 0.0

# Liver (§6 liver row, §7 liver row, §1a/§1b SynTumor, §3 Pixel2Cancer):
# - metastases hypodense -30..-80 HU, rim enhancement in ~84 % (§6: 83.8 %), sharper edges (§8.6);
# - HCC PV -10..-40 HU with a brighter capsule +10..+20 HU (§7), multifocal common;
# - necrotic core for > 2 cm: extra -45..-55 HU (§7); vessel rejection within r (§1a step 2);
# - size mix by class from TextoMorph counts 31/76/57 (§5) -> large tumors up to ~9 cm.
LIVER = OrganProfile(
    organ="liver",
    kinds=(
        KindProfile(
            "metastasis", 0.6, contrast_hu=(-80.0, -30.0), texture_sd_hu=(4.0, 8.0),
            texture_grain_mm=(2.0, 4.0), edge_mm=(0.6, 1.2), necrosis_probability=0.5,
            rim_probability=0.84, rim_hu=(0.0, 20.0), rim_mm=(1.0, 3.0),
        ),
        KindProfile(
            "hcc", 0.4, contrast_hu=(-40.0, -10.0), texture_sd_hu=(4.0, 8.0),
            texture_grain_mm=(2.0, 5.0), edge_mm=(0.8, 1.5), necrosis_probability=0.3,
            rim_probability=0.7, rim_hu=(10.0, 20.0), rim_mm=(1.0, 2.0),
        ),
    ),
    diameter_mm={"small": (8.0, 20.0), "medium": (20.0, 50.0), "large": (50.0, 90.0)},
    boundary="clip",
    interior_margin_mm=5.0,  # §7: centre inside the liver eroded 5 mm
    vessel_margin_hu=40.0,  # [assumption] b of Hu et al.; PV-phase vessels are ~+60 HU
    elastic_fraction=(0.06, 0.12),  # SynTumor elastic sigma grows with size (§1b table)
)

# Pancreas (§1c Li et al., §6 PDAC row, §7 pancreas row):
# - PDAC hypoattenuating, PV contrast -40 +- 23 HU (PubMed 17961951), clipped to [-90, -5];
#   ill-defined margins (blur 1.5-3 mm); ~1/10 near-iso, covered by the upper end of the range;
# - cysts toward 0-20 HU absolute (§7), sharp edge, homogeneous;
# - 2/3 in the head/uncinate (§6, radiopaedia); contour bulge allowed (§7);
# - type mix: §1c uses PDAC:cyst 1:1; PDAC is the target lesion of the paper, so 3:1 here.
PANCREAS = OrganProfile(
    organ="pancreas",
    kinds=(
        KindProfile(
            "pdac", 0.75, contrast_hu=(-90.0, -5.0), contrast_normal=(-40.0, 23.0),
            texture_sd_hu=(4.0, 8.0),
            texture_grain_mm=(2.0, 4.0), edge_mm=(1.5, 3.0), necrosis_probability=0.2,
            necrosis_hu=(-30.0, -20.0),
        ),
        KindProfile(
            "cyst", 0.25, contrast_hu=(-120.0, -30.0), texture_sd_hu=(1.0, 3.0),
            texture_grain_mm=(2.0, 4.0), edge_mm=(0.5, 1.0), absolute_hu=(0.0, 20.0),
            rim_probability=0.3, rim_hu=(0.0, 15.0), rim_mm=(1.0, 1.5),
        ),
    ),
    # TextoMorph pancreas counts 24/31/7 (§5); large capped at 7 cm (the organ is thin).
    diameter_mm={"small": (8.0, 20.0), "medium": (20.0, 50.0), "large": (50.0, 70.0)},
    boundary="bulge",
    interior_margin_mm=2.0,  # §7: keep the centre >= 2 mm inside the organ
    fit_fraction=0.0,  # a thin organ: tumors bulge its contour instead of fitting inside
    head_prior=2.0 / 3.0,
    elastic_fraction=(0.05, 0.1),  # §1c: elastic sigma 1-2 voxels
)

# Kidney (§2a DiffTumor, §6 kidney row, §7 kidney row):
# - ccRCC heterogeneous, hypo vs cortex at PV -30..-100 HU, necrosis and cystic change when large;
# - pRCC homogeneous, hypoenhancing vs cortex (40-95 HU absolute -> about -50..-100 vs kidney);
# - medium/large tumors exophytic half the time (DiffTumor: not clipped to the kidney with p 0.5);
# - size mix by class from TextoMorph counts 7/6/42 (§5).
KIDNEY = OrganProfile(
    organ="kidney",
    kinds=(
        KindProfile(
            "ccrcc", 0.7, contrast_hu=(-100.0, -30.0), texture_sd_hu=(5.0, 9.0),
            texture_grain_mm=(2.0, 5.0), edge_mm=(0.8, 1.5), necrosis_probability=0.6,
        ),
        KindProfile(
            "prcc", 0.3, contrast_hu=(-100.0, -50.0), texture_sd_hu=(2.0, 4.0),
            texture_grain_mm=(2.0, 4.0), edge_mm=(0.7, 1.2), necrosis_probability=0.2,
        ),
    ),
    diameter_mm={"small": (8.0, 20.0), "medium": (20.0, 50.0), "large": (50.0, 80.0)},
    boundary="clip",
    exophytic_probability=0.5,
    interior_margin_mm=2.0,
    elastic_fraction=(0.05, 0.1),
)

PROFILES: dict[str, OrganProfile] = {p.organ: p for p in (LIVER, PANCREAS, KIDNEY)}

