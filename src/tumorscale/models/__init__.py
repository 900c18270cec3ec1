"""Networks for tumor segmentation: ResEnc U-Net presets, MONAI nets, losses and model files."""

from tumorscale.models.base import SegmentationNetwork, count_parameters
from tumorscale.models.factory import (
    available_networks,
    build_network,
    has_deep_supervision,
    unwrap,
)
from tumorscale.models.losses import (
    DeepSupervisionLoss,
    deep_supervision_weights,
    dice_ce_loss,
    downsample_target,
)
from tumorscale.models.presets import PRESETS, ResEncPreset, get_preset
from tumorscale.models.resenc_unet import ResEncUNet
from tumorscale.models.spec import (
    ModelFileError,
    ModelSpec,
    class_names_for,
    load_model,
    load_model_with_extra,
    save_model,
)

__all__ = [
    "PRESETS",
    "DeepSupervisionLoss",
    "ModelFileError",
    "ModelSpec",
    "ResEncPreset",
    "ResEncUNet",
    "SegmentationNetwork",
    "available_networks",
    "build_network",
    "class_names_for",
    "count_parameters",
    "deep_supervision_weights",
    "dice_ce_loss",
    "downsample_target",
    "get_preset",
    "has_deep_supervision",
    "load_model",
    "load_model_with_extra",
    "save_model",
    "unwrap",
]
