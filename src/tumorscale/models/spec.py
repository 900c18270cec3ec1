"""Model files: the network's weights plus everything prediction needs to use them.

A model file is a `torch.save`d dict of plain data and tensors (loadable with
`weights_only=True`): a format marker, the `ModelSpec`, the state dict and optional extras.
`load_model` rebuilds the network from the spec alone.
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tumorscale import __version__
from tumorscale.errors import InputFileError
from tumorscale.io.atomic import atomic_path
from tumorscale.models.factory import build_network, unwrap
from tumorscale.models.presets import json_ready
from tumorscale.organs import ORGANS
from tumorscale.preprocessing import UNIT_RANGE, Preprocessing

FORMAT = "tumorscale-model"
# 2: the spec's preprocessing is one nested record (`preprocessing`); version 1 files hold flat
# `target_spacing_mm`, `hu_window` and `intensity_range` keys and load unchanged.
# 3: preset `tiny` lost its stem norm; `tiny` files of versions 1-2 load with `stem_norm=True`.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
LEGACY_PREPROCESSING_KEYS = ("target_spacing_mm", "hu_window", "intensity_range")


class ModelFileError(InputFileError):
    """A model file that cannot be loaded (missing, corrupt, foreign or incompatible)."""


@dataclass(frozen=True, init=False)
class ModelSpec:
    """What a trained model is: network, classes, and the preprocessing its inputs need.

    `class_names[i]` names output channel i; index 0 is always `background`. `preprocessing`
    is the record training used (`tumorscale.preprocessing.Preprocessing`): volumes are
    resampled to its spacing (x, y, z in RAS), intensities clipped to its HU window then scaled
    linearly to its intensity range. `patch_size_vox` is the training patch (voxels at the
    target spacing), also the default sliding-window size.

    The flat names of model files written before the record existed are accepted as keywords
    too: `target_spacing_mm`, `hu_window`, `intensity_range`.
    """

    network: str
    class_names: tuple[str, ...]
    network_overrides: Mapping[str, Any] = field(default_factory=dict)
    in_channels: int = 1
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    patch_size_vox: tuple[int, int, int] = (96, 96, 96)
    tumorscale_version: str = __version__

    def __init__(
        self,
        network: str,
        class_names: Sequence[str],
        *,
        network_overrides: Mapping[str, Any] | None = None,
        in_channels: int = 1,
        preprocessing: Preprocessing | None = None,
        patch_size_vox: Sequence[int] = (96, 96, 96),
        tumorscale_version: str = __version__,
        target_spacing_mm: Any = None,
        hu_window: Any = None,
        intensity_range: Any = None,
    ) -> None:
        record = (preprocessing or Preprocessing()).with_legacy(
            target_spacing_mm=target_spacing_mm, hu_window=hu_window,
            intensity_range=intensity_range,
        )  # fmt: skip
        values = {"network": network, "class_names": class_names,
                  "network_overrides": network_overrides or {}, "in_channels": in_channels,
                  "preprocessing": record, "patch_size_vox": patch_size_vox,
                  "tumorscale_version": tumorscale_version}  # fmt: skip
        for name, value in values.items():
            object.__setattr__(self, name, value)
        self.__post_init__()

    def __post_init__(self) -> None:
        names = tuple(self.class_names)
        if len(names) < 2 or names[0] != "background":
            raise ValueError(
                f"class_names must start with 'background' and name >= 1 class: {names}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"class_names has duplicates: {names}")
        _check_plain_data(self.network_overrides, "network_overrides")
        if not isinstance(self.preprocessing, Preprocessing):
            raise ValueError(f"preprocessing must be a Preprocessing, got {self.preprocessing!r}")
        # Normalise containers so specs compare equal after a save/load round trip.
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "network_overrides", dict(self.network_overrides))
        object.__setattr__(self, "patch_size_vox", tuple(int(v) for v in self.patch_size_vox))

    @property
    def out_channels(self) -> int:
        """Number of output channels (= classes including background)."""
        return len(self.class_names)

    def build(self) -> nn.Module:
        """A freshly initialised network as this spec describes it."""
        return build_network(
            self.network, self.in_channels, self.out_channels, **self.network_overrides
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, not tuples) for model files and JSON; the preprocessing record
        is the nested `preprocessing` mapping."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["preprocessing"] = self.preprocessing.to_dict()
        return json_ready(values)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Inverse of `to_dict`; also reads the flat `target_spacing_mm`, `hu_window` and
        `intensity_range` of model files written before the preprocessing record. Unknown keys
        are an error (a newer or foreign spec)."""
        values = dict(data)
        known = {f.name for f in dataclasses.fields(cls)} | set(LEGACY_PREPROCESSING_KEYS)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ModelSpec field(s) {unknown}")
        record = values.get("preprocessing")
        if isinstance(record, Mapping):
            values["preprocessing"] = Preprocessing.from_dict(record)
        elif "intensity_range" not in values:
            values["intensity_range"] = UNIT_RANGE  # the default when flat files were written
        return cls(**values)


