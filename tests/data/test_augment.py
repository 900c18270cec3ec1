"""Augmentation: deterministic per seed, image and label stay aligned, `none()` is identity."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from tumorscale.data.augment import AugmentSettings, augment, build_augmentation


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
