"""The baseline for augmentation speed: the same nnU-Net chain as MONAI dictionary transforms.

What a MONAI user writes for nnU-Net's augmentations (and what `tumorscale.data.augment` was
until it was rewritten for speed): `bench_train.py` times this against
`tumorscale.data.augment` on the same patches.
"""

from __future__ import annotations

import math

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

from tumorscale.data.augment import AugmentSettings, single_thread

KEYS = ("image", "label")


def build_monai_augmentation(settings: AugmentSettings) -> Compose:
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




def monai_augment(
    transform: Compose, image: np.ndarray, label: np.ndarray, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded, on one torch thread, plain tensors out (as the pipeline used it)."""
    image_t = torch.as_tensor(np.asarray(image, dtype=np.float32))[None]
    label_t = torch.as_tensor(np.asarray(label))[None]
    transform.set_random_state(seed=int(seed))
    with single_thread():
        out = transform({"image": image_t, "label": label_t.to(torch.float32)})
    image_out = torch.as_tensor(out["image"]).as_subclass(torch.Tensor).to(torch.float32)
    label_out = torch.as_tensor(out["label"]).as_subclass(torch.Tensor)
    return image_out.contiguous(), label_out[0].round().to(torch.int64).contiguous()
