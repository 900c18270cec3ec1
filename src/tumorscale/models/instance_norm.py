"""Instance norm that stays fast on channels-last CPU tensors (the layout tumorscale trains in).

PyTorch computes `nn.InstanceNorm3d` as a batch norm over a (1, B*C, ...) view, which copies a
channels-last tensor to channels-first and back, forward and backward. A group norm with one
channel per group is the same arithmetic and its forward has a channels-last CPU kernel; its
backward kernel does not, so the backward here is written out: per-(sample, channel) sums as
one batched matrix product each, then one fused pass for the input gradient.
`benchmarks/bench_norm.py` measures it against PyTorch's layer (`benchmarks/RESULTS.md`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable


class _ChannelsLastInstanceNorm(torch.autograd.Function):
    """y = (x - mean) * rstd * weight + bias per sample and channel, for (B, C, D, H, W) x."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
    ) -> torch.Tensor:
        batch, channels = x.shape[:2]
        voxels = x[0, 0].numel()
        y, mean, rstd = torch.native_group_norm(
            x, weight, bias, batch, channels, voxels, channels, eps
        )
        ctx.save_for_backward(x, weight, mean, rstd)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, weight, mean, rstd = ctx.saved_tensors
        batch, channels = x.shape[:2]
        voxels = x[0, 0].numel()
        per_channel = (batch, channels, 1, 1, 1)
        mean, rstd = mean.view(per_channel), rstd.view(per_channel)
        gamma = weight.view(1, channels, 1, 1, 1)
        sum_dy = _spatial_sum(grad_y).view(per_channel)
        sum_dy_x = _spatial_sum(grad_y * x).view(per_channel)
        sum_dy_xhat = rstd * (sum_dy_x - mean * sum_dy)  # = Σ dy * (x - mean) * rstd
        # dx = rstd * gamma * (dy - mean(dy) - xhat * mean(dy * xhat)) = a*dy + b*x + c
        a = rstd * gamma
        b = -a * rstd * sum_dy_xhat / voxels
        c = -a * sum_dy / voxels - b * mean
        grad_x = grad_y * a
        grad_x.addcmul_(x, b).add_(c)
        return grad_x, sum_dy_xhat.sum(0).flatten(), sum_dy.sum(0).flatten(), None


def _spatial_sum(tensor: torch.Tensor) -> torch.Tensor:
    """(B, C, D, H, W) -> (B, 1, C) sums over the voxels, as a matrix product (any layout)."""
    batch, channels = tensor.shape[:2]
    # For a channels-last tensor this (B, voxels, C) view needs no copy.
    rows = tensor.permute(0, 2, 3, 4, 1).reshape(batch, -1, channels)
    return torch.bmm(rows.new_ones(batch, 1, rows.shape[1]), rows)


class InstanceNorm3d(nn.InstanceNorm3d):
    """`nn.InstanceNorm3d` (affine, no running stats) with a channels-last float32 CPU path.

    Other tensors (CUDA, contiguous, and bfloat16 under autocast) run PyTorch's layer. The
    parameters and state dict are PyTorch's, so checkpoints load either way.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) -> normalised per sample and channel, then the affine."""
        if (
            self.affine
            and not self.track_running_stats
            and x.dim() == 5
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and x.is_contiguous(memory_format=torch.channels_last_3d)
        ):
            return _ChannelsLastInstanceNorm.apply(x, self.weight, self.bias, self.eps)
        return super().forward(x)
