"""Every ResEnc preset learns: trained briefly on one easy task (a low-contrast sphere in noise,
the way a liver tumor sits in liver), its loss falls and the full-resolution output finds the
sphere. Before nnU-Net's He initialisation, `tiny` predicted nothing here (the full-resolution
head stayed below 0.5 tumor probability while the half-resolution head learned)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tumorscale.models import DeepSupervisionLoss, build_network
from tumorscale.models.presets import PRESETS

SIZE = 64  # the smallest input the 6-stage presets (S, M, L) take without padding
STEPS = 60


def sphere_task(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(image (2, 1, 64³), label (2, 1, 64³)): liver-like noise with a 40 HU darker sphere of
    radius 6-9 voxels per sample, scaled like the training input ([-175, 250] -> [0, 1])."""
    rng = np.random.default_rng(seed)
    grid = np.indices((SIZE,) * 3).astype(np.float32)
    images, labels = [], []
    for _ in range(2):
        centre = rng.uniform(20, SIZE - 20, size=3)
        radius = rng.uniform(6, 9)
        inside = ((grid - centre[:, None, None, None]) ** 2).sum(0) <= radius**2
        hu = 100.0 + rng.normal(0, 15, (SIZE,) * 3) - 40.0 * inside
        images.append(((np.clip(hu, -175, 250) + 175) / 425).astype(np.float32))
        labels.append(inside.astype(np.int64))
    return torch.from_numpy(np.stack(images))[:, None], torch.from_numpy(np.stack(labels))[:, None]


def dice(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    predicted, truth = predicted.bool(), truth.bool()
    return float(2 * (predicted & truth).sum() / (predicted.sum() + truth.sum()).clamp(min=1))


# L is M's network with a larger planned patch: at a 64³ input it is the same test as M.
@pytest.mark.parametrize("preset", sorted(set(PRESETS) - {"L"}))
def test_preset_lowers_its_loss_and_finds_the_tumor(preset: str) -> None:
    torch.manual_seed(0)
    # The big presets at full width take minutes per step on 2 cores: their topology (stages,
    # blocks, strides, kernels, init) is what is under test, at a quarter of the width.
    overrides = {}
    if preset in ("M", "S"):
        widths = PRESETS[preset].features_per_stage
        overrides["features_per_stage"] = [max(4, w // 8) for w in widths]
    network = build_network(preset, 1, 2, **overrides).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-2)
    loss_fn = DeepSupervisionLoss()
    image, label = sphere_task(seed=1)
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = loss_fn(network(image), label)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses
    network.eval()
    with torch.no_grad():
        test_image, test_label = sphere_task(seed=2)
        predicted = network(test_image).argmax(1, keepdim=True)
    assert predicted.sum() > 0, "predicts no tumor at all"
    assert dice(predicted, test_label) > 0.3
