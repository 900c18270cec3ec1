"""NIfTI I/O: canonical RAS reading, writing back in the source geometry, clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import save_nifti
from tumorscale.errors import InputFileError
from tumorscale.io import Volume, read_geometry, read_nifti, write_nifti

LPS_AFFINE = np.array([[-0.7, 0, 0, 120.0], [0, -0.7, 0, 80.0], [0, 0, 3.0, -200.0], [0, 0, 0, 1]])


def test_reads_lps_file_as_ras_and_keeps_world_positions(tmp_path: Path) -> None:
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = save_nifti(tmp_path / "ct.nii.gz", array, LPS_AFFINE)
    volume = read_nifti(path)
    assert volume.orientation == "RAS"
    assert volume.spacing == pytest.approx((0.7, 0.7, 3.0))
    # Voxel (0, 0, 0) on disk sits at world (120, 80, -200); find the same value in RAS.
    world = np.array([120.0, 80.0, -200.0, 1.0])
    ijk = np.linalg.solve(volume.affine, world).round().astype(int)
    assert volume.array[tuple(ijk[:3])] == array[0, 0, 0]


def test_write_puts_output_back_in_input_geometry(tmp_path: Path) -> None:
    array = np.random.default_rng(1).integers(-1000, 1000, (6, 7, 8)).astype(np.int16)
    source = save_nifti(tmp_path / "in.nii.gz", array, LPS_AFFINE)
    volume = read_nifti(source)
    out = write_nifti(volume, tmp_path / "out.nii.gz")
    written = nib.load(str(out))
    assert written.shape == array.shape
    np.testing.assert_array_equal(np.asarray(written.dataobj), array)
    np.testing.assert_allclose(written.affine, LPS_AFFINE, atol=1e-5)
    assert written.get_data_dtype() == np.int16
    assert nib.aff2axcodes(written.affine) == ("L", "P", "S")


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    volume = Volume(np.zeros((3, 3, 3), np.uint8), np.eye(4))
    write_nifti(volume, tmp_path / "sub" / "m.nii.gz")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.nii.gz"]

    class Boom(RuntimeError):
        pass

    bad = Volume(np.zeros((3, 3, 3), np.uint8), np.eye(4))
    original_save = nib.save

    def failing_save(image: nib.Nifti1Image, name: str) -> None:
        original_save(image, name)
        raise Boom

    nib.save = failing_save
    try:
        with pytest.raises(Boom):
            write_nifti(bad, tmp_path / "sub" / "broken.nii.gz")
    finally:
        nib.save = original_save
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.nii.gz"]


def test_truncated_gzip_names_file(tmp_path: Path) -> None:
    path = save_nifti(tmp_path / "ct.nii.gz", np.random.default_rng(0).normal(size=(30, 30, 30)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match=r"ct\.nii\.gz.*truncated"):
        read_nifti(path)


def test_garbage_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "ct.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti at all" * 40))
    with pytest.raises(InputFileError, match="unreadable"):
        read_nifti(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="file not found"):
        read_nifti(tmp_path / "nope.nii.gz")


@pytest.mark.parametrize("shape", [(10, 10), (10, 10, 10, 2)])
def test_not_3d_is_rejected(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = save_nifti(tmp_path / "x.nii.gz", np.zeros(shape, np.int16), np.eye(4))
    with pytest.raises(InputFileError, match="not a 3-D volume"):
        read_nifti(path)
    with pytest.raises(InputFileError, match="not a 3-D volume"):
        read_geometry(path)


def test_trailing_singleton_axis_is_3d(tmp_path: Path) -> None:
    path = save_nifti(tmp_path / "x.nii.gz", np.ones((4, 5, 6, 1), np.int16), np.eye(4))
    assert read_nifti(path).shape == (4, 5, 6)


def test_nan_is_rejected_with_count(tmp_path: Path) -> None:
    array = np.zeros((5, 5, 5), np.float32)
    array[1, 2, 3] = np.nan
    array[0, 0, 0] = np.inf
    path = save_nifti(tmp_path / "ct.nii.gz", array, np.eye(4))
    with pytest.raises(InputFileError, match=r"NaN or Inf values \(2 voxels\)"):
        read_nifti(path)


def test_label_checks(tmp_path: Path) -> None:
    labels = np.zeros((5, 5, 5), np.uint8)
    labels[1, 1, 1], labels[2, 2, 2] = 1, 2
    path = save_nifti(tmp_path / "m.nii.gz", labels, np.eye(4))
    with pytest.raises(InputFileError, match=r"not binary \(values 0, 1, 2\)"):
        read_nifti(path, kind="mask")
    assert read_nifti(path, kind="labels").array.max() == 2
    fractional = save_nifti(tmp_path / "f.nii.gz", labels.astype(np.float32) * 0.5, np.eye(4))
    with pytest.raises(InputFileError, match="non-integer"):
        read_nifti(fractional, kind="labels")
    negative = save_nifti(tmp_path / "n.nii.gz", labels.astype(np.int16) - 1, np.eye(4))
    with pytest.raises(InputFileError, match="negative"):
        read_nifti(negative, kind="mask")


def test_absurd_spacing_is_rejected(tmp_path: Path) -> None:
    path = save_nifti(tmp_path / "zero.nii", np.zeros((4, 4, 4), np.int16), np.eye(4))
    raw = bytearray(path.read_bytes())
    raw[84:88] = np.float32(0.0).tobytes()  # pixdim[2]: the second voxel size
    raw[252:256] = np.zeros(
        2, np.int16
    ).tobytes()  # qform_code = sform_code = 0: affine from pixdim
    path.write_bytes(bytes(raw))
    with pytest.raises(InputFileError, match=r"zero\.nii: absurd header"):
        read_nifti(path)


def test_float_mask_with_integer_values_becomes_uint8(tmp_path: Path) -> None:
    path = save_nifti(tmp_path / "m.nii.gz", np.ones((3, 3, 3), np.float32), np.eye(4))
    mask = read_nifti(path, kind="mask")
    assert mask.array.dtype == np.uint8 and mask.array.sum() == 27
