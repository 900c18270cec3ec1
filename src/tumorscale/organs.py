"""The organ registry: the six tumor organs, their mask files, and every lesion-file name variant.

AbdomenAtlas 2.0 and related releases name lesion files inconsistently (`pancreatic_lesion`,
`pancreas_tumor`, `endometrioma_tumor`, `pancreatic_pdac`, ...). This module is the single place
that maps a file name in `segmentations/` to what it means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class Organ:
    """A tumor organ: its name, the mask files that make it up, and its lesion-name prefixes."""

    name: str
    # Either one whole-organ file or the union of its parts (kidney = left ∪ right).
    mask_files: tuple[str, ...]
    mask_part_files: tuple[str, ...]
    # `<prefix>_lesion|_tumor|_cyst` files belong to this organ.
    lesion_prefixes: tuple[str, ...]
    # Extra whole-name lesion files (sub-types and one-off spellings).
    lesion_extra_names: tuple[str, ...] = ()

    @property
    def lesion_file(self) -> str:
        """The name tumorscale writes for this organ's lesion mask (without `.nii.gz`)."""
        return f"{self.name}_lesion"


ORGANS: dict[str, Organ] = {
    organ.name: organ
    for organ in (
        Organ(
            "pancreas",
            mask_files=("pancreas",),
            mask_part_files=(),
            lesion_prefixes=("pancreas", "pancreatic"),
            lesion_extra_names=(
                "pancreatic_pdac",
                "pancreatic_pnet",
                "pancreas_pdac",
                "pancreas_pnet",
            ),
        ),
        Organ(
            "liver", mask_files=("liver",), mask_part_files=(), lesion_prefixes=("liver", "hepatic")
        ),
        Organ(
            "kidney",
            mask_files=("kidney",),
            mask_part_files=("kidney_left", "kidney_right"),
            lesion_prefixes=("kidney", "renal", "kidney_left", "kidney_right"),
        ),
        Organ(
            "colon",
            mask_files=("colon",),
            mask_part_files=(),
            lesion_prefixes=("colon", "colorectal"),
        ),
        Organ(
            "esophagus",
            mask_files=("esophagus",),
            mask_part_files=(),
            lesion_prefixes=("esophagus", "esophageal"),
        ),
        Organ(
            "uterus",
            mask_files=("uterus",),
            mask_part_files=(),
            lesion_prefixes=("uterus", "uterine", "endometrial", "endometrioma"),
        ),
    )
}

TUMOR_ORGANS: tuple[str, ...] = tuple(ORGANS)

# Non-tumor structures of the AbdomenAtlas 2.0 class map (ids 1-26), plus common aliases; these are
# recognised organ masks, not "unknown files".
OTHER_STRUCTURES: frozenset[str] = frozenset(
    {
        "aorta",
        "gall_bladder",
        "postcava",
        "spleen",
        "stomach",
        "adrenal_gland_left",
        "adrenal_gland_right",
        "bladder",
        "celiac_trunk",
        "duodenum",
        "femur_left",
        "femur_right",
        "hepatic_vessel",
        "intestine",
        "lung_left",
        "lung_right",
        "portal_vein_and_splenic_vein",
        "prostate",
        "rectum",
        "combined_labels",
    }
)

LESION_SUFFIXES = ("lesion", "tumor", "cyst")
NIFTI_SUFFIXES = (".nii.gz", ".nii")


class FileRole(str, Enum):
    """What a file in `segmentations/` is."""

    ORGAN_MASK = "organ_mask"
    ORGAN_PART = "organ_part"
    LESION = "lesion"
    OTHER_STRUCTURE = "other_structure"
    IGNORED = "ignored"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SegmentationName:
    """The meaning of one segmentation file name."""

    stem: str
    role: FileRole
    organ: str | None = None


def _lesion_lookup() -> dict[str, str]:
    lookup: dict[str, str] = {}
    for organ in ORGANS.values():
        for prefix in organ.lesion_prefixes:
            for suffix in LESION_SUFFIXES:
                lookup[f"{prefix}_{suffix}"] = organ.name
                lookup[f"{prefix}_{suffix}s"] = organ.name
        for name in organ.lesion_extra_names:
            lookup[name] = organ.name
    return lookup


_LESION_NAMES = _lesion_lookup()
_NUMBERED = re.compile(r"^(?P<base>.+?)_?\d+$")  # liver_lesion_2, liver_tumor1


def nifti_stem(file_name: str) -> str | None:
    """`liver.nii.gz` -> `liver`; None when the name is not a NIfTI file."""
    for suffix in NIFTI_SUFFIXES:
        if file_name.endswith(suffix):
            return file_name[: -len(suffix)]
    return None


def classify_segmentation(stem: str) -> SegmentationName:
    """Say what a file stem in `segmentations/` is: organ mask, lesion of an organ, or other."""
    if stem.startswith("_"):
        return SegmentationName(stem, FileRole.IGNORED)
    key = stem.lower()
    if key in _LESION_NAMES:
        return SegmentationName(stem, FileRole.LESION, _LESION_NAMES[key])
    numbered = _NUMBERED.match(key)
    if numbered and numbered.group("base") in _LESION_NAMES:
        return SegmentationName(stem, FileRole.LESION, _LESION_NAMES[numbered.group("base")])
    for organ in ORGANS.values():
        if key in organ.mask_files:
            return SegmentationName(stem, FileRole.ORGAN_MASK, organ.name)
        if key in organ.mask_part_files:
            return SegmentationName(stem, FileRole.ORGAN_PART, organ.name)
    if key in OTHER_STRUCTURES:
        return SegmentationName(stem, FileRole.OTHER_STRUCTURE)
    return SegmentationName(stem, FileRole.UNKNOWN)


def get_organ(name: str) -> Organ:
    """The registry entry for a tumor organ; a clear error for anything else."""
    try:
        return ORGANS[name]
    except KeyError:
        raise ValueError(
            f"unknown tumor organ {name!r}; choose from {', '.join(TUMOR_ORGANS)}"
        ) from None
