"""How a network runs on a device: mixed precision and memory layout, shared by train and infer.

Measured on a 2-core AVX-512 CPU (`benchmarks/RESULTS.md`): channels-last 3-D tensors make
oneDNN's 3-D convolutions of the small networks 1.3-1.8x faster (`memory_layout`), and bfloat16
autocast another 1.2-2.5x where the CPU
has native bfloat16 instructions; without them bfloat16 is emulated and slower, so it is skipped.
Prediction uses CPU bfloat16 by default; training only when asked (`TrainConfig.cpu_bf16`):
oneDNN's bfloat16 convolution backward gave non-finite gradients at 2³ feature maps (preset S).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from functools import cache

import torch

AMP_CHOICES = ("bf16", "fp16", "none")


@cache
def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX-512 BF16 or AMX)."""
    try:
        probe = torch.ops.mkldnn._is_mkldnn_bf16_supported
        return bool(torch.backends.mkldnn.is_available() and probe())
    except (AttributeError, RuntimeError):  # private probe: absent in some builds
        return False


def bf16_runs_on(device: torch.device) -> bool:
    """Whether `autocast(device, "bf16")` really runs in bfloat16 there."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())


def autocast(device: torch.device, amp: str) -> AbstractContextManager:
    """Autocast for `amp` on `device`: bf16/fp16 on CUDA, bf16 on CPUs that have it, else none."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {AMP_CHOICES}, not {amp!r}")
    if amp == "none":
        return nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
    if amp == "bf16" and bf16_runs_on(device):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def memory_layout(device: torch.device) -> torch.memory_format:
    """Channels-last 3-D on CPU, PyTorch's default on GPUs, for training and prediction alike.

    A fixed rule, never a timing: a timed choice could differ between two runs and, under
    bfloat16 especially, change their results. On 2 CPU cores channels-last makes a training
    step of `tiny` 1.7x, of `S` 1.3x and of the MONAI UNet 1.8x faster, a float32 prediction
    batch of `tiny` 2.2x and of `S` 1.3x (with `instance_norm.InstanceNorm3d`'s channels-last
    path; before it, `S` ran 0.9x).
    """
    return torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format
