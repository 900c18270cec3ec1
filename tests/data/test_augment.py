"""Augmentation: deterministic per seed, image and label stay aligned, `none()` is identity, and
each transform against scipy / MONAI's definition or an analytic answer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage

from tumorscale.data.augment import (
    AugmentSettings,
    _blur,
    _contrast,
    _gamma,
    _low_resolution,
    _noise,
    _resample,
    augment,
    build_augmentation,
)
from tumorscale.geometry import rotation_matrix


def _cube_sample() -> tuple[np.ndarray, np.ndarray]:
    """Image 0.2 with an off-centre bright box (0.8) labelled 1: flips and rotations move both."""
    image = np.full((32, 28, 24), 0.2, dtype=np.float32)
    label = np.zeros(image.shape, dtype=np.int64)
    image[4:12, 6:14, 3:9] = 0.8
    label[4:12, 6:14, 3:9] = 1
    return image, label


def test_none_is_identity() -> None:
    image, label = _cube_sample()
    out_image, out_label = augment(build_augmentation(AugmentSettings.none()), image, label, 1)
    assert out_image.shape == (1, *image.shape) and out_image.dtype == torch.float32
    assert out_label.shape == image.shape and out_label.dtype == torch.int64
    np.testing.assert_array_equal(out_image[0].numpy(), image)
    np.testing.assert_array_equal(out_label.numpy(), label)
    assert not AugmentSettings.none().enabled and AugmentSettings().enabled


def test_same_seed_same_result_and_seeds_differ() -> None:
    image, label = _cube_sample()
    transform = build_augmentation(AugmentSettings())
    results = [augment(transform, image, label, seed) for seed in (5, 6, 5)]
    torch.testing.assert_close(results[0][0], results[2][0], rtol=0, atol=0)
    assert torch.equal(results[0][1], results[2][1])
    assert not torch.equal(results[0][0], results[1][0])


def test_flip_moves_image_and_label_together() -> None:
    image, label = _cube_sample()
    flips_only = replace(AugmentSettings.none(), flip_p=1.0)
    out_image, out_label = augment(build_augmentation(flips_only), image, label, 0)
    np.testing.assert_array_equal(out_image[0].numpy(), image[::-1, ::-1, ::-1])
    np.testing.assert_array_equal(out_label.numpy(), label[::-1, ::-1, ::-1])


def test_spatial_transforms_keep_alignment() -> None:
    image, label = _cube_sample()
    spatial = replace(AugmentSettings.none(), rotate_p=1.0, zoom_p=1.0, flip_p=0.5)
    transform = build_augmentation(spatial)
    for seed in range(6):
        out_image, out_label = augment(transform, image, label, seed)
        values = set(torch.unique(out_label).tolist())
        assert values <= {0, 1} and 1 in values  # nearest: still class indices
        # The bright box moved with its label: (image > midpoint) overlaps the label (trilinear
        # image vs nearest label disagree on the boundary voxels of this small box).
        bright = out_image[0] > 0.5
        labelled = out_label == 1
        iou = (bright & labelled).sum() / (bright | labelled).sum()
        assert iou > 0.5  # a misaligned label (e.g. flipped alone) gives < 0.01


# ----------------------------------------------------------------- each transform, checked


def _smooth_volume(shape=(24, 20, 18)) -> np.ndarray:
    grid = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    return (0.5 + 0.3 * np.sin(3 * grid[0]) * np.cos(2 * grid[1]) + 0.2 * grid[2]).astype(
        np.float32)


def test_rotation_and_scaling_match_scipy_affine_transform() -> None:
    """One resampling of output voxel p from input voxel c + A (p - c): scipy's definition."""
    image = _smooth_volume()
    label = (image > 0.6).astype(np.float32)
    matrix = rotation_matrix(np.radians([20.0, -15.0, 25.0])).T / 1.2
    centre = (np.asarray(image.shape) - 1) / 2
    offset = centre - matrix @ centre
    out_image, out_label = _resample(torch.from_numpy(image), torch.from_numpy(label), matrix)
    expected = ndimage.affine_transform(image, matrix, offset, order=1)
    expected_label = ndimage.affine_transform(label, matrix, offset, order=0)
    # Compared where the input point lies inside the volume: the two pad differently outside.
    source = np.tensordot(matrix, np.indices(image.shape), axes=1) + offset[:, None, None, None]
    upper = (np.asarray(image.shape) - 1)[:, None, None, None]
    inside = np.all((source >= 0) & (source <= upper), axis=0)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(out_image.numpy()[inside], expected[inside], atol=2e-5)
    same = out_label.numpy()[inside] == expected_label[inside]
    assert same.mean() > 0.995  # ties at .5 may round apart


