"""Residual-encoder U-Net (nnU-Net ResEnc style) in plain torch, built from a `ResEncPreset`.

Layout (matches dynamic_network_architectures' ResidualEncoderUNet, so preset M has the same
parameter count as nnU-Net's ResEnc M):
- stem: conv k3 -> InstanceNorm(affine; `instance_norm.InstanceNorm3d`, fast channels-last on
  CPU) -> LeakyReLU(0.01); without the norm where the preset says so (`tiny`'s pointwise stem);
- encoder stage s: `blocks[s]` residual basic blocks; the first one downsamples with a strided
  conv; its skip path avg-pools when strided and adds 1x1 conv + norm when channels change;
- decoder stage: transposed conv (kernel = stride) -> concat skip -> conv-norm-act blocks;
- a 1x1 segmentation head per decoder stage (deep supervision);
- weights initialised as nnU-Net does (`init_he`): He-normal with the LeakyReLU slope, zero
  biases. PyTorch's default init (He-uniform with a = sqrt(5) and random biases) leaves the
  full-resolution head unable to learn small tumors: measured in benchmarks/RESULTS.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tumorscale.models.base import SegmentationNetwork, Triple, padded_size
from tumorscale.models.instance_norm import InstanceNorm3d
from tumorscale.models.presets import ResEncPreset


def _same_padding(kernel: Triple) -> Triple:
    return (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2)


def conv_norm_act(
    in_channels: int,
    out_channels: int,
    kernel: Triple,
    stride: Triple = (1, 1, 1),
    act: bool = True,
    norm: bool = True,
) -> nn.Sequential:
    """Conv3d [-> InstanceNorm3d(affine)] [-> LeakyReLU(0.01)]; 'same' padding."""
    layers: list[nn.Module] = [
        nn.Conv3d(in_channels, out_channels, kernel, stride, padding=_same_padding(kernel))
    ]
    if norm:
        layers.append(InstanceNorm3d(out_channels, eps=1e-5, affine=True))
    if act:
        layers.append(nn.LeakyReLU(0.01, inplace=True))
    return nn.Sequential(*layers)


def init_he(module: nn.Module, negative_slope: float = 0.01) -> None:
    """nnU-Net's `InitWeights_He`: He-normal conv weights for LeakyReLU(0.01), zero biases."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv3d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(layer.weight, a=negative_slope)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class ResidualBlock(nn.Module):
    """Basic residual block (two k-convs); projection skip when channels or stride change."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Triple, stride: Triple):
        super().__init__()
        self.conv1 = conv_norm_act(in_channels, out_channels, kernel, stride)
        self.conv2 = conv_norm_act(out_channels, out_channels, kernel, act=False)
        # nnU-Net's BasicBlockD skip: avg-pool when strided (every input voxel reaches the skip),
        # then 1x1 conv + norm only when the channel count changes.
        skip: list[nn.Module] = []
        if stride != (1, 1, 1):
            skip.append(nn.AvgPool3d(stride, stride))
        if in_channels != out_channels:
            skip.append(nn.Conv3d(in_channels, out_channels, 1, bias=False))
            skip.append(InstanceNorm3d(out_channels, eps=1e-5, affine=True))
        self.skip = nn.Sequential(*skip) if skip else nn.Identity()
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, D, H, W) -> (B, C_out, D/s, H/s, W/s)."""
        return self.act(self.conv2(self.conv1(x)) + self.skip(x))


