"""Training: configuration, the loop, checkpoints with bit-identical resume, and DDP."""

from tumorscale.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from tumorscale.train.config import TrainConfig, dump_config, load_config
from tumorscale.train.loop import Progress, TrainResult, train

__all__ = [
    "CHECKPOINT_NAME",
    "Progress",
    "TrainConfig",
    "TrainResult",
    "dump_config",
    "load_checkpoint",
    "load_config",
    "save_checkpoint",
    "train",
]
