"""DICOM series reading and grid comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from tumorscale.errors import GridMismatchError, InputFileError
from tumorscale.io import Geometry, check_same_grid, read_dicom_series


def write_dicom_series(
    folder: Path,
    array_kji: np.ndarray,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    uid: str = "1.2.826.0.1.3680043.2.1125.1.1",
) -> None:
    folder.mkdir(parents=True)
    image = sitk.GetImageFromArray(array_kji.astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_image = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        slice_image.SetMetaData("0020|0032", "\\".join(f"{v:f}" for v in position))
        slice_image.SetMetaData("0020|0013", str(k))
        slice_image.SetMetaData("0020|000e", uid)
        slice_image.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        slice_image.SetMetaData("0008|0060", "CT")
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(slice_image)


def test_dicom_series_reads_as_ras_with_physical_geometry(tmp_path: Path) -> None:
    kji = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)  # 5 slices of 6 rows x 7 cols
    write_dicom_series(tmp_path / "series", kji, (0.7, 0.8, 2.5), (10.0, 20.0, -50.0))
    volume = read_dicom_series(tmp_path / "series")
    assert volume.orientation == "RAS"
    assert volume.shape == (7, 6, 5)
    assert volume.spacing == pytest.approx((0.7, 0.8, 2.5), abs=1e-4)
    # LPS origin (10, 20, -50) is RAS (-10, -20, -50); its value is the first voxel of the series.
    ijk = np.linalg.solve(volume.affine, [-10.0, -20.0, -50.0, 1.0]).round().astype(int)
    assert volume.array[tuple(ijk[:3])] == kji[0, 0, 0]


def test_dicom_errors_name_the_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no DICOM series"):
        read_dicom_series(tmp_path / "empty")
    with pytest.raises(InputFileError, match="not a folder"):
        read_dicom_series(tmp_path / "missing")


def test_grid_mismatch_shape_and_affine() -> None:
    ct = Geometry((10, 10, 5), np.diag([0.8, 0.8, 2.0, 1.0]))
    check_same_grid(
        "m.nii.gz", Geometry((10, 10, 5), np.diag([0.8, 0.8, 2.0, 1.0]) + 1e-7), "ct.nii.gz", ct
    )
    with pytest.raises(GridMismatchError, match=r"m\.nii\.gz: shape \(10, 10, 4\)"):
        check_same_grid("m.nii.gz", Geometry((10, 10, 4), ct.affine), "ct.nii.gz", ct)
    shifted = ct.affine.copy()
    shifted[0, 3] = 1.5
    with pytest.raises(GridMismatchError, match="affine differs"):
        check_same_grid("m.nii.gz", Geometry((10, 10, 5), shifted), "ct.nii.gz", ct)


def _slices(count: int = 8) -> np.ndarray:
    """k-j-i slices whose value is the slice index times 10 (so interpolation is checkable)."""
    return np.broadcast_to((np.arange(count) * 10)[:, None, None], (count, 6, 7)).copy()


def test_missing_slices_are_an_error_naming_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "series"
    write_dicom_series(folder, _slices(), (0.8, 0.8, 2.5), (0.0, 0.0, 0.0))
    for k in (3, 4):  # two neighbouring slices lost: one 7.5 mm gap
        (folder / f"slice{k:03d}.dcm").unlink()
    with pytest.raises(InputFileError, match=r"1 gap\(s\) \(missing slices\)") as error:
        read_dicom_series(folder)
    assert str(folder) in str(error.value) and "--uneven-slices resample" in str(error.value)


def test_missing_slices_resample_onto_the_median_spacing(tmp_path: Path) -> None:
    folder = tmp_path / "series"
    write_dicom_series(folder, _slices(), (0.8, 0.8, 2.5), (0.0, 0.0, 0.0))
    (folder / "slice003.dcm").unlink()
    warnings: list[str] = []
    volume = read_dicom_series(folder, uneven="resample", on_warning=warnings.append)
    assert volume.array.shape[2] == 8  # slices 0..7 at 2.5 mm again
    np.testing.assert_allclose(volume.spacing[2], 2.5, atol=1e-6)
    # slice 3 is interpolated between 20 and 40 HU
    np.testing.assert_allclose(volume.array[0, 0, :], np.arange(8) * 10.0, atol=1e-4)
    assert len(warnings) == 1 and "resampled to 8 slices of 2.500 mm" in warnings[0]


def test_two_series_in_one_folder_are_listed(tmp_path: Path) -> None:
    folder = tmp_path / "series"
    write_dicom_series(folder, _slices(4), (0.8, 0.8, 2.5), (0.0, 0.0, 0.0))
    other = tmp_path / "other"
    write_dicom_series(other, _slices(3), (0.8, 0.8, 2.5), (0.0, 0.0, 0.0),
                       uid="1.2.826.0.1.3680043.2.1125.1.2")
    for path in other.iterdir():
        path.rename(folder / f"b_{path.name}")
    with pytest.raises(InputFileError, match="2 DICOM series found, choose one with --series"):
        read_dicom_series(folder)
    chosen = read_dicom_series(folder, series_id="1.2.826.0.1.3680043.2.1125.1.2")
    assert chosen.array.shape[2] == 3
