"""Prediction preprocessing equals training's; predictions come back onto the input grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tumorscale.data.cache import scale_intensity
from tumorscale.data.resample import resample_image
from tumorscale.data.settings import PreprocessSettings
from tumorscale.infer.preprocess import prepare_input, to_input_geometry, to_input_grid
from tumorscale.io import Geometry, Volume
from tumorscale.models import ModelSpec

LPS_AFFINE = np.array([[-0.8, 0, 0, 40.0], [0, -1.2, 0, 30.0], [0, 0, 2.5, -20.0], [0, 0, 0, 1]])


def spec(spacing=(1.5, 1.5, 1.5), intensity_range=(-1.75, 2.5)) -> ModelSpec:
    return ModelSpec(
        network="tiny",
        class_names=("background", "liver_lesion"),
        target_spacing_mm=spacing,
        intensity_range=intensity_range,
        patch_size_vox=(8, 8, 8),
    )


def lps_ct(shape=(23, 17, 9), seed=0) -> Volume:
    """An on-disk LPS CT read the way `read_nifti` returns it: canonical RAS plus its source."""
    hu = np.random.default_rng(seed).uniform(-400, 400, shape).astype(np.float32)
    on_disk = Volume(hu, LPS_AFFINE, Geometry(shape, LPS_AFFINE))
    return on_disk.to_canonical()


def test_input_is_what_training_saw() -> None:
    ct = lps_ct()
    prepared = prepare_input(ct, spec())
    # The training path: resample, store int16 HU, clip and scale on read.
    resampled = resample_image(ct, (1.5, 1.5, 1.5))
    cached = np.rint(resampled.array).astype(np.int16)
    expected = scale_intensity(cached, PreprocessSettings())
    assert prepared.image.dtype == np.float32
    np.testing.assert_array_equal(prepared.image, expected)
    np.testing.assert_allclose(prepared.model_affine, resampled.affine)
    assert prepared.input_shape == ct.shape and prepared.source == ct.source


def test_orientation_of_the_input_does_not_matter() -> None:
    ras = lps_ct()
    on_disk = ras.reoriented("LPS")
    np.testing.assert_array_equal(
        prepare_input(on_disk, spec()).image, prepare_input(ras, spec()).image
    )


def test_other_intensity_range() -> None:
    ct = Volume(
        np.array([-1000.0, -175.0, 37.5, 250.0, 900.0]).reshape(5, 1, 1)
        * np.ones((5, 2, 2), np.float32),
        np.eye(4),
    )
    image = prepare_input(ct, spec(spacing=(1, 1, 1), intensity_range=(-1.0, 1.0))).image
    # 37.5 HU is rounded to 38 first, as the int16 training cache did.
    np.testing.assert_allclose(image[:, 0, 0], [-1.0, -1.0, 2 * 213 / 425 - 1, 1.0, 1.0], atol=1e-6)


def test_back_resampling_is_trilinear_then_argmax() -> None:
    ct = lps_ct(shape=(41, 29, 11))
    prepared = prepare_input(ct, spec())
    logits = torch.randn(3, *prepared.model_shape, generator=torch.Generator().manual_seed(1))
    probabilities = torch.softmax(logits, dim=0)
    grid = to_input_grid(probabilities, prepared, channels=(1, 2), keep_probabilities=True)
    expected = F.interpolate(
        probabilities[None], size=ct.shape, mode="trilinear", align_corners=False
    )[0]
    for channel in (1, 2):
        np.testing.assert_allclose(
            grid.probabilities[channel], expected[channel].numpy(), atol=5e-6
        )  # torch computes the source position in float32
        # The maximum is the model grid's: a linear resize can only lower it.
        assert grid.max_probability[channel] == float(probabilities[channel].max())
        assert grid.max_probability[channel] >= float(expected[channel].max())
    agree = grid.labels == expected.argmax(dim=0).numpy()
    assert grid.labels.shape == ct.shape and agree.mean() > 0.999  # ties at 1e-7 may differ


def test_sure_background_is_skipped_without_changing_labels() -> None:
    ct = lps_ct(shape=(45, 31, 13))
    prepared = prepare_input(ct, spec())
    logits = torch.zeros(3, *prepared.model_shape)
    logits[0] = 5.0
    logits[1, 4:9, 5:8, 10:14] = 9.0 + torch.rand(5, 3, 4, generator=torch.Generator())
    logits[2, 6:8, 6:7, 12:15] = 9.5
    probabilities = torch.softmax(logits, dim=0)
    grid = to_input_grid(probabilities, prepared)
    expected = (
        F.interpolate(probabilities[None], size=ct.shape, mode="trilinear", align_corners=False)[0]
        .argmax(dim=0)
        .numpy()
    )
    assert 0 < np.count_nonzero(expected) < expected.size / 10
    np.testing.assert_array_equal(grid.labels, expected)


def test_same_grid_is_exact_and_geometry_goes_back_on_disk() -> None:
    ct = lps_ct(shape=(10, 8, 6))
    prepared = prepare_input(ct, spec(spacing=ct.spacing))
    assert prepared.model_shape == ct.shape
    probabilities = torch.softmax(torch.randn(2, *ct.shape), dim=0)
    grid = to_input_grid(probabilities, prepared, channels=(1,))
    np.testing.assert_array_equal(grid.labels, probabilities.argmax(0).numpy())
    on_disk = to_input_geometry(grid.labels, prepared)
    assert on_disk.orientation == "LPS"
    np.testing.assert_array_equal(on_disk.affine, LPS_AFFINE)
    np.testing.assert_array_equal(
        on_disk.array, Volume(grid.labels, ct.affine).reoriented("LPS").array
    )


def test_rejects_probabilities_off_the_model_grid() -> None:
    prepared = prepare_input(lps_ct(), spec())
    with pytest.raises(ValueError, match="model grid"):
        to_input_grid(torch.zeros(2, 3, 3, 3), prepared)