def class_names_for(organs: Sequence[str], organ_classes: bool = False) -> tuple[str, ...]:
    """`background`, one `<organ>_lesion` class per organ, then (optionally) the organs.

    Tumor classes come first so their indices do not depend on whether organs are included.
    """
    unknown = [organ for organ in organs if organ not in ORGANS]
    if unknown or not organs:
        raise ValueError(
            f"unknown or no organ(s) {unknown or list(organs)}; choose from {list(ORGANS)}"
        )
    tumors = tuple(ORGANS[organ].lesion_file for organ in organs)
    return ("background", *tumors, *(tuple(organs) if organ_classes else ()))


def _check_plain_data(value: Any, where: str) -> None:
    """Reject values a `weights_only` load could not read back (classes, modules, ...)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, torch.Tensor):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {key!r}")
            _check_plain_data(item, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain_data(item, f"{where}[{index}]")
        return
    raise ValueError(f"{where}: {type(value).__name__} is not plain data (str/number/list/dict)")


def save_model(
    path: str | Path, network: nn.Module, spec: ModelSpec, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write `network`'s weights with `spec` (and plain-data `extra`) atomically to `path`."""
    extra = dict(extra or {})
    _check_plain_data(extra, "extra")
    state_dict = {key: value.detach().cpu() for key, value in unwrap(network).state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": spec.to_dict(),
        "state_dict": state_dict,
        "extra": json_ready(extra),
    }
    path = Path(path)
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)
    return path


def load_model(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelSpec]:
    """Rebuild the network from the file's spec and load its weights; returns (eval net, spec)."""
    network, spec, _ = load_model_with_extra(path, map_location)
    return network, spec


def load_model_with_extra(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelSpec, dict[str, Any]]:
    """Like `load_model`, also returning the `extra` dict saved with the model."""
    path = Path(path)
    payload = _read_payload(path, map_location)
    try:
        spec = _as_written(ModelSpec.from_dict(payload["spec"]), payload["format_version"])
        network = spec.build()
    except (TypeError, ValueError) as error:
        raise ModelFileError(path, f"invalid model spec: {error}") from error
    try:
        network.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise ModelFileError(
            path, f"weights do not fit network {spec.network!r}: {first_line}"
        ) from error
    return network.to(map_location).eval(), spec, dict(payload.get("extra") or {})


def _as_written(spec: ModelSpec, version: int) -> ModelSpec:
    """The spec of the network a file of `version` was trained with (presets changed since)."""
    if version < 3 and spec.network == "tiny" and "stem_norm" not in spec.network_overrides:
        return dataclasses.replace(spec, network_overrides={**spec.network_overrides,
                                                            "stem_norm": True})
    return spec


def _read_payload(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    """The saved dict, after checking it is a tumorscale model file of a known version."""
    if not path.is_file():
        raise ModelFileError(path, "no such model file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if zipfile.is_zipfile(path):  # a torch.save archive whose pickle holds arbitrary objects
            raise ModelFileError(
                path, "holds Python objects that a model file never contains (a training "
                "checkpoint.pt? predict with the run's model.pt)"
            ) from error
        raise ModelFileError(path, f"not a readable model file ({error})") from error
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelFileError(path, f"not a readable model file ({reason})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(
            path,
            f"not a tumorscale model file (no '{FORMAT}' marker; a raw "
            "state dict or another tool's checkpoint?)",
        )
    version = payload.get("format_version")
    if version not in READABLE_VERSIONS:
        readable = ", ".join(str(v) for v in READABLE_VERSIONS)
        raise ModelFileError(
            path,
            f"model file format version {version} is not supported "
            f"(this tumorscale reads versions {readable})",
        )
    missing = [key for key in ("spec", "state_dict") if key not in payload]
    if missing:
        raise ModelFileError(path, f"model file lacks {missing}")
    return payload
