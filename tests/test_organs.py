"""The organ registry maps every lesion-name variant in the wild to its organ."""

from __future__ import annotations

import pytest

from tumorscale.organs import TUMOR_ORGANS, FileRole, classify_segmentation, get_organ, nifti_stem


def test_six_tumor_organs() -> None:
    assert TUMOR_ORGANS == ("pancreas", "liver", "kidney", "colon", "esophagus", "uterus")


@pytest.mark.parametrize(
    ("stem", "organ"),
    [
        ("liver_lesion", "liver"),
        ("liver_tumor", "liver"),
        ("liver_cyst", "liver"),
        ("pancreatic_lesion", "pancreas"),
        ("pancreas_lesion", "pancreas"),
        ("pancreas_tumor", "pancreas"),
        ("pancreatic_pdac", "pancreas"),
        ("pancreatic_pnet", "pancreas"),
        ("pancreatic_cyst", "pancreas"),
        ("kidney_lesion", "kidney"),
        ("kidney_tumor", "kidney"),
        ("kidney_cyst", "kidney"),
        ("colon_lesion", "colon"),
        ("colon_tumor", "colon"),
        ("esophagus_lesion", "esophagus"),
        ("esophagus_tumor", "esophagus"),
        ("uterus_lesion", "uterus"),
        ("endometrioma_tumor", "uterus"),
        ("liver_lesion_2", "liver"),
    ],
)
def test_lesion_variants_map_to_organ(stem: str, organ: str) -> None:
    meaning = classify_segmentation(stem)
    assert meaning.role == FileRole.LESION
    assert meaning.organ == organ


def test_organ_masks_parts_and_others() -> None:
    assert classify_segmentation("kidney").role == FileRole.ORGAN_MASK
    assert classify_segmentation("kidney_left") == classify_segmentation("kidney_left")
    assert classify_segmentation("kidney_right").role == FileRole.ORGAN_PART
    assert classify_segmentation("kidney_right").organ == "kidney"
    assert classify_segmentation("liver").organ == "liver"
    assert classify_segmentation("aorta").role == FileRole.OTHER_STRUCTURE
    assert classify_segmentation("_liver_lesion").role == FileRole.IGNORED
    assert classify_segmentation("my_notes").role == FileRole.UNKNOWN


def test_stems_and_lookup() -> None:
    assert nifti_stem("liver.nii.gz") == "liver"
    assert nifti_stem("liver.nii") == "liver"
    assert nifti_stem("notes.txt") is None
    assert get_organ("colon").lesion_file == "colon_lesion"
    with pytest.raises(ValueError, match="unknown tumor organ 'lung'"):
        get_organ("lung")
