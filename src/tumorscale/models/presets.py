"""Residual-encoder U-Net presets as data: one record per preset, no class per preset.

A preset is the per-stage lists that define a `ResEncUNet` (the dynamic_network_architectures
pattern): features, encoder/decoder blocks, strides and kernel sizes, plus the patch size it is
planned for. `M` and `L` follow nnU-Net's ResEnc planners (frameworks-notes §1.9;
`residual_encoder_unet_planners.py`: encoder blocks (1, 3, 4, 6, 6, 6, ...), decoder 1 conv per
stage, 32 base features doubling up to 320, InstanceNorm affine, LeakyReLU, stride 2 per stage).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class ResEncPreset:
    """Per-stage description of a 3-D residual-encoder U-Net.

    Stage 0 works at full resolution (stride 1); stage s downsamples by `strides[s]` (per axis)
    in its first residual block. The decoder has one stage per encoder stage but the last.
    """

    name: str
    features_per_stage: tuple[int, ...]
    blocks_per_stage_encoder: tuple[int, ...]
    blocks_per_stage_decoder: tuple[int, ...]
    strides: tuple[Triple, ...]
    kernel_sizes: tuple[Triple, ...]
    # The patch (voxels, at the target spacing) the preset is planned for; a default, not a limit.
    patch_size_vox: Triple
    deep_supervision: bool = True
    # InstanceNorm after the stem conv (nnU-Net's stem is conv-norm-act). Off for a pointwise
    # stem: after a 1x1x1 conv of one input channel it leaves every channel +-the patch's
    # z-scored intensity, so the network never sees absolute HU (benchmarks/RESULTS.md).
    stem_norm: bool = True
    note: str = ""

    def __post_init__(self) -> None:
        n_stages = len(self.features_per_stage)
        lengths = {
            "blocks_per_stage_encoder": (len(self.blocks_per_stage_encoder), n_stages),
            "blocks_per_stage_decoder": (len(self.blocks_per_stage_decoder), n_stages - 1),
            "strides": (len(self.strides), n_stages),
            "kernel_sizes": (len(self.kernel_sizes), n_stages),
        }
        for field_name, (got, wanted) in lengths.items():
            if got != wanted:
                raise ValueError(
                    f"preset {self.name!r}: {field_name} has {got} entries, expected {wanted} "
                    f"for {n_stages} stages"
                )
        if n_stages < 2:
            raise ValueError(f"preset {self.name!r}: needs at least 2 stages, got {n_stages}")
        # Stage 0 may be the stem alone (0 blocks) when it does not downsample.
        first_ok = self.blocks_per_stage_encoder[0] >= (0 if self.strides[0] == (1, 1, 1) else 1)
        if (
            not first_ok
            or min(self.blocks_per_stage_encoder[1:]) < 1
            or min(self.blocks_per_stage_decoder) < 1
        ):
            raise ValueError(
                f"preset {self.name!r}: every stage needs at least one block "
                "(stage 0 may have 0 when its stride is 1)"
            )

    @property
    def n_stages(self) -> int:
        """Number of encoder stages (resolutions)."""
        return len(self.features_per_stage)

    @property
    def size_divisor(self) -> Triple:
        """Product of the strides per axis: input sizes that need no internal padding."""
        divisor = [1, 1, 1]
        for stride in self.strides:
            divisor = [d * s for d, s in zip(divisor, stride, strict=True)]
        return (divisor[0], divisor[1], divisor[2])

    def with_overrides(self, **overrides: Any) -> ResEncPreset:
        """A copy with some fields replaced; ints in `strides`/`kernel_sizes` mean isotropic."""
        valid = {f.name for f in dataclasses.fields(self)} - {"name"}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(
                f"preset {self.name!r}: unknown override(s) {unknown}; valid: {sorted(valid)}"
            )
        return dataclasses.replace(self, **_normalise(overrides))

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form (tuples become lists) for JSON and reports."""
        return json_ready(dataclasses.asdict(self))