@pytest.mark.parametrize("factor", [0.7, 1.0, 1.4])
def test_label_resampled_in_its_box_equals_the_whole_grid(factor: float) -> None:
    """The label is resampled only where its bounding box lands: identical to resampling the
    whole patch, for blobs inside, at the edge and in a corner, rotated and scaled."""
    import torch.nn.functional as F

    from tumorscale.data.augment import _sampling_grid

    rng = np.random.default_rng(int(factor * 10))
    for centre in [(20, 24, 16), (2, 30, 38), (38, 1, 0)]:
        label = np.zeros((40, 36, 42), np.float32)
        box = tuple(slice(max(c - 5, 0), c + 6) for c in centre)
        label[box] = rng.integers(0, 3, size=label[box].shape)
        matrix = rotation_matrix(rng.uniform(-0.5, 0.5, 3)).T / factor
        grid = _sampling_grid(label.shape, matrix)
        whole = F.grid_sample(torch.from_numpy(label)[None, None], grid, mode="nearest",
                              padding_mode="zeros", align_corners=True)[0, 0]
        as_classes = torch.from_numpy(label.astype(np.int64))  # what the pipeline passes
        _, out_label = _resample(torch.zeros(label.shape), as_classes, matrix)
        assert whole.any() or centre != (20, 24, 16)  # a corner blob may rotate out
        assert out_label.dtype == torch.int64
        np.testing.assert_array_equal(out_label.numpy(), whole.numpy().astype(np.int64))
    _, empty = _resample(torch.zeros((8, 8, 8)), torch.zeros((8, 8, 8)), np.eye(3))
    assert not empty.any()


def test_rotation_matrix_is_a_rotation() -> None:
    matrix = rotation_matrix(np.radians([30.0, -10.0, 45.0]))
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(matrix) == pytest.approx(1.0)
    quarter = rotation_matrix(np.radians([0.0, 0.0, 90.0]))
    np.testing.assert_allclose(quarter @ [1, 0, 0], [0, 1, 0], atol=1e-12)


@pytest.mark.parametrize("factor", [0.7, 1.4])
def test_scaling_alone_scales_a_ball_about_the_centre(factor: float) -> None:
    shape = (48, 48, 48)
    centre = (np.asarray(shape) - 1) / 2
    distance = np.linalg.norm(np.indices(shape) - centre[:, None, None, None], axis=0)
    ball = (distance <= 10).astype(np.float32)
    _, out_label = _resample(torch.from_numpy(ball), torch.from_numpy(ball), np.eye(3) / factor)
    radius = np.cbrt(out_label.numpy().sum() * 3 / (4 * np.pi))
    assert radius == pytest.approx(10 * factor, rel=0.05)
    inside = np.argwhere(out_label.numpy() > 0)
    np.testing.assert_allclose(inside.mean(axis=0), centre, atol=0.05)  # float32 grid ties


def test_gamma_matches_monai_adjust_contrast() -> None:
    from monai.transforms import AdjustContrast

    image = torch.from_numpy(_smooth_volume())
    for gamma, invert in ((0.7, False), (1.5, False), (1.2, True)):
        expected = AdjustContrast(gamma, invert_image=invert, retain_stats=True)(image[None])[0]
        torch.testing.assert_close(_gamma(image, gamma, invert),
                                   torch.as_tensor(expected).as_subclass(torch.Tensor),
                                   atol=1e-5, rtol=0)


def test_contrast_and_low_resolution_match_monai() -> None:
    from monai.transforms import RandSimulateLowResolution, ScaleIntensityFixedMean

    image = torch.from_numpy(_smooth_volume())
    spread = ScaleIntensityFixedMean(factor=0.2, preserve_range=True, fixed_mean=True)
    expected = spread(image[None])
    torch.testing.assert_close(_contrast(image, 1.2), torch.as_tensor(expected)[0].as_subclass(
        torch.Tensor), atol=1e-6, rtol=0)
    low = RandSimulateLowResolution(prob=1.0, zoom_range=(0.6, 0.6))(image[None])
    torch.testing.assert_close(_low_resolution(image, 0.6), torch.as_tensor(low)[0].as_subclass(
        torch.Tensor), atol=1e-6, rtol=0)


