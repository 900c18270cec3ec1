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

FORMAT = "tumorscale-model"
FORMAT_VERSION = 1


class ModelFileError(InputFileError):
    """A model file that cannot be loaded (missing, corrupt, foreign or incompatible)."""


@dataclass(frozen=True)
class ModelSpec:
    """What a trained model is: network, classes, and the preprocessing its inputs need.

    `class_names[i]` names output channel i; index 0 is always `background`. Intensities are
    clipped to `hu_window` then scaled linearly to `intensity_range`; volumes are resampled to
    `target_spacing_mm` (x, y, z in RAS). `patch_size_vox` is the training patch (voxels at the
    target spacing), also the default sliding-window size.
    """

    network: str
    class_names: tuple[str, ...]
    network_overrides: Mapping[str, Any] = field(default_factory=dict)
    in_channels: int = 1
    target_spacing_mm: tuple[float, float, float] = (1.5, 1.5, 1.5)
    hu_window: tuple[float, float] = (-175.0, 250.0)
    intensity_range: tuple[float, float] = (0.0, 1.0)
    patch_size_vox: tuple[int, int, int] = (96, 96, 96)
    tumorscale_version: str = __version__

    def __post_init__(self) -> None:
        names = tuple(self.class_names)
        if len(names) < 2 or names[0] != "background":
            raise ValueError(
                f"class_names must start with 'background' and name >= 1 class: {names}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"class_names has duplicates: {names}")
        _check_plain_data(self.network_overrides, "network_overrides")
        low, high = self.hu_window
        if not low < high:
            raise ValueError(f"hu_window must be (low, high) with low < high, got {self.hu_window}")
        if min(self.target_spacing_mm) <= 0:
            raise ValueError(f"target_spacing_mm must be positive, got {self.target_spacing_mm}")
        # Normalise containers so specs compare equal after a save/load round trip.
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "network_overrides", dict(self.network_overrides))
        for name in ("target_spacing_mm", "hu_window", "intensity_range"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
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
        """Plain data (lists, not tuples) for model files and JSON."""
        return json_ready(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Inverse of `to_dict`; unknown keys are an error (a newer or foreign spec)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelSpec field(s) {unknown}")
        return cls(**dict(data))


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
        spec = ModelSpec.from_dict(payload["spec"])
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
    if version != FORMAT_VERSION:
        raise ModelFileError(
            path,
            f"model file format version {version} is not supported "
            f"(this tumorscale reads version {FORMAT_VERSION})",
        )
    missing = [key for key in ("spec", "state_dict") if key not in payload]
    if missing:
        raise ModelFileError(path, f"model file lacks {missing}")
    return payload
