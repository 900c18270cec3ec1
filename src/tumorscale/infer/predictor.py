"""Whole-case prediction: preprocess, sliding window (+ TTA), back onto the CT, post-process.

    predictor = Predictor("model.pt", tta=True, overlap=0.5)
    result = predictor.predict(read_nifti("ct.nii.gz"))
    write_nifti(result.lesion_volume("liver"), "liver_lesion.nii.gz")  # input's own geometry

Out-of-memory on a GPU: the window batch is halved and the case retried (the smaller batch is
kept for later cases); at one window per batch the case falls back to the CPU (later cases try
the GPU again). Each fallback emits a `warnings.warn` and is recorded in `settings`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tumorscale.infer.postprocess import (
    PostprocessOptions,
    lesion_sizes,
    postprocess_lesions,
)
from tumorscale.infer.preprocess import (
    InputGridPrediction,
    PreparedInput,
    model_grid_box,
    prepare_input,
    to_input_grid,
)
from tumorscale.infer.sliding_window import (
    ALL_AXES,
    SIGMA_SCALE,
    mirror_combinations,
    sliding_window_inference,
)
from tumorscale.io import Geometry, Volume
from tumorscale.models import ModelSpec, load_model
from tumorscale.models.compute import bf16_runs_on, memory_layout
from tumorscale.organs import ORGANS

_OOM = torch.cuda.OutOfMemoryError  # defined on CPU-only builds too
ORGAN_BOX_MARGIN_MM = 10.0  # beyond the organ masks: lesions that touch an organ may reach out


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else as torch reads it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def tumor_organs(spec: ModelSpec) -> dict[str, int]:
    """Organ -> output channel of its lesion class (`<organ>_lesion`), in channel order."""
    by_file = {organ.lesion_file: name for name, organ in ORGANS.items()}
    return {by_file[c]: i for i, c in enumerate(spec.class_names) if c in by_file}


def organ_channels(spec: ModelSpec) -> dict[str, int]:
    """Organ -> output channel of the organ itself, for models trained with organ classes."""
    return {c: i for i, c in enumerate(spec.class_names) if c in ORGANS}


def _checked_mask(organ: str, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"{organ} mask shape {mask.shape} is not the CT grid {shape}")
    return mask


@dataclass
class CasePrediction:
    """One case's prediction, per tumor organ of the model.

    Frame: every array is on the input CT's canonical RAS grid (`ct.array`'s grid after
    `read_nifti`), shape `grid_shape`, voxel-to-RAS `affine`; `lesion_volume(organ)` wraps a
    mask with the input's `source` geometry so `io.write_nifti` writes it in the input file's own
    orientation, affine and header. lesion_masks: uint8 0/1 after post-processing.
    probabilities: tumor-class probability (float32, before post-processing) when asked for.
    max_probability: the largest tumor-class probability on the model grid (before
    post-processing; the resized map's maximum can only be lower).
    volume_mm3 / n_lesions / largest_diameter_mm: of the post-processed mask
    (26-connected lesions, equivalent-sphere diameter). settings: how it was made.
    """

    affine: np.ndarray
    source: Geometry | None
    lesion_masks: dict[str, np.ndarray]
    max_probability: dict[str, float]
    volume_mm3: dict[str, float]
    n_lesions: dict[str, int]
    largest_diameter_mm: dict[str, float]
    settings: dict[str, Any]
    probabilities: dict[str, np.ndarray] | None = None

    @property
    def organs(self) -> tuple[str, ...]:
        return tuple(self.lesion_masks)

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        first = next(iter(self.lesion_masks.values()))
        return tuple(int(n) for n in first.shape)  # type: ignore[return-value]

    def lesion_volume(self, organ: str) -> Volume:
        """The organ's lesion mask as a Volume that `write_nifti` puts in the input geometry."""
        return Volume(self.lesion_masks[organ], self.affine, self.source)

    def probability_volume(self, organ: str) -> Volume:
        """The organ's tumor probability map (float32) as a writable Volume."""
        if self.probabilities is None:
            raise ValueError("probabilities were not kept (save_probabilities=False)")
        return Volume(self.probabilities[organ], self.affine, self.source)

    def organ_rows(self) -> list[dict[str, Any]]:
        """One plain row per organ: organ, volume_mm3, n_lesions, largest_diameter_mm,
        max_probability (what predictions.csv holds besides the case id)."""
        return [
            {
                "organ": organ,
                "volume_mm3": self.volume_mm3[organ],
                "n_lesions": self.n_lesions[organ],
                "largest_diameter_mm": self.largest_diameter_mm[organ],
                "max_probability": self.max_probability[organ],
            }
            for organ in self.organs
        ]


@dataclass
class _RunState:
    """Where and how windows run now; fallbacks taken for the current case."""

    device: torch.device
    window_batch_size: int
    fallbacks: list[str] = field(default_factory=list)


class Predictor:
    """Predicts lesion masks for CT volumes with one model (see the module docstring).

    model: a model file path, or (network, spec). device: 'auto', 'cpu', 'cuda', 'cuda:1', ...
    tta: mirror test-time augmentation over every flip of `mirror_axes` (default all three:
    8 passes; logits averaged). overlap: sliding-window overlap in [0, 1).
    window_batch_size: windows per forward pass. bf16: bfloat16 autocast on CUDA and on CPUs
    with native bfloat16 (2-3x faster on an AVX-512 BF16 CPU; `models.compute`).
    window_size_vox: sliding-window size (default: the model's training patch).
    """

    def __init__(
        self,
        model: str | Path | tuple[nn.Module, ModelSpec],
        *,
        device: str | torch.device = "auto",
        tta: bool = True,
        mirror_axes: Sequence[int] = ALL_AXES,
        overlap: float = 0.5,
        window_batch_size: int = 2,
        postprocess: PostprocessOptions | None = None,
        save_probabilities: bool = False,
        bf16: bool = True,
        window_size_vox: Sequence[int] | None = None,
    ) -> None:
        if isinstance(model, (str, Path)):
            network, spec = load_model(model)
        else:
            network, spec = model
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        if window_batch_size < 1:
            raise ValueError(f"window_batch_size must be >= 1, got {window_batch_size}")
        self.spec = spec
        self.device = resolve_device(device)
        self.network = network.to(self.device).eval()
        self.tta = tta
        self.mirror_axes = tuple(sorted(set(mirror_axes))) if tta else ()
        mirror_combinations(self.mirror_axes)  # validates the axes now, not mid-batch
        self.overlap = float(overlap)
        self.window_batch_size = int(window_batch_size)  # halved for good after a GPU OOM
        self.cpu_window_batch_size = int(window_batch_size)  # what a CPU fallback uses
        self.postprocess = postprocess or PostprocessOptions()
        self.save_probabilities = save_probabilities
        self.bf16 = bf16
        self.window_size = tuple(int(w) for w in (window_size_vox or spec.patch_size_vox))
        self.organs = tumor_organs(spec)
        if not self.organs:
            raise ValueError(f"model has no '<organ>_lesion' class: {spec.class_names}")

    # ------------------------------------------------------------------ windows + fallback

    def _run_windows(
        self, image: torch.Tensor, device: torch.device, batch_size: int,
        region: Sequence[slice] | None = None,
    ) -> torch.Tensor:
        """Stitched logits (1, C, X, Y, Z) on `device` for the (1, 1, X, Y, Z) CPU `image`."""
        memory_format = memory_layout(device)
        # back on the GPU after a previous case's CPU fallback, in the device's layout
        self.network.to(device, memory_format=memory_format)
        return sliding_window_inference(
            image.to(device),
            self.network,
            self.window_size,
            overlap=self.overlap,
            batch_size=batch_size,
            mirror_axes=self.mirror_axes,
            sigma_scale=SIGMA_SCALE,
            bf16=self.bf16,
            memory_format=memory_format,
            region=region,
            pad_value=self.spec.preprocessing.pad_value,
        )

    def _logits(self, image: torch.Tensor, state: _RunState,
                region: Sequence[slice] | None = None) -> torch.Tensor:
        """Run windows, halving the batch then moving to CPU on CUDA out-of-memory."""
        while True:
            try:
                return self._run_windows(image, state.device, state.window_batch_size, region)
            except _OOM:
                if state.device.type == "cpu":
                    raise
                self._after_oom(state)

    def _after_oom(self, state: _RunState) -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if state.window_batch_size > 1:
            state.window_batch_size //= 2
            self.window_batch_size = state.window_batch_size  # later cases start smaller
            message = (
                f"out of GPU memory on {state.device}; retrying with "
                f"{state.window_batch_size} window(s) per batch"
            )
        else:
            message = f"out of GPU memory on {state.device} at 1 window per batch; using the CPU"
            state.device = torch.device("cpu")
            state.window_batch_size = self.cpu_window_batch_size
        state.fallbacks.append(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    # ------------------------------------------------------------------ one case

    def predict(
        self, ct: Volume, organ_masks: Mapping[str, np.ndarray] | None = None
    ) -> CasePrediction:
        """Lesion masks and per-organ numbers for `ct` (HU; any orientation).

        organ_masks: organ name -> binary mask on `ct`'s canonical RAS grid (the grid of
        `read_nifti(...)`'s array); they take precedence over the model's own organ classes for
        `restrict_to_organ`. See `CasePrediction` for the output frame.
        """
        prepared = prepare_input(ct, self.spec)
        state = _RunState(self.device, self.window_batch_size)
        box = self._organ_box(prepared, organ_masks)
        image = torch.from_numpy(prepared.image)[None, None]
        logits = self._logits(image, state, box)
        probabilities = torch.softmax(logits[0], dim=0)
        del logits
        channels = list(self.organs.values())
        grid = to_input_grid(probabilities, prepared, channels, self.save_probabilities)
        del probabilities
        result = self._assemble(prepared, grid, organ_masks)
        result.settings = self._settings(state) | result.settings
        result.settings["windows_box_vox"] = [[part.start, part.stop] for part in box]
        return result

    def _organ_box(self, prepared: PreparedInput, organ_masks: Mapping[str, np.ndarray] | None
                   ) -> tuple[slice, slice, slice]:
        """Where windows must run: the whole model grid, or, when every tumor organ has an input
        mask and lesions are kept only where they touch it, the masks' box plus a margin. Only
        the whole-volume windows overlapping it run, so inside it the logits are unchanged."""
        full = tuple(slice(0, n) for n in prepared.model_shape)
        masks = [organ_masks.get(organ) for organ in self.organs] if organ_masks else [None]
        if not self.postprocess.restrict_to_organ or any(mask is None for mask in masks):
            return full  # type: ignore[return-value]
        checked = [_checked_mask(organ, mask, prepared.input_shape)
                   for organ, mask in zip(self.organs, masks, strict=True)]
        box = model_grid_box(checked, prepared, ORGAN_BOX_MARGIN_MM)
        return box if box is not None else full  # type: ignore[return-value]

    def _organ_mask(
        self,
        organ: str,
        labels: np.ndarray,
        organ_masks: Mapping[str, np.ndarray] | None,
        shape: tuple[int, ...],
    ) -> tuple[np.ndarray | None, str]:
        if organ_masks is not None and organ in organ_masks:
            return _checked_mask(organ, organ_masks[organ], shape), "input"
        channel = organ_channels(self.spec).get(organ)
        if channel is not None:
            return labels == channel, "model"
        return None, "none"

    def _assemble(
        self,
        prepared: PreparedInput,
        grid: InputGridPrediction,
        organ_masks: Mapping[str, np.ndarray] | None,
    ) -> CasePrediction:
        spacing = prepared.input_spacing_mm
        result = CasePrediction(
            prepared.input_affine,
            prepared.source,
            {},
            {},
            {},
            {},
            {},
            {"postprocess": {}},
            {} if self.save_probabilities else None,
        )
        for organ, channel in self.organs.items():
            organ_mask, origin = self._organ_mask(
                organ, grid.labels, organ_masks, prepared.input_shape
            )
            kept = postprocess_lesions(
                grid.labels == channel, spacing, self.postprocess, organ_mask, origin
            )
            sizes = lesion_sizes(kept.mask, spacing)
            result.lesion_masks[organ] = kept.mask.view(np.uint8)
            result.max_probability[organ] = grid.max_probability[channel]
            result.volume_mm3[organ] = sizes.volume_mm3
            result.n_lesions[organ] = sizes.n_lesions
            result.largest_diameter_mm[organ] = sizes.largest_diameter_mm
            result.settings["postprocess"][organ] = kept.steps
            if result.probabilities is not None:
                result.probabilities[organ] = grid.probabilities[channel]
        return result

    def _settings(self, state: _RunState) -> dict[str, Any]:
        return {
            "tta": self.tta,
            "mirror_axes": list(self.mirror_axes),
            "n_mirrors": len(mirror_combinations(self.mirror_axes)) if self.tta else 1,
            "tta_average": "logits",
            "overlap": self.overlap,
            "window_size_vox": list(self.window_size),
            "blending": f"gaussian sigma_scale={SIGMA_SCALE}",
            "window_batch_size": state.window_batch_size,
            "device": str(state.device),
            "bf16": self.bf16 and bf16_runs_on(state.device),
            "target_spacing_mm": list(self.spec.preprocessing.spacing_mm),
            "back_resampling": "trilinear on softmax probabilities, then argmax",
            "fallbacks": list(state.fallbacks),
            "min_radius_mm": self.postprocess.min_radius_mm,
            "restrict_to_organ": self.postprocess.restrict_to_organ,
        }