def test_blur_spreads_a_point_by_sigma_and_keeps_a_constant() -> None:
    point = torch.zeros((31, 31, 31))
    point[15, 15, 15] = 1.0
    settings = (0.5, 1.0)
    sigmas = np.random.default_rng(3).uniform(*settings, 3)
    spread = _blur(point, settings, np.random.default_rng(3)).numpy()
    assert spread.sum() == pytest.approx(1.0, abs=1e-5)
    offsets = np.arange(31) - 15
    for axis in range(3):
        profile = spread.sum(axis=tuple(a for a in range(3) if a != axis))
        assert np.sqrt((profile * offsets**2).sum()) == pytest.approx(sigmas[axis], rel=0.05)
    constant = torch.full((12, 12, 12), 0.4)
    np.testing.assert_allclose(_blur(constant, settings, np.random.default_rng(0)).numpy(), 0.4,
                               atol=1e-6)


def test_noise_has_the_drawn_sd() -> None:
    image = torch.zeros((64, 64, 64))
    noisy = _noise(image, 0.05, np.random.default_rng(7))
    std = np.random.default_rng(7).uniform(0.0, 0.05)
    assert float(noisy.std()) == pytest.approx(std, rel=0.01)
    assert abs(float(noisy.mean())) < 3 * std / 512


def test_scaling_alone_keeps_image_and_label_aligned() -> None:
    image, label = _cube_sample()
    zoom_only = replace(AugmentSettings.none(), zoom_p=1.0)
    transform = build_augmentation(zoom_only)
    for seed in range(4):
        out_image, out_label = augment(transform, image, label, seed)
        bright, labelled = out_image[0] > 0.5, out_label == 1
        assert (bright & labelled).sum() / (bright | labelled).sum() > 0.75


def test_for_span_scales_the_additive_amounts_only() -> None:
    from tumorscale.preprocessing import Preprocessing

    settings = AugmentSettings()
    assert settings.for_span(1.0) == settings
    wide = settings.for_span(5.0)
    assert wide.noise_std == pytest.approx(0.25) and wide.shift == pytest.approx(0.5)
    assert replace(wide, noise_std=settings.noise_std, shift=settings.shift) == settings
    with pytest.raises(ValueError, match="span"):
        settings.for_span(0.0)
    assert Preprocessing().intensity_span == pytest.approx(4.25)  # HU / 100
    assert settings.for_span(2.0, pad_value=-1.75).pad_value == -1.75
    assert Preprocessing(hu_window=(0, 150), intensity_range=(-2, 3)).intensity_span == 5.0
    assert Preprocessing(hu_window=(-100, 200), intensity_range=None).intensity_span == 300.0


@pytest.mark.parametrize("pad_value", [0.0, -1.75])
def test_zooming_out_fills_with_the_air_value(pad_value: float) -> None:
    """Beyond the patch the image reads air (the window's low end), not 0: with HU / 100, 0 is
    water."""
    image = torch.full((24, 24, 24), 0.5)
    label = torch.ones((24, 24, 24), dtype=torch.int64)
    out_image, out_label = _resample(image, label, np.eye(3) / 0.5, pad_value)
    assert float(out_image[0, 0, 0]) == pytest.approx(pad_value)
    assert float(out_image[12, 12, 12]) == pytest.approx(0.5)
    assert int(out_label[0, 0, 0]) == 0 and int(out_label[12, 12, 12]) == 1
    settings = replace(AugmentSettings.none(), zoom_p=1.0, zoom_range=(0.5, 0.5),
                       pad_value=pad_value)
    zoomed, _ = augment(build_augmentation(settings), image.numpy(), label.numpy(), 0)
    assert float(zoomed[0, 0, 0, 0]) == pytest.approx(pad_value)


def test_intensity_only_moves_no_voxel() -> None:
    settings = AugmentSettings.intensity_only()
    assert settings.enabled
    assert (settings.rotate_p, settings.zoom_p, settings.flip_p, settings.blur_p,
            settings.low_resolution_p) == (0.0, 0.0, 0.0, 0.0, 0.0)  # fmt: skip
    assert (settings.brightness_p, settings.contrast_p, settings.shift_p, settings.gamma_p,
            settings.noise_p) == (0.5, 0.3, 0.3, AugmentSettings().gamma_p, 0.3)  # fmt: skip
    assert (settings.brightness, settings.shift) == (AugmentSettings().brightness,
                                                     AugmentSettings().shift)  # same ranges
    image, label = _cube_sample()
    transform = build_augmentation(settings)
    changed = 0
    for seed in range(20):
        out_image, out_label = augment(transform, image, label, seed)
        np.testing.assert_array_equal(out_label.numpy(), label)
        changed += not np.allclose(out_image[0].numpy(), image)
    assert changed > 5  # the intensity transforms do run
