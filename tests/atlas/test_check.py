"""`dataset check` reports every problem with its path and keeps the good cases usable."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import CaseMaker, save_nifti
from tumorscale.atlas import Severity, check_dataset, has_errors, index_dataset

SHAPE = (20, 20, 10)


def build_broken_tree(root: Path, make_case: CaseMaker) -> dict[str, Path]:
    good_mask = np.zeros(SHAPE, np.uint8)
    good_mask[5:10, 5:10, 2:6] = 1
    make_case(root, "BDMAP_00000001", SHAPE, {"liver": good_mask, "liver_lesion": good_mask})
    # Truncated lesion file.
    case2 = make_case(
        root, "BDMAP_00000002", SHAPE, {"liver": good_mask, "liver_lesion": good_mask}
    )
    truncated = case2 / "segmentations" / "liver_lesion.nii.gz"
    noisy = np.random.default_rng(3).integers(0, 2, SHAPE).astype(np.uint8)
    save_nifti(truncated, noisy)
    truncated.write_bytes(truncated.read_bytes()[:200])
    # Mask on a different grid.
    case3 = make_case(root, "BDMAP_00000003", SHAPE, {"liver": good_mask})
    other_grid = save_nifti(
        case3 / "segmentations" / "pancreas.nii.gz", np.zeros((20, 20, 11), np.uint8)
    )
    # CT with NaNs.
    ct = np.zeros(SHAPE, np.float32)
    ct[3, 3, 3] = np.nan
    case4 = make_case(root, "BDMAP_00000004", SHAPE, {"liver": good_mask}, ct=ct)
    # Label map 0/1/2 where a binary mask is expected.
    labels = good_mask.copy()
    labels[0, 0, 0] = 2
    case5 = make_case(root, "BDMAP_00000005", SHAPE, {"kidney_left": labels})
    return {
        "truncated": truncated,
        "grid": other_grid,
        "nan": case4 / "ct.nii.gz",
        "labels": case5 / "segmentations" / "kidney_left.nii.gz",
    }


def test_check_lists_every_problem_with_its_path(tmp_path: Path, make_case: CaseMaker) -> None:
    bad = build_broken_tree(tmp_path, make_case)
    index = index_dataset(tmp_path)
    problems = check_dataset(index, workers=2)
    by_path = {p.path: p.reason for p in problems if p.severity == Severity.ERROR}
    assert set(by_path) == set(bad.values())
    assert "truncated" in by_path[bad["truncated"]]
    assert "shape (20, 20, 11) differs from ct.nii.gz (20, 20, 10)" in by_path[bad["grid"]]
    assert "NaN or Inf values (1 voxels)" in by_path[bad["nan"]]
    assert "not binary (values 0, 1, 2)" in by_path[bad["labels"]]
    assert has_errors(problems)


def test_clean_tree_has_no_problems(tmp_path: Path, make_case: CaseMaker) -> None:
    mask = np.zeros(SHAPE, np.uint8)
    mask[2:5, 2:5, 2:5] = 1
    make_case(tmp_path, masks={"liver": mask, "liver_lesion": mask}, shape=SHAPE)
    assert check_dataset(index_dataset(tmp_path), workers=1) == []
