"""Dice + cross-entropy for multi-class logits, and nnU-Net's deep-supervision weighting.

Choices (nnU-Net's `DC_and_CE_loss`, frameworks-notes §1.6): softmax over classes; Dice over the
foreground classes only (`include_background=False`); CE over all classes; 1:1 weights;
"batch Dice" (TP/FP/FN summed over the batch before the ratio, as nnU-Net's 3d_fullres plans
set it); smooth 1e-5 in numerator and denominator. MONAI's `DiceCELoss` computes exactly that
(its Dice term is 1 - dice where nnU-Net's is -dice: same gradient, shifted by a constant).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import nn


def dice_ce_loss(
    batch_dice: bool = True, include_background: bool = False, smooth: float = 1e-5
) -> nn.Module:
    """Dice + CE: `loss(logits (B, C, *S), target (B, 1, *S) int class ids) -> scalar`."""
    return DiceCELoss(
        include_background=include_background,
        to_onehot_y=True,
        softmax=True,
        batch=batch_dice,
        smooth_nr=smooth,
        smooth_dr=smooth,
        lambda_dice=1.0,
        lambda_ce=1.0,
    )


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """nnU-Net's weights: 1/2^i for output i (highest res first), lowest res 0, sum 1."""
    if n_outputs < 1:
        raise ValueError(f"need at least one output, got {n_outputs}")
    weights = [0.5**i for i in range(n_outputs)]
    if n_outputs > 1:
        weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


def downsample_target(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resize of integer labels (B, 1, *S) to (B, 1, *size).

    Nearest (not max-pooling) as nnU-Net does: max over class ids would favour whichever class
    has the highest index, not the tumor. Voxel i takes source voxel floor(i * S / size).
    """
    if tuple(target.shape[2:]) == tuple(size):
        return target
    indexed = target
    for axis, (source, wanted) in enumerate(zip(target.shape[2:], size, strict=True)):
        index = torch.arange(wanted, device=target.device) * source // wanted
        indexed = indexed.index_select(axis + 2, index)
    return indexed


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of `loss` over deep-supervision outputs, targets resized to each output.

    Every term is computed, even with weight 0, so all heads stay in the autograd graph (DDP
    without `find_unused_parameters` would otherwise fail: nnU-Net issue #2070).
    """

    def __init__(self, loss: nn.Module | None = None) -> None:
        super().__init__()
        self.loss = loss if loss is not None else dice_ce_loss()

    def forward(
        self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        """`outputs`: logits (B, C, *S) or a list of them, highest resolution first.

        `target`: class ids (B, 1, *S) or (B, *S) at the highest resolution.
        """
        outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        if target.ndim == outputs[0].ndim - 1:
            target = target.unsqueeze(1)
        weights = deep_supervision_weights(len(outputs))
        total = outputs[0].new_zeros(())
        for weight, output in zip(weights, outputs, strict=True):
            resized = downsample_target(target, output.shape[2:])
            # float32: under bf16 autocast, softmax and the Dice sums would run in bf16
            total = total + weight * self.loss(output.float(), resized)
        return total


def one_hot_logits(target: torch.Tensor, n_classes: int, scale: float = 20.0) -> torch.Tensor:
    """Logits that predict `target` (B, 1, *S) perfectly: `scale` on the true class, else 0."""
    return F.one_hot(target[:, 0].long(), n_classes).movedim(-1, 1).float() * scale
