"""Training augmentations on CPU workers, with nnU-Net's probabilities and ranges.

Order and probabilities follow nnU-Net v2 (`nnUNetTrainer.get_training_transforms`): rotation
p 0.2 (±30° about each axis), scaling p 0.2 (0.7-1.4), Gaussian noise p 0.1, blur p 0.2,
brightness p 0.15, contrast p 0.15, low-resolution simulation p 0.25, inverted gamma p 0.1,
gamma p 0.3, mirroring on every axis p 0.5; plus DiffTumor's intensity shift (±0.1, p 0.15).
Image and label get the same spatial transforms (trilinear / nearest); where they reach
outside the patch the image reads the window's air value (`pad_value`). The additive amounts
(noise SD, shift) are fractions of the window's intensity span, so they are as stated for images
scaled to [0, 1] and about 5x larger for nnU-Net's z-scored CT normalisation (span about 5: a
noise SD up to 0.25, near nnU-Net's 0.32; `AugmentSettings.for_span`). Each transform follows
the definition of its MONAI counterpart (`RandRotated`, `RandZoomd`, `RandGaussianSmoothd`,
`RandAdjustContrastd`, ...).

Why not MONAI's dictionary transforms: per 96³ patch they cost about 2x as much on one core
(`benchmarks/bench_train.py` times both). A rotation there builds one sampling grid per key
(about 50 ms for image and label); here one grid, built by broadcasting, serves both (about
20 ms), both transforms drawn at once are one resampling, and there is no per-sample metadata or
random-state bookkeeping.

Determinism: every draw comes from `np.random.default_rng(seed)` (noise from a torch generator
seeded from it), so a sample's augmentation depends only on its seed. It runs on one torch
thread: torch's multi-threaded reductions (the mean / SD of contrast and gamma) round
differently with other thread counts, and batches must not depend on whether they were made in
the main process or in a worker.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from tumorscale.geometry import rotation_matrix

_EPSILON = 1e-7  # MONAI AdjustContrast's guard against a constant image


@dataclass(frozen=True)
class AugmentSettings:
    """Probabilities (0 disables a transform) and ranges; angles in degrees, additive
    intensities for a window scaled to [0, 1] (`for_span` rescales them to another span)."""

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
    pad_value: float = 0.0  # the image value of air, where rotation or zoom reaches outside

    @classmethod
    def intensity_only(cls) -> AugmentSettings:
        """Brightness, contrast, shift, gamma and noise, drawn more often than nnU-Net draws them
        (p 0.5, 0.3, 0.3, 0.3 as nnU-Net, 0.3); no rotation, zoom, flip, blur or low resolution.

        For short CPU runs such as the demo's, where the geometric transforms cost more
        iterations than they repay. With them off, these alone must keep a network that reads
        absolute HU (HU / 100 into `tiny`'s normless stem) from tying itself to one scanner's
        contrast; at nnU-Net's probabilities they did so less well (`benchmarks/RESULTS.md`)."""
        geometric = ("rotate_p", "zoom_p", "flip_p", "blur_p", "low_resolution_p")
        return replace(cls(), **{name: 0.0 for name in geometric}, brightness_p=0.5,
                       contrast_p=0.3, shift_p=0.3, noise_p=0.3)

    @classmethod
    def none(cls) -> AugmentSettings:
        """Every transform off (tests, input-speed baselines)."""
        probabilities = {name: 0.0 for name in cls.__dataclass_fields__ if name.endswith("_p")}
        return replace(cls(), **probabilities)

    def for_span(self, span: float, pad_value: float = 0.0) -> AugmentSettings:
        """These settings for images whose HU window spans `span` intensity units and whose air
        reads `pad_value`: the additive amounts scale with the span (multiplicative and
        range-relative ones need no change)."""
        if not span > 0:
            raise ValueError(f"the intensity span must be positive; got {span}")
        return replace(self, noise_std=self.noise_std * span, shift=self.shift * span,
                       pad_value=float(pad_value))

    @property
    def enabled(self) -> bool:
        return any(getattr(self, name) > 0 for name in self.__dataclass_fields__
                   if name.endswith("_p"))


def _happens(rng: np.random.Generator, probability: float) -> bool:
    """One Bernoulli draw; a disabled transform (p = 0) draws nothing."""
    return probability > 0 and bool(rng.random() < probability)


# ----------------------------------------------------------------------------- spatial


def _sampling_grid(shape: tuple[int, ...], output_to_input: np.ndarray) -> torch.Tensor:
    """`grid_sample` grid (1, X, Y, Z, 3) reading input voxel c + A (p - c) for output voxel p,
    c the centre. Built from three outer sums: `affine_grid` costs a 4x4 product per voxel."""
    ranges = [torch.arange(n, dtype=torch.float64) - (n - 1) / 2 for n in shape]
    grid = torch.empty((*shape, 3), dtype=torch.float32)
    for component, axis in enumerate((2, 1, 0)):  # grid_sample's (x, y, z) are our (2, 1, 0)
        row = output_to_input[axis] * (2.0 / max(shape[axis] - 1, 1))  # align_corners=True
        grid[..., component] = ((row[0] * ranges[0])[:, None, None]
                                + (row[1] * ranges[1])[None, :, None]
                                + (row[2] * ranges[2])[None, None, :])
    return grid[None]


def _resample(
    image: torch.Tensor, label: torch.Tensor, output_to_input: np.ndarray, pad_value: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image (trilinear) and label (nearest, any dtype, kept) through one grid; `pad_value` in
    the image and background in the label outside (MONAI's `padding_mode="zeros"` about it)."""
    grid = _sampling_grid(tuple(image.shape), output_to_input)
    shifted = (image - pad_value)[None, None]  # grid_sample pads with 0: make 0 the pad value
    out_image = F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros",
                              align_corners=True)[0, 0] + pad_value
    out_label = torch.zeros_like(label)
    box = _label_output_box(label, output_to_input)
    if box is not None:  # only where the label can land: a tumor is a small part of a patch
        moved = F.grid_sample(label.to(torch.float32)[None, None], grid[(slice(None), *box)],
                              mode="nearest", padding_mode="zeros", align_corners=True)[0, 0]
        out_label[box] = moved.round().to(label.dtype)
    return out_image, out_label


def _label_output_box(label: torch.Tensor, output_to_input: np.ndarray) -> tuple[slice, ...] | None:
    """The output voxels whose (nearest) input voxel can be labelled: the label's bounding box,
    one voxel wider, mapped back to the output (None for an all-background label)."""
    present = label.numpy() != 0
    plane = present.any(axis=0)  # numpy: torch's any over leading dims is 10x slower here
    ranges = []
    for hits in (present.any(axis=(1, 2)), plane.any(axis=1), plane.any(axis=0)):
        where = np.flatnonzero(hits)
        if where.size == 0:
            return None
        ranges.append((int(where[0]) - 1, int(where[-1]) + 1))
    shape = np.asarray(label.shape, float)
    centre = (shape - 1) / 2
    corners = np.array(np.meshgrid(*ranges, indexing="ij")).reshape(3, -1).T - centre
    mapped = corners @ np.linalg.inv(output_to_input).T + centre
    low = np.clip(np.floor(mapped.min(axis=0)), 0, shape).astype(int)
    high = np.clip(np.ceil(mapped.max(axis=0)) + 1, 0, shape).astype(int)
    if np.any(high <= low):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))