def _triple(value: int | Sequence[int]) -> Triple:
    """An isotropic int or a 3-sequence as a 3-tuple of ints."""
    if isinstance(value, int):
        return (value, value, value)
    values = tuple(int(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"expected an int or 3 values, got {value!r}")
    return (values[0], values[1], values[2])


def _normalise(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Coerce list-valued overrides (from YAML/JSON) to the preset's tuple types."""
    normalised: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in ("strides", "kernel_sizes"):
            value = tuple(_triple(v) for v in value)
        elif key == "patch_size_vox":
            value = _triple(value)
        elif key in ("features_per_stage", "blocks_per_stage_encoder", "blocks_per_stage_decoder"):
            value = tuple(int(v) for v in value)
        normalised[key] = value
    return normalised


def json_ready(value: Any) -> Any:
    """Tuples to lists, recursively (dicts keep their keys)."""
    if isinstance(value, Mapping):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value


def _isotropic(n_stages: int, kernel: int = 3) -> tuple[tuple[Triple, ...], tuple[Triple, ...]]:
    """Strides (1, 2, 2, ...) and constant kernels for an isotropic 3-D patch."""
    strides = ((1, 1, 1),) + ((2, 2, 2),) * (n_stages - 1)
    kernels = ((kernel, kernel, kernel),) * n_stages
    return strides, kernels


_S4 = _isotropic(4)[0]
_S6, _K6 = _isotropic(6)

PRESETS: dict[str, ResEncPreset] = {
    preset.name: preset
    for preset in (
        ResEncPreset(
            name="tiny",
            # CPU-sized. Stage 0 is the stem alone and works pointwise (k1): full-resolution 3x3x3
            # convs dominate CPU time (the k3 version ran 3.4 it/s at 48³ batch 2 on 2 cores, this
            # one 5.8) and it reached a higher held-out DSC per second (benchmarks/RESULTS.md).
            features_per_stage=(8, 16, 32, 64),
            blocks_per_stage_encoder=(0, 1, 1, 1),
            blocks_per_stage_decoder=(1, 1, 1),
            strides=_S4,
            kernel_sizes=((1, 1, 1),) + ((3, 3, 3),) * 3,
            patch_size_vox=(64, 64, 64),
            stem_norm=False,
            note="CPU demo and tests; not a research model",
        ),
        ResEncPreset(
            name="S",
            # Same 6-stage topology as M (total stride 32) at half width, fewer blocks: a
            # tumorscale choice for CPU runs and small GPUs, not an nnU-Net preset.
            features_per_stage=(16, 32, 64, 128, 160, 160),
            blocks_per_stage_encoder=(1, 2, 2, 3, 3, 3),
            blocks_per_stage_decoder=(1, 1, 1, 1, 1),
            strides=_S6,
            kernel_sizes=_K6,
            patch_size_vox=(96, 96, 96),
            note="tumorscale's small model: M's topology at half width",
        ),
        ResEncPreset(
            name="M",
            # nnU-Net ResEnc M (frameworks-notes §1.9, nnUNetPlannerResEncM): 32 base features
            # doubling to 320, encoder blocks (1, 3, 4, 6, 6, 6), 1 decoder conv per stage,
            # kernel 3, stride 2; 6 stages for the paper's 96³ patch (paper-notes §1.3).
            features_per_stage=(32, 64, 128, 256, 320, 320),
            blocks_per_stage_encoder=(1, 3, 4, 6, 6, 6),
            blocks_per_stage_decoder=(1, 1, 1, 1, 1),
            strides=_S6,
            kernel_sizes=_K6,
            patch_size_vox=(96, 96, 96),
            note="nnU-Net ResEnc M; the paper's scaling-study model",
        ),
        ResEncPreset(
            name="L",
            # nnU-Net ResEnc L uses the same per-stage lists as M; only its 24 GB VRAM target
            # (vs 8 GB) buys a larger patch. 128³ (~2.4x the voxels of 96³) is our default for
            # 1.5 mm isotropic CT; nnU-Net would plan it per dataset.
            features_per_stage=(32, 64, 128, 256, 320, 320),
            blocks_per_stage_encoder=(1, 3, 4, 6, 6, 6),
            blocks_per_stage_decoder=(1, 1, 1, 1, 1),
            strides=_S6,
            kernel_sizes=_K6,
            patch_size_vox=(128, 128, 128),
            note="nnU-Net ResEnc L: M's network with a larger patch",
        ),
    )
}


def get_preset(name: str) -> ResEncPreset:
    """The preset called `name` (`tiny`, `S`, `M`, `L`)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
