"""What every tumorscale segmentation network promises, whatever builds it.

- `forward(x)`: x is (B, C_in, D, H, W) of any spatial size. In eval mode it returns the
  full-resolution logits (B, C_out, D, H, W). In training mode it returns a list of logits,
  highest resolution first; the list has one entry when the net has no deep supervision.
- `deep_supervision`: whether training mode returns more than one resolution.
- `size_divisor`: per-axis multiple the core network needs, and `min_size` the smallest input
  it can normalise; other sizes are zero-padded at the high end (as nnU-Net and MONAI pad;
  the network does not know the preprocessing) and the outputs cropped back. Inputs padded by
  prediction or training reach it already padded with air and seldom need this.
- `describe(input_size)`: sizes and parameter count for memory planning.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Triple = tuple[int, int, int]


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(parameter.numel() for parameter in module.parameters())


def padded_size(
    size: Sequence[int], divisor: Sequence[int], min_size: Sequence[int] = (1, 1, 1)
) -> Triple:
    """`size` raised to `min_size` and rounded up per axis to a multiple of `divisor`."""
    rounded = [
        math.ceil(max(s, m) / d) * d for s, d, m in zip(size, divisor, min_size, strict=True)
    ]
    return (rounded[0], rounded[1], rounded[2])


class SegmentationNetwork(nn.Module, metaclass=abc.ABCMeta):
    """Base class: padding/cropping for any input size and the train/eval output convention."""

    deep_supervision: bool = False
    size_divisor: Triple = (1, 1, 1)
    min_size: Triple = (1, 1, 1)

    @abc.abstractmethod
    def forward_core(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits for an input whose size is a multiple of `size_divisor`, highest res first.

        In eval mode only the first (full-resolution) entry is needed.
        """

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """(B, C_in, D, H, W) -> logits; see the module docstring for the train/eval shapes."""
        if x.ndim != 5:
            raise ValueError(f"expected a (B, C, D, H, W) tensor, got shape {tuple(x.shape)}")
        size = tuple(x.shape[2:])
        target = padded_size(size, self.size_divisor, self.min_size)
        if target != size:
            # F.pad lists the last axis first: (W_lo, W_hi, H_lo, H_hi, D_lo, D_hi).
            pads = [p for axis in (2, 1, 0) for p in (0, target[axis] - size[axis])]
            x = F.pad(x, pads, mode="constant", value=0.0)
        outputs = [crop_to_input(out, size, target) for out in self.forward_core(x)]
        return outputs if self.training else outputs[0]

    def describe(self, input_size: Sequence[int]) -> dict[str, Any]:
        """Sizes for memory planning; subclasses add per-stage feature maps."""
        size = tuple(int(s) for s in input_size)
        return {
            "network": type(self).__name__,
            "input_size": list(size),
            "padded_size": list(padded_size(size, self.size_divisor, self.min_size)),
            "size_divisor": list(self.size_divisor),
            "min_size": list(self.min_size),
            "deep_supervision": self.deep_supervision,
            "parameters": count_parameters(self),
        }


def crop_to_input(
    output: torch.Tensor, input_size: Sequence[int], padded: Sequence[int]
) -> torch.Tensor:
    """Crop an output of the padded input back to the part that covers the real input.

    An output at stride s (padded // output size) keeps ceil(input / s) voxels per axis.
    """
    keep = []
    for out_len, in_len, pad_len in zip(output.shape[2:], input_size, padded, strict=True):
        stride = max(pad_len // out_len, 1)
        keep.append(min(math.ceil(in_len / stride), out_len))
    return output[:, :, : keep[0], : keep[1], : keep[2]]