def spatial(
    image: torch.Tensor, label: torch.Tensor, settings: AugmentSettings,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation (p `rotate_p`) and scaling (p `zoom_p`) about the centre, as one resampling."""
    limit = math.radians(settings.rotate_deg)
    angles = rng.uniform(-limit, limit, 3) if _happens(rng, settings.rotate_p) else None
    factor = float(rng.uniform(*settings.zoom_range)) if _happens(rng, settings.zoom_p) else 1.0
    if angles is None and factor == 1.0:
        return image, label
    rotation = np.eye(3) if angles is None else rotation_matrix(angles)
    # Output voxel p shows input voxel c + R^T (p - c) / factor: rotated, then magnified.
    return _resample(image, label, rotation.T / factor, settings.pad_value)


def flip(
    image: torch.Tensor, label: torch.Tensor, settings: AugmentSettings,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror each axis with probability `flip_p` (one copy for all mirrored axes)."""
    axes = [axis for axis in range(3) if _happens(rng, settings.flip_p)]
    if not axes:
        return image, label
    return torch.flip(image, axes), torch.flip(label, axes)


# ----------------------------------------------------------------------------- intensity


def _noise(image: torch.Tensor, std_max: float, rng: np.random.Generator) -> torch.Tensor:
    std = float(rng.uniform(0.0, std_max))
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return image + torch.randn(image.shape, generator=generator).mul_(std)


def _blur(image: torch.Tensor, sigma_range: tuple[float, float],
          rng: np.random.Generator) -> torch.Tensor:
    sigmas = rng.uniform(*sigma_range, 3)  # per axis, in voxels (MONAI sigma_x/y/z)
    return torch.from_numpy(ndimage.gaussian_filter(image.numpy(), sigmas, mode="nearest"))


def _contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Spread about the mean by `factor`, clipped to the input's range (MONAI
    `ScaleIntensityFixedMean(preserve_range=True)`)."""
    low, high, mean = image.min(), image.max(), image.mean()
    return ((image - mean) * factor + mean).clamp_(low, high)


def _low_resolution(image: torch.Tensor, zoom: float) -> torch.Tensor:
    """Nearest downsampling by `zoom`, trilinear back to the shape (MONAI
    `SimulateLowResolution`)."""
    shape = tuple(image.shape)
    small = [max(1, round(n * zoom)) for n in shape]
    down = F.interpolate(image[None, None], size=small, mode="nearest")
    return F.interpolate(down, size=shape, mode="trilinear", align_corners=False)[0, 0]


def _gamma(image: torch.Tensor, gamma: float, invert: bool) -> torch.Tensor:
    """Gamma on the [min, max]-normalised image, mean and SD restored (MONAI `AdjustContrast`
    with `retain_stats=True`; `invert` applies it to the negated image)."""
    work = -image if invert else image
    mean, std = work.mean(), work.std()
    low = work.min()
    spread = work.max() - low
    out = ((work - low) / float(spread + _EPSILON)).pow_(gamma).mul_(spread).add_(low)
    out = (out - out.mean()) / (out.std() + 1e-8) * std + mean
    return -out if invert else out


def intensity(
    image: torch.Tensor, settings: AugmentSettings, rng: np.random.Generator
) -> torch.Tensor:
    """The intensity transforms in nnU-Net's order, each with its own probability."""
    s = settings
    if _happens(rng, s.noise_p):
        image = _noise(image, s.noise_std, rng)
    if _happens(rng, s.blur_p):
        image = _blur(image, s.blur_sigma, rng)
    if _happens(rng, s.brightness_p):
        image = image * float(1.0 + rng.uniform(-s.brightness, s.brightness))
    if _happens(rng, s.contrast_p):
        image = _contrast(image, float(1.0 + rng.uniform(-s.contrast, s.contrast)))
    if _happens(rng, s.shift_p):
        image = image + float(rng.uniform(-s.shift, s.shift))
    if _happens(rng, s.low_resolution_p):
        image = _low_resolution(image, float(rng.uniform(*s.low_resolution_zoom)))
    if _happens(rng, s.inverted_gamma_p):
        image = _gamma(image, float(rng.uniform(*s.gamma_range)), invert=True)
    if _happens(rng, s.gamma_p):
        image = _gamma(image, float(rng.uniform(*s.gamma_range)), invert=False)
    return image


# ----------------------------------------------------------------------------- the chain


@dataclass(frozen=True)
class Augmentation:
    """The whole chain for one settings record: spatial, intensity, mirroring."""

    settings: AugmentSettings

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def __call__(
        self, image: torch.Tensor, label: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = spatial(image, label, self.settings, rng)
        image = intensity(image, self.settings, rng)
        return flip(image, label, self.settings, rng)


def build_augmentation(settings: AugmentSettings) -> Augmentation:
    """The transform chain `augment` applies."""
    return Augmentation(settings)


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
    transform: Augmentation, image: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply `transform` seeded with `seed` to image (X, Y, Z) float and label (X, Y, Z) int.

    Returns float32 (1, X, Y, Z) and int64 (X, Y, Z) torch tensors."""
    image_t = torch.as_tensor(np.asarray(image, dtype=np.float32))
    label_t = torch.as_tensor(np.asarray(label))
    if not transform.enabled:
        return image_t[None], label_t.to(torch.int64)
    with single_thread():
        out_image, out_label = transform(image_t, label_t, np.random.default_rng(int(seed)))
    return out_image.to(torch.float32)[None].contiguous(), out_label.to(torch.int64).contiguous()
