"""Tissue labels of the phantom's label map, the mask files they become, and HU per scanner style.

HU ranges are portal-venous phase values for the "standard" style; the "ood" style is an
arterial-ish phase (bright aorta, less parenchymal enhancement, unopacified veins), noisier and with
thicker slices. A case draws one value per tissue from its style's range.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Tissue(IntEnum):
    """Label ids of the internal label map (0 is air outside the body)."""

    AIR = 0
    SKIN = 1
    SUBCUTANEOUS_FAT = 2
    MUSCLE = 3
    VISCERAL_FAT = 4
    BONE = 5
    DISC = 6
    SPINAL_CANAL = 7
    LIVER = 8
    HEPATIC_VESSEL = 9
    GALLBLADDER = 10
    SPLEEN = 11
    KIDNEY_LEFT = 12
    KIDNEY_RIGHT = 13
    PANCREAS = 14
    STOMACH = 15
    DUODENUM = 16
    COLON = 17
    ESOPHAGUS = 18
    SMALL_BOWEL = 19
    AORTA = 20
    POSTCAVA = 21
    PORTAL_VEIN = 22
    OTHER_VESSEL = 23
    BLADDER = 24
    UTERUS = 25


# Mask files written for every case (uterus only for female phantoms), and their labels.
MASK_FILES: dict[str, Tissue] = {
    "liver": Tissue.LIVER,
    "pancreas": Tissue.PANCREAS,
    "kidney_left": Tissue.KIDNEY_LEFT,
    "kidney_right": Tissue.KIDNEY_RIGHT,
    "colon": Tissue.COLON,
    "esophagus": Tissue.ESOPHAGUS,
    "uterus": Tissue.UTERUS,
    "spleen": Tissue.SPLEEN,
    "stomach": Tissue.STOMACH,
    "aorta": Tissue.AORTA,
    "postcava": Tissue.POSTCAVA,
    "portal_vein_and_splenic_vein": Tissue.PORTAL_VEIN,
    "hepatic_vessel": Tissue.HEPATIC_VESSEL,
    "bladder": Tissue.BLADDER,
}

# The tissue that carries each tumor organ's label (kidney: both sides).
ORGAN_TISSUES: dict[str, tuple[Tissue, ...]] = {
    "pancreas": (Tissue.PANCREAS,),
    "liver": (Tissue.LIVER,),
    "kidney": (Tissue.KIDNEY_LEFT, Tissue.KIDNEY_RIGHT),
    "colon": (Tissue.COLON,),
    "esophagus": (Tissue.ESOPHAGUS,),
    "uterus": (Tissue.UTERUS,),
}

# Intensity names (not labels): several share a label (kidney cortex / medulla / sinus fat).
STANDARD_HU: dict[str, tuple[float, float]] = {
    "air": (-1000.0, -1000.0),
    "lumen_air": (-1000.0, -960.0),
    "skin": (20.0, 45.0),
    "subcutaneous_fat": (-115.0, -95.0),
    "visceral_fat": (-105.0, -85.0),
    "muscle": (45.0, 60.0),
    "bone_cortical": (700.0, 950.0),
    "bone_cancellous": (210.0, 290.0),
    "disc": (80.0, 100.0),
    "csf": (5.0, 15.0),
    "liver": (100.0, 120.0),
    "hepatic_vessel": (160.0, 180.0),
    "bile": (0.0, 15.0),
    "spleen": (112.0, 128.0),
    "kidney_cortex": (160.0, 185.0),
    "kidney_medulla": (130.0, 150.0),
    "renal_sinus_fat": (-90.0, -60.0),
    "pancreas": (92.0, 108.0),
    "bowel_wall": (60.0, 85.0),
    "bowel_fluid": (0.0, 20.0),
    "stool": (-60.0, 40.0),
    "aorta": (150.0, 185.0),
    "postcava": (145.0, 170.0),
    "portal_vein": (155.0, 180.0),
    "other_vessel": (140.0, 170.0),
    "urine": (0.0, 12.0),
    "bladder_wall": (35.0, 50.0),
    "myometrium": (90.0, 110.0),
    "endometrium": (55.0, 75.0),
}

# Arterial-ish phase: bright aorta, cortex-medulla difference, unopacified veins, dimmer liver.
OOD_HU: dict[str, tuple[float, float]] = {
    **STANDARD_HU,
    "liver": (70.0, 85.0),
    "hepatic_vessel": (85.0, 105.0),
    "spleen": (100.0, 130.0),
    "kidney_cortex": (185.0, 220.0),
    "kidney_medulla": (80.0, 100.0),
    "pancreas": (110.0, 130.0),
    "aorta": (260.0, 330.0),
    "postcava": (70.0, 100.0),
    "portal_vein": (100.0, 130.0),
    "other_vessel": (90.0, 140.0),
    "myometrium": (75.0, 95.0),
}


@dataclass(frozen=True)
class Style:
    """A scanner / protocol style: tissue HU ranges, noise level and grain, slice thickness."""

    name: str
    hu_ranges: dict[str, tuple[float, float]]
    noise_sd_hu: tuple[float, float]
    # Gaussian sigma (mm) of the in-plane noise correlation (reconstruction kernel grain).
    noise_grain_mm: tuple[float, float]
    # False: slices drawn from the options' range [low, high]; True: from [high, 1.6 high].
    thick_slices: bool


STYLES: dict[str, Style] = {
    "standard": Style("standard", STANDARD_HU, (10.0, 18.0), (0.6, 0.9), False),
    "ood": Style("ood", OOD_HU, (25.0, 35.0), (0.9, 1.3), True),
}
