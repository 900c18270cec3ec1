"""Dice + CE and deep supervision, checked against hand-computed values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tumorscale.models import (
    DeepSupervisionLoss,
    build_network,
    deep_supervision_weights,
    dice_ce_loss,
    downsample_target,
)
from tumorscale.models.losses import one_hot_logits


def _target(batch: int = 2, size: int = 8, n_classes: int = 3) -> torch.Tensor:
    """(B, 1, S, S, S) labels where every class is present in the batch."""
    target = torch.zeros(batch, 1, size, size, size, dtype=torch.long)
    target[:, :, 2:5, 2:5, 2:5] = 1
    target[0, :, 5:7, 5:7, 5:7] = n_classes - 1
    return target


def test_perfect_prediction_gives_near_zero_loss() -> None:
    target = _target()
    loss = dice_ce_loss()(one_hot_logits(target, 3), target)
    assert 0 <= loss.item() < 1e-4


def test_wrong_prediction_gives_large_loss() -> None:
    target = _target()
    wrong = one_hot_logits((target + 1) % 3, 3)
    # CE of a confident wrong answer ~ 20 nats, plus Dice ~ 1.
    assert dice_ce_loss()(wrong, target).item() > 10


def test_matches_nnunet_formula_batch_dice_without_background() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 6, 6)
    target = torch.randint(0, 3, (2, 1, 6, 6, 6))
    probabilities = logits.softmax(1)
    one_hot = F.one_hot(target[:, 0], 3).movedim(-1, 1).float()
    # Batch Dice: sums over batch and space, foreground classes only, smooth 1e-5.
    intersection = (probabilities * one_hot).sum((0, 2, 3, 4))[1:]
    denominator = (probabilities + one_hot).sum((0, 2, 3, 4))[1:]
    dice = (2 * intersection + 1e-5) / (denominator + 1e-5)
    expected = F.cross_entropy(logits, target[:, 0]) + (1 - dice.mean())
    torch.testing.assert_close(dice_ce_loss()(logits, target), expected)


@pytest.mark.parametrize(
    ("n_outputs", "expected"),
    [(1, [1.0]), (2, [1.0, 0.0]), (5, [8 / 15, 4 / 15, 2 / 15, 1 / 15, 0.0])],
)
def test_deep_supervision_weights(n_outputs: int, expected: list[float]) -> None:
    weights = deep_supervision_weights(n_outputs)
    assert weights == pytest.approx(expected)
    assert sum(weights) == pytest.approx(1.0)


def test_downsample_target_is_nearest() -> None:
    target = torch.arange(6 * 4 * 5).reshape(1, 1, 6, 4, 5)
    half = downsample_target(target, (3, 2, 3))
    # floor(i * S / size): rows 0, 2, 4; cols 0, 2; depth 0, 1, 3.
    assert torch.equal(half, target[:, :, ::2, ::2][..., [0, 1, 3]])
    assert downsample_target(target, (6, 4, 5)) is target


def test_deep_supervision_loss_weights_each_resolution() -> None:
    torch.manual_seed(0)
    target = _target(size=8)
    outputs = [torch.randn(2, 3, 8, 8, 8), torch.randn(2, 3, 4, 4, 4), torch.randn(2, 3, 2, 2, 2)]
    base = dice_ce_loss()
    expected = (2 / 3) * base(outputs[0], target) + (1 / 3) * base(
        outputs[1], target[:, :, ::2, ::2, ::2]
    )
    loss = DeepSupervisionLoss()(outputs, target[:, 0])  # (B, *S) targets are accepted too
    torch.testing.assert_close(loss, expected)
    # A single tensor is the one-output case.
    torch.testing.assert_close(DeepSupervisionLoss()(outputs[0], target), base(outputs[0], target))


def test_deep_supervision_loss_trains_tiny_on_odd_sizes() -> None:
    torch.manual_seed(0)
    network = build_network("tiny", 1, 3).train()
    x = torch.rand(2, 1, 20, 18, 22)
    target = (x > 0.7).long() + (x > 0.9).long()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    criterion = DeepSupervisionLoss()
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = criterion(network(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
    # Every head took part in the graph (DDP needs it), the lowest one with weight 0.
    assert all(p.grad is not None for p in network.parameters())
