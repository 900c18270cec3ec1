"""The union of several mask files: one grid, a clear error naming an off-grid file."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import save_nifti
from tumorscale.errors import GridMismatchError
from tumorscale.io import read_geometry, read_mask_union

LPS = np.diag([-0.8, -0.8, 2.5, 1.0])


def test_union_of_variants_in_both_frames(tmp_path):
    left, right = np.zeros((6, 5, 4), np.uint8), np.zeros((6, 5, 4), np.uint8)
    left[0, 0, 0], right[5, 4, 3] = 1, 1
    files = [save_nifti(tmp_path / "kidney_left.nii.gz", left, LPS),
             save_nifti(tmp_path / "kidney_right.nii.gz", right, LPS)]
    on_disk = read_mask_union(files)
    assert on_disk.array.dtype == bool and on_disk.array.sum() == 2
    assert on_disk.array[0, 0, 0] and on_disk.array[5, 4, 3]
    ras = read_mask_union(files, canonical=True)
    assert ras.array[5, 4, 0] and ras.array[0, 0, 3]  # x and y flipped from LPS to RAS
    assert ras.voxel_volume_mm3 == pytest.approx(0.8 * 0.8 * 2.5)


def test_off_grid_file_is_named(tmp_path):
    ct = save_nifti(tmp_path / "ct.nii.gz", np.zeros((6, 5, 4), np.int16), LPS)
    good = save_nifti(tmp_path / "liver_lesion.nii.gz", np.zeros((6, 5, 4), np.uint8), LPS)
    bad = save_nifti(tmp_path / "liver_tumor.nii.gz", np.zeros((6, 5, 3), np.uint8), LPS)
    with pytest.raises(GridMismatchError, match="liver_tumor"):
        read_mask_union([good, bad], ct, read_geometry(ct))
    with pytest.raises(GridMismatchError, match="liver_tumor"):
        read_mask_union([good, bad])
    with pytest.raises(ValueError, match="no mask files"):
        read_mask_union([])
