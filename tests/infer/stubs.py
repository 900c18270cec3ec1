"""A stub network whose output is known exactly from its input, for the prediction tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tumorscale.preprocessing import Preprocessing, scale_intensity


class IntensityClasses(nn.Module):
    """Each voxel's class is the nearest of fixed HU values read through the default
    preprocessing (voxel-wise, so flip-equivariant and its mask known exactly from the input)."""

    def __init__(self, centres_hu: tuple[float, ...]) -> None:
        super().__init__()
        record = Preprocessing()
        scaled = scale_intensity(np.asarray(centres_hu, dtype=np.float32), record)
        self.register_buffer("centres", torch.from_numpy(scaled).view(1, -1, 1, 1, 1))
        self.sharpness = 200.0 / record.intensity_span**2  # as steep as on a [0, 1] window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.sharpness * (x - self.centres) ** 2
