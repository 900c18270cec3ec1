"""`load_case`: one case's CT and masks in memory, on the CT's canonical grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CaseMaker, save_nifti, sphere
from tumorscale.atlas import TumorStatus, index_dataset, load_case
from tumorscale.errors import DatasetError, GridMismatchError

SHAPE = (24, 24, 12)


def _masks() -> dict[str, np.ndarray]:
    liver = sphere(SHAPE, (12, 12, 6), 8)
    kidney_left = sphere(SHAPE, (4, 4, 6), 2)
    kidney_right = sphere(SHAPE, (19, 19, 6), 2)
    return {
        "liver": liver,
        "liver_lesion": sphere(SHAPE, (12, 12, 6), 2),
        "pancreas": sphere(SHAPE, (4, 19, 6), 2),
        "pancreatic_lesion": np.zeros(SHAPE, np.uint8),
        "kidney_left": kidney_left,
        "kidney_right": kidney_right,
        "aorta": sphere(SHAPE, (19, 4, 6), 1),
    }


def test_load_case_returns_ct_masks_and_status(tmp_path: Path, make_case: CaseMaker) -> None:
    ct = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE) % 300 - 100
    masks = _masks()
    folder = make_case(tmp_path, masks=masks, ct=ct)

    case = load_case(folder)

    assert case.case_id == "BDMAP_00000001"
    np.testing.assert_array_equal(case.ct.array, ct)  # the default affine is already RAS
    assert case.spacing_mm == pytest.approx((0.8, 0.8, 2.5))
    assert set(case.organ_masks) == {"liver", "pancreas", "kidney"}
    np.testing.assert_array_equal(
        case.organ_masks["kidney"], (masks["kidney_left"] | masks["kidney_right"]).astype(bool)
    )
    assert int(case.lesion_masks["liver"].sum()) == int(masks["liver_lesion"].sum())
    assert set(case.structures) == {"aorta"}
    assert case.status("liver") is TumorStatus.POSITIVE
    assert case.status("pancreas") is TumorStatus.CONTROL
    assert case.status("kidney") is TumorStatus.UNKNOWN


def test_load_case_accepts_an_indexed_entry(tmp_path: Path, make_case: CaseMaker) -> None:
    make_case(tmp_path, "BDMAP_00000001", masks=_masks())
    make_case(tmp_path, "BDMAP_00000002", masks={"liver": sphere(SHAPE, (12, 12, 6), 5)})
    entry = index_dataset(tmp_path).cases[1]
    case = load_case(entry)
    assert case.case_id == "BDMAP_00000002"
    assert int(case.organ_masks["liver"].sum()) == int(sphere(SHAPE, (12, 12, 6), 5).sum())
    with pytest.raises(DatasetError, match="expected one case folder, found 2"):
        load_case(tmp_path)


def test_a_mask_off_the_ct_grid_is_named(tmp_path: Path, make_case: CaseMaker) -> None:
    folder = make_case(tmp_path, masks={"liver": sphere(SHAPE, (12, 12, 6), 5)})
    save_nifti(folder / "segmentations" / "liver_lesion.nii.gz", np.zeros((20, 24, 12), np.uint8))
    with pytest.raises(GridMismatchError, match="liver_lesion"):
        load_case(folder)
