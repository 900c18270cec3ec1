"""Sliding-window inference with Gaussian blending, batched windows and mirror TTA.

Tile positions, scan order, padding and Gaussian weights are MONAI's
(`monai.inferers.sliding_window_inference` with `mode="gaussian"`, `sigma_scale=0.125`), so the
stitched output equals MONAI's within float rounding. Ours instead of MONAI's because it adds
mirror TTA inside the window loop and does less work per window: one preallocated batch
buffer, the weight map and its normaliser computed once, a fused multiply-add per window.

Mirror TTA averages *logits* over the flips, as nnU-Net v2 does
(`_internal_maybe_mirror_and_predict`: sum of flipped-back logits / number of flips); the
softmax comes after stitching.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from monai.data.utils import compute_importance_map

from tumorscale.models.compute import autocast

Triple = tuple[int, int, int]
SIGMA_SCALE = 0.125  # MONAI's default; nnU-Net's 1/8 of the tile as well
ALL_AXES: Triple = (0, 1, 2)
MISSING_LOGIT = -1.0e4  # foreground logit where a region-limited run did not reach: softmax 0


def scan_interval(size: int, window: int, overlap: float) -> int:
    """Step between window starts along one axis (MONAI's rule: int(window * (1 - overlap)))."""
    if window == size:
        return window
    return max(int(window * (1 - overlap)), 1)


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start index of every window along one axis of `size` voxels (`window` <= `size`).

    Windows step by `scan_interval` until one reaches the end; the last is shifted back to end
    exactly at `size` (MONAI's `dense_patch_slices`).
    """
    step = scan_interval(size, window, overlap)
    starts = []
    index = 0
    while True:
        start = index * step
        starts.append(start - max(start + window - size, 0))
        if start + window >= size:
            return starts
        index += 1


def window_grid(size: Sequence[int], window: Sequence[int], overlap: float) -> list[Triple]:
    """All window starts (i, j, k) in MONAI's scan order (last axis fastest)."""
    per_axis = [window_starts(s, w, overlap) for s, w in zip(size, window, strict=True)]
    return [(i, j, k) for i, j, k in itertools.product(*per_axis)]


def mirror_combinations(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of the spatial `axes` (identity first): 8 for all three axes."""
    axes = tuple(sorted(set(int(a) for a in axes)))
    if any(a not in ALL_AXES for a in axes):
        raise ValueError(f"mirror axes must be among {ALL_AXES}, got {axes}")
    return [combo for n in range(len(axes) + 1) for combo in itertools.combinations(axes, n)]


def _padding(size: Sequence[int], window: Sequence[int]) -> list[int]:
    """F.pad widths (last axis first) raising each axis to the window, split as MONAI does."""
    pad: list[int] = []
    for s, w in zip(reversed(size), reversed(window), strict=True):
        diff = max(w - s, 0)
        pad += [diff // 2, diff - diff // 2]
    return pad


def _first(output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    # Networks in training mode return a deep-supervision list; full resolution comes first.
    return output if isinstance(output, torch.Tensor) else output[0]


class _WindowRunner:
    """Runs the network on a batch of windows, with optional mirror TTA and bf16 autocast."""

    def __init__(
        self,
        network: Callable[[torch.Tensor], torch.Tensor],
        flips: Sequence[tuple[int, ...]],
        bf16: bool,
        device: torch.device,
    ) -> None:
        self.network = network
        self.flips = [tuple(a + 2 for a in combo) for combo in flips] or [()]
        self.amp = "bf16" if bf16 else "none"
        self.device = device

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.amp):
            return _first(self.network(batch)).float()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Summed (not averaged: the caller folds 1/n into the weights) logits over the flips."""
        total: torch.Tensor | None = None
        for dims in self.flips:
            if not dims:
                logits = self._forward(batch)
            else:
                logits = torch.flip(self._forward(torch.flip(batch, dims)), dims)
            total = logits if total is None else total.add_(logits)
        assert total is not None
        return total


def _batches(starts: list[Triple], size: int) -> Iterator[list[Triple]]:
    for first in range(0, len(starts), size):
        yield starts[first : first + size]


def sliding_window_inference(
    inputs: torch.Tensor,
    network: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
    window_size: Sequence[int],
    *,
    overlap: float = 0.5,
    batch_size: int = 2,
    mirror_axes: Sequence[int] | None = None,
    sigma_scale: float = SIGMA_SCALE,
    bf16: bool = False,
    progress: Callable[[int, int], None] | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    region: Sequence[slice] | None = None,
    pad_value: float = 0.0,
) -> torch.Tensor:
    """Gaussian-blended sliding-window logits of `network` over a whole volume.

    inputs: (1, C_in, X, Y, Z) float tensor, already on the network's device (the output is
      accumulated there). window_size: (wx, wy, wz) voxels. overlap in [0, 1): fraction of a
      window shared with its neighbour (MONAI's meaning). batch_size: windows per forward pass.
    mirror_axes: None or () for no TTA; else the spatial axes (0, 1, 2 = X, Y, Z) whose every
      flip combination is also predicted (all three: 8 passes per window); logits are averaged.
    bf16: autocast the network to bfloat16 on CUDA and on CPUs with native bfloat16 (see
        `models.compute.autocast`); stitching and accumulation stay float32.
    progress(done, total): called after each batch of windows.
    memory_format: layout of the window batches; match the network's (`memory_layout`).
    region: (sx, sy, sz) slices; only the windows of the whole-volume grid that overlap it run.
      Every voxel all of whose windows ran gets exactly its whole-volume logits (that includes
      the region); elsewhere class 0 (background) is certain.
    pad_value: the input value a volume smaller than a window is padded with (MONAI's `cval`);
      pass the preprocessing's `pad_value`, air, as training patches are padded.
    Returns float32 logits (1, C_out, X, Y, Z) on the input's device.
    """
    if inputs.ndim != 5 or inputs.shape[0] != 1:
        raise ValueError(f"inputs must be (1, C, X, Y, Z), got {tuple(inputs.shape)}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    window = tuple(int(w) for w in window_size)
    original = tuple(int(s) for s in inputs.shape[2:])
    pad = _padding(original, window)
    if any(pad):  # only volumes smaller than a window are copied (MONAI pads them the same way)
        inputs = F.pad(inputs, pad, mode="constant", value=pad_value)
        region = None  # a single window covers the volume
    with torch.inference_mode():
        output = _stitch(
            inputs,
            network,
            window,
            overlap,
            batch_size,
            mirror_axes,
            sigma_scale,
            bf16,
            progress,
            memory_format,
            region,
        )
    if any(pad):
        crop = [slice(pad[2 * (2 - a)], pad[2 * (2 - a)] + original[a]) for a in range(3)]
        output = output[(slice(None), slice(None), *crop)]
    return output


def _stitch(
    inputs: torch.Tensor,
    network: Callable,
    window: Triple,
    overlap: float,
    batch_size: int,
    mirror_axes: Sequence[int] | None,
    sigma_scale: float,
    bf16: bool,
    progress: Callable[[int, int], None] | None,
    memory_format: torch.memory_format = torch.contiguous_format,
    region: Sequence[slice] | None = None,
) -> torch.Tensor:
    """The window loop on a volume at least one window large; (1, C_out, X, Y, Z) float32."""
    device = inputs.device
    size = tuple(int(s) for s in inputs.shape[2:])
    every = window_grid(size, window, overlap)
    starts = every if region is None else [s for s in every if _overlaps(s, window, region)]
    flips = mirror_combinations(mirror_axes) if mirror_axes else [()]
    runner = _WindowRunner(network, flips, bf16, device)
    weight = compute_importance_map(
        window, mode="gaussian", sigma_scale=sigma_scale, device=device, dtype=torch.float32
    )
    normaliser = _weight_sum(every, window, weight, size)
    # Folding the TTA mean into the weight saves one pass over every window's logits.
    blend = weight / len(flips) if len(flips) > 1 else weight
    buffer = torch.empty(
        (min(batch_size, len(starts)), inputs.shape[1], *window), dtype=inputs.dtype, device=device
    ).contiguous(memory_format=memory_format)
    output: torch.Tensor | None = None
    done = 0
    for group in _batches(starts, batch_size):
        batch = buffer[: len(group)]
        for slot, (i, j, k) in enumerate(group):
            batch[slot].copy_(inputs[0, :, i : i + window[0], j : j + window[1], k : k + window[2]])
        logits = runner(batch)
        if output is None:
            output = torch.zeros((1, logits.shape[1], *size), dtype=torch.float32, device=device)
        for slot, (i, j, k) in enumerate(group):
            region = output[0, :, i : i + window[0], j : j + window[1], k : k + window[2]]
            region.addcmul_(logits[slot], blend)
        done += len(group)
        if progress is not None:
            progress(done, len(starts))
    assert output is not None
    output.div_(normaliser)
    if len(starts) < len(every):  # voxels missing some of their windows: certain background
        partial = _weight_sum(starts, window, weight, size) < normaliser * (1 - 1e-5)
        output[0, 0][partial] = 0.0
        output[0, 1:, partial] = MISSING_LOGIT
    return output


def _weight_sum(starts: Sequence[Triple], window: Triple, weight: torch.Tensor,
                size: Triple) -> torch.Tensor:
    total = torch.zeros(size, dtype=torch.float32, device=weight.device)
    for i, j, k in starts:
        total[i : i + window[0], j : j + window[1], k : k + window[2]] += weight
    return total


def _overlaps(start: Triple, window: Triple, region: Sequence[slice]) -> bool:
    return all(s < part.stop and part.start < s + w
               for s, w, part in zip(start, window, region, strict=True))
