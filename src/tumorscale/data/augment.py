"""Training augmentations on CPU workers: MONAI dictionary transforms with nnU-Net's probabilities.

Order and probabilities follow nnU-Net v2 (`nnUNetTrainer.get_training_transforms`): rotation
p 0.2 (±30°), scaling p 0.2 (0.7-1.4), Gaussian noise p 0.1, blur p 0.2, brightness p 0.15,
contrast p 0.15, low-resolution simulation p 0.25, inverted gamma p 0.1, gamma p 0.3, mirroring
on every axis p 0.5; plus DiffTumor's intensity shift (±0.1, p 0.15). Image and label get the same
spatial transforms (trilinear / nearest). Intensity amounts are for images scaled to [0, 1].

Determinism: one `Compose` per worker, re-seeded per sample (`augment(..., seed)`), so a sample's
augmentation depends only on its seed. It runs on one torch thread: torch's multi-threaded
reductions (the mean / SD of contrast and gamma) round differently with other thread counts, and
batches must not depend on whether they were made in the main process or in a worker.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandRotated,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    RandShiftIntensityd,
    RandSimulateLowResolutiond,
    RandZoomd,
)

KEYS = ("image", "label")


@dataclass(frozen=True)
class AugmentSettings:
    """Probabilities (0 disables a transform) and ranges; angles in degrees, intensities in the
    scaled [0, 1] units of the cache's window."""

    rotate_p: float = 0.2
    rotate_deg: float = 30.0
    zoom_p: float = 0.2
    zoom_range: tuple[float, float] = (0.7, 1.4)
    noise_p: float = 0.1
    noise_std: float = 0.05  # upper bound of the noise SD (nnU-Net: variance <= 0.1 in z-units)
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.0)  # voxels
    brightness_p: float = 0.15
    brightness: float = 0.25  # multiplicative factor 1 ± this
    contrast_p: float = 0.15
    contrast: float = 0.25  # contrast factor 1 ± this, mean kept
    shift_p: float = 0.15
    shift: float = 0.1  # additive offset ± this
    low_resolution_p: float = 0.25
    low_resolution_zoom: tuple[float, float] = (0.5, 1.0)
    inverted_gamma_p: float = 0.1
    gamma_p: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    flip_p: float = 0.5  # per axis

    @classmethod
    def none(cls) -> AugmentSettings:
        """Every transform off (tests, input-speed baselines)."""
        probabilities = {name: 0.0 for name in cls.__dataclass_fields__ if name.endswith("_p")}
        return replace(cls(), **probabilities)

    @property
    def enabled(self) -> bool:
        return any(getattr(self, name) > 0 for name in self.__dataclass_fields__
                   if name.endswith("_p"))


def build_augmentation(settings: AugmentSettings) -> Compose:
    """The dictionary transform chain for {"image": (1, X, Y, Z) float, "label": (1, X, Y, Z)}."""
    s = settings
    angle = math.radians(s.rotate_deg)
    steps = [
        RandRotated(KEYS, range_x=angle, range_y=angle, range_z=angle, prob=s.rotate_p,
                    mode=("bilinear", "nearest"), padding_mode="zeros", keep_size=True),
        RandZoomd(KEYS, prob=s.zoom_p, min_zoom=s.zoom_range[0], max_zoom=s.zoom_range[1],
                  mode=("trilinear", "nearest"), padding_mode="constant", keep_size=True),
        RandGaussianNoised("image", prob=s.noise_p, std=s.noise_std),
        RandGaussianSmoothd("image", sigma_x=s.blur_sigma, sigma_y=s.blur_sigma,
                            sigma_z=s.blur_sigma, prob=s.blur_p),
        RandScaleIntensityd("image", factors=s.brightness, prob=s.brightness_p),
        RandScaleIntensityFixedMeand("image", factors=s.contrast, preserve_range=True,
                                     prob=s.contrast_p),
        RandShiftIntensityd("image", offsets=s.shift, prob=s.shift_p),
        RandSimulateLowResolutiond("image", prob=s.low_resolution_p,
                                   zoom_range=s.low_resolution_zoom),
        RandAdjustContrastd("image", prob=s.inverted_gamma_p, gamma=s.gamma_range,
                            invert_image=True, retain_stats=True),
        RandAdjustContrastd("image", prob=s.gamma_p, gamma=s.gamma_range, retain_stats=True),
    ]
    steps += [RandFlipd(KEYS, prob=s.flip_p, spatial_axis=axis) for axis in range(3)]
    # Disabled steps are dropped: each still costs a random draw and a dict copy otherwise.
    kept = [step for step in steps if _probability(step) > 0]
    return Compose(kept, map_items=False)


def _probability(step: object) -> float:
    return float(getattr(step, "prob", 1.0))


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block (restored after; costs < 1 us)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def augment(
    transform: Compose, image: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply `transform` seeded with `seed` to image (X, Y, Z) float and label (X, Y, Z) int.

    Returns float32 (1, X, Y, Z) and int64 (X, Y, Z) torch tensors (plain, no MONAI metadata)."""
    image_t = torch.as_tensor(np.asarray(image, dtype=np.float32))[None]
    label_t = torch.as_tensor(np.asarray(label))[None]
    if not transform.transforms:
        return image_t, label_t[0].to(torch.int64)
    transform.set_random_state(seed=int(seed))
    with single_thread():
        out = transform({"image": image_t, "label": label_t.to(torch.float32)})
    image_out = torch.as_tensor(out["image"]).as_subclass(torch.Tensor).to(torch.float32)
    label_out = torch.as_tensor(out["label"]).as_subclass(torch.Tensor)
    return image_out.contiguous(), label_out[0].round().to(torch.int64).contiguous()