class ResEncUNet(SegmentationNetwork):
    """Residual-encoder U-Net with deep-supervision heads; see `SegmentationNetwork` for I/O."""

    def __init__(self, preset: ResEncPreset, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.preset = preset
        self.deep_supervision = preset.deep_supervision
        self.size_divisor = preset.size_divisor
        # InstanceNorm needs > 1 voxel: keep the bottleneck at least 2 voxels along every axis.
        d0, d1, d2 = self.size_divisor
        self.min_size = (2 * d0, 2 * d1, 2 * d2)
        features = preset.features_per_stage
        self.stem = conv_norm_act(
            in_channels, features[0], preset.kernel_sizes[0], norm=preset.stem_norm
        )
        self.encoder = nn.ModuleList(self._encoder_stage(s) for s in range(preset.n_stages))
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.heads = nn.ModuleList()
        # Decoder modules are listed from the deepest stage up (index 0 = lowest resolution).
        for s in range(preset.n_stages - 1, 0, -1):
            stride = preset.strides[s]
            self.upsample.append(nn.ConvTranspose3d(features[s], features[s - 1], stride, stride))
            self.decoder.append(self._decoder_stage(s - 1))
            self.heads.append(nn.Conv3d(features[s - 1], out_channels, 1))
        init_he(self)

    def _encoder_stage(self, s: int) -> nn.Sequential:
        p = self.preset
        previous = p.features_per_stage[max(s - 1, 0)]
        width, kernel = p.features_per_stage[s], p.kernel_sizes[s]
        n_blocks = p.blocks_per_stage_encoder[s]
        if n_blocks == 0:
            return nn.Sequential()  # stage 0 as the stem alone (allowed only at stride 1)
        blocks = [ResidualBlock(previous, width, kernel, p.strides[s])]
        blocks += [ResidualBlock(width, width, kernel, (1, 1, 1)) for _ in range(n_blocks - 1)]
        return nn.Sequential(*blocks)

    def _decoder_stage(self, level: int) -> nn.Sequential:
        p = self.preset
        width, kernel = p.features_per_stage[level], p.kernel_sizes[level]
        n_blocks = p.blocks_per_stage_decoder[level]
        # The first conv sees [upsampled, skip] concatenated: twice the width.
        layers = [conv_norm_act(2 * width, width, kernel)]
        layers += [conv_norm_act(width, width, kernel) for _ in range(n_blocks - 1)]
        return nn.Sequential(*layers)

    def forward_core(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C_in, *size) with size a multiple of `size_divisor` -> logits, highest res first."""
        skips = []
        x = self.stem(x)
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        all_heads = self.training and self.deep_supervision
        outputs = []
        last = len(self.heads) - 1
        for index in range(len(self.heads)):
            x = self.decoder[index](torch.cat((self.upsample[index](x), skips.pop()), dim=1))
            if all_heads or index == last:
                outputs.append(self.heads[index](x))
        return outputs[::-1]

    def describe(self, input_size: Sequence[int]) -> dict[str, Any]:
        """Feature-map sizes per stage, parameters and conv-output elements per sample.

        `conv_output_elements` counts every conv output voxel x channel for one sample (the
        nnU-Net planner's memory proxy); multiply by bytes per element for an activation budget.
        """
        info = super().describe(input_size)
        info["network"] = f"ResEncUNet[{self.preset.name}]"
        size = padded_size(input_size, self.size_divisor, self.min_size)
        encoder, decoder, elements = self._feature_maps(size)
        info.update(encoder=encoder, decoder=decoder, conv_output_elements=elements)
        return info

    def _feature_maps(self, size: Triple) -> tuple[list[dict], list[dict], int]:
        p = self.preset
        n_classes = self.heads[0].out_channels
        sizes, current = [], size
        for stride in p.strides:
            current = tuple(c // s for c, s in zip(current, stride, strict=True))
            sizes.append(current)
        voxels = [sz[0] * sz[1] * sz[2] for sz in sizes]
        features = p.features_per_stage
        elements = features[0] * voxels[0]  # stem
        encoder = []
        for s in range(p.n_stages):
            encoder.append({"stage": s, "channels": features[s], "size": list(sizes[s])})
            projection = int(s > 0 and features[s] != features[s - 1])  # 1x1 skip conv
            elements += features[s] * voxels[s] * (2 * p.blocks_per_stage_encoder[s] + projection)
        decoder = []
        for level in range(p.n_stages - 2, -1, -1):
            decoder.append(
                {"level": level, "channels": features[level], "size": list(sizes[level])}
            )
            convs = 1 + p.blocks_per_stage_decoder[level]  # transposed conv + decoder convs
            elements += features[level] * voxels[level] * convs + n_classes * voxels[level]
        return encoder, decoder[::-1], elements
