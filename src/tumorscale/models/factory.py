"""One factory for every network: ResEnc U-Net presets and MONAI networks by name.

Every network it returns is a `SegmentationNetwork`: same train/eval output convention, any
input size (internal padding), `deep_supervision` flag and `describe()`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from tumorscale.models.base import SegmentationNetwork
from tumorscale.models.presets import PRESETS, get_preset
from tumorscale.models.resenc_unet import ResEncUNet


class MonaiNetwork(SegmentationNetwork):
    """A MONAI network behind the `SegmentationNetwork` convention (padding, list in training)."""

    def __init__(self, name: str, network: nn.Module, divisor: int, deep_supervision: bool):
        super().__init__()
        self.name = name
        self.net = network
        self.size_divisor = (divisor, divisor, divisor)
        # Norm layers need > 1 voxel at the bottleneck: at least 2 along every axis there.
        self.min_size = (2 * divisor, 2 * divisor, 2 * divisor)
        self.deep_supervision = deep_supervision

    def forward_core(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of the wrapped net as a list, highest resolution first."""
        output = self.net(x)
        # MedNeXt with deep supervision returns (full, next, ...) in training mode.
        return list(output) if isinstance(output, (tuple, list)) else [output]

    def describe(self, input_size: Sequence[int]) -> dict[str, Any]:
        """Sizes and parameters; MONAI nets report no per-stage feature maps."""
        info = super().describe(input_size)
        info["network"] = f"MONAI {self.name}"
        return info


def _unet(in_channels: int, out_channels: int, **kwargs: Any) -> tuple[nn.Module, int, bool]:
    from monai.networks.nets import UNet

    args = {
        "channels": (16, 32, 64, 128, 256),
        "strides": (2, 2, 2, 2),
        "num_res_units": 2,
        "norm": "INSTANCE",
    } | kwargs
    divisor = 1
    for stride in args["strides"]:
        divisor *= int(stride)
    return (
        UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **args),
        divisor,
        False,
    )


def _segresnet(in_channels: int, out_channels: int, **kwargs: Any) -> tuple[nn.Module, int, bool]:
    from monai.networks.nets import SegResNet

    args = {"init_filters": 16, "blocks_down": (1, 2, 2, 4), "blocks_up": (1, 1, 1)} | kwargs
    divisor = 2 ** (len(args["blocks_down"]) - 1)
    return (
        SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **args),
        divisor,
        False,
    )


def _swinunetr(in_channels: int, out_channels: int, **kwargs: Any) -> tuple[nn.Module, int, bool]:
    import importlib.util

    from monai.networks.nets import SwinUNETR

    # MONAI imports einops lazily, so without it SwinUNETR fails only at the first forward.
    if importlib.util.find_spec("einops") is None:
        raise ImportError("SwinUNETR needs the optional package einops: pip install einops")
    # feature_size must be a multiple of 12; 24 is MONAI's default (the paper variants use 48).
    args = {"feature_size": 24, "use_v2": True} | kwargs
    divisor = int(args.get("patch_size", 2)) ** 5
    return (
        SwinUNETR(in_channels=in_channels, out_channels=out_channels, spatial_dims=3, **args),
        divisor,
        False,
    )


def _mednext(in_channels: int, out_channels: int, **kwargs: Any) -> tuple[nn.Module, int, bool]:
    from monai.networks.nets import MedNeXt

    # MedNeXt-S (arXiv 2303.09975): 32 filters, expansion 2, 2 blocks everywhere, kernel 3.
    args = {"init_filters": 32, "kernel_size": 3, "deep_supervision": True} | kwargs
    divisor = 2 ** len(args.get("blocks_down", (2, 2, 2, 2)))
    network = MedNeXt(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **args)
    return network, divisor, bool(args["deep_supervision"])


MonaiBuilder = Callable[..., tuple[nn.Module, int, bool]]
MONAI_NETWORKS: dict[str, MonaiBuilder] = {
    "UNet": _unet,
    "SegResNet": _segresnet,
    "SwinUNETR": _swinunetr,
    "MedNeXt": _mednext,
}


def available_networks() -> tuple[str, ...]:
    """Every name `build_network` accepts: the presets, then the MONAI networks."""
    return (*PRESETS, *MONAI_NETWORKS)


def build_network(
    name: str, in_channels: int, out_channels: int, **overrides: Any
) -> SegmentationNetwork:
    """Build a network by preset or MONAI name.

    For a preset, `overrides` replace `ResEncPreset` fields (e.g. `features_per_stage`,
    `deep_supervision=False`); for a MONAI net they are constructor arguments on top of
    tumorscale's small defaults. Input (B, in_channels, D, H, W) of any size; output logits
    with `out_channels` channels (see `SegmentationNetwork`).
    """
    if in_channels < 1 or out_channels < 1:
        raise ValueError(f"{name}: need in_channels >= 1 and out_channels >= 1")
    if name in PRESETS:
        return ResEncUNet(get_preset(name).with_overrides(**overrides), in_channels, out_channels)
    if name not in MONAI_NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of {list(available_networks())}")
    try:
        network, divisor, deep_supervision = MONAI_NETWORKS[name](
            in_channels, out_channels, **overrides
        )
    except TypeError as error:
        raise ValueError(f"{name}: invalid override(s) {sorted(overrides)}: {error}") from error
    return MonaiNetwork(name, network, divisor, deep_supervision)


def has_deep_supervision(network: nn.Module) -> bool:
    """Whether `network` returns several resolutions in training mode (unwraps DDP/compile)."""
    return bool(getattr(unwrap(network), "deep_supervision", False))


def unwrap(network: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel and/or torch.compile wrapper."""
    while True:
        inner = getattr(network, "module", None) or getattr(network, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return network
        network = inner
