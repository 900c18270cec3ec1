"""Training configuration: one YAML file, every key overridable as `section.key=value`.

Defaults are the paper's recipe (nnU-Net ResEnc style): SGD lr 0.01, momentum 0.99, Nesterov,
poly decay, 96³ patches, batch 2, Dice + CE with deep supervision, 250 iterations per epoch,
synthetic:real = 3 with tumors synthesized on the fly in healthy cases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tumorscale.errors import InputFileError
from tumorscale.preprocessing import Preprocessing


@dataclass(frozen=True)
class DataConfig:
    """Where the scans are and which cases play which role (None: chosen from tumor status).

    real_cases: annotated scans (default: every case positive or control for a selected organ).
    healthy_cases: hosts for synthetic tumors (default: cases with a selected organ that is a
    confirmed control: lesion file present, all zero). allow_unknown_hosts: also host tumors in
    organs of unknown status (no lesion file; an unannotated tumor may be there), listed or not.
    validation_cases: held out (default: a `validation_fraction` of the real cases, by seed).
    `synthetic` is an optional folder from `tumorscale synth` whose cases count as real cases
    with (synthetic) annotations. `preprocessing` is the target spacing, HU window and intensity
    range (`data.preprocessing.spacing_mm`, ...; the older `data.spacing_mm` and
    `data.hu_window` keys are read too). `normalisation`: "window" reads patches through that
    window and range ([-175, 250] HU as HU / 100 by default); "ct" replaces them with
    nnU-Net's CT normalisation measured on the training cases' foreground
    (`tumorscale.data.normalisation`); the model file records the numbers used.
    """

    root: str = ""
    cache: str = ""
    real_cases: tuple[str, ...] | None = None
    healthy_cases: tuple[str, ...] | None = None
    allow_unknown_hosts: bool = False
    validation_cases: tuple[str, ...] | None = None
    validation_fraction: float = 0.2
    synthetic: str = ""
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    normalisation: str = "window"  # or "ct"
    preprocess_workers: int = 1


@dataclass(frozen=True)
class SynthesisConfig:
    """On-the-fly tumor synthesis in healthy cases (ratio = synthetic samples per real sample)."""

    on_the_fly: bool = True
    ratio: float = 3.0
    size_mix: tuple[float, float, float] = (4.0, 2.0, 1.0)


@dataclass(frozen=True)
class ModelConfig:
    network: str = "M"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    organ_classes: bool = False


@dataclass(frozen=True)
class OptimConfig:
    name: str = "sgd"  # or "adamw"
    lr: float = 0.01
    momentum: float = 0.99
    nesterov: bool = True
    weight_decay: float = 3e-5
    poly_exponent: float = 0.9
    grad_clip: float = 12.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; written into the run folder and every checkpoint."""

    out: str = "run"
    organs: tuple[str, ...] = ("pancreas",)
    data: DataConfig = field(default_factory=DataConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    patch_size: tuple[int, int, int] = (96, 96, 96)
    batch_size: int = 2
    epochs: int = 1000
    iterations_per_epoch: int = 250
    foreground_fraction: float = 1 / 3
    augment: bool = True
    # False: the intensity transforms only, drawn more often (`AugmentSettings.intensity_only`)
    augment_spatial: bool = True
    amp: str = "bf16"  # bf16 | fp16 | none; on CUDA
    # bf16 autocast on CPUs with native bfloat16: about 1.1x faster for `tiny`, but opt-in: oneDNN's
    # bf16 convolution backward gave non-finite gradients at 2³ feature maps (preset S).
    cpu_bf16: bool = False
    compile: bool = False
    workers: int = 2
    seed: int = 0
    checkpoint_every: int = 250
    validate_every_epochs: int = 50
    validation_windows_overlap: float = 0.5
    log_every: int = 10
    device: str = "auto"
    benchmark_random_data: bool = False  # model speed only: random tensors, no data loading

    @property
    def total_iterations(self) -> int:
        return self.epochs * self.iterations_per_epoch

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    """Tuples → lists and mappings → dicts, so the config dumps as clean YAML/JSON."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn YAML values into the dataclass field's type (lists → tuples, ints → floats, ...)."""
    text = str(annotation)
    if value is None:
        if "None" not in text:
            raise ValueError(f"{where}: may not be empty")
        return None
    if isinstance(value, Mapping) and "Mapping" not in text:
        raise ValueError(f"{where}: expected a value, got a section")
    if text.startswith("tuple") or "tuple[" in text:
        if isinstance(value, str | int | float):
            value = [value]
        element = "float" if "float" in text else "int" if "int" in text else "str"
        return tuple(_scalar(v, element, where) for v in value)
    for kind in ("bool", "float", "int", "str"):
        if text == kind:
            return _scalar(value, kind, where)
    return value


def _scalar(value: Any, kind: str, where: str) -> Any:
    try:
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if kind == "float":
            return float(value)
        if kind == "int":
            if isinstance(value, bool) or float(value) != int(value):
                raise ValueError("expected an integer")
            return int(value)
        return str(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {value!r} is not valid ({error})") from error


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where or 'config'}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in values.items():
        key = f"{where}.{name}" if where else name
        default = fields[name].default_factory  # type: ignore[misc]
        nested = default() if callable(default) else None
        if dataclasses.is_dataclass(nested):
            if not isinstance(value, Mapping):
                raise ValueError(f"{key}: expected a section of keys")
            kwargs[name] = _build(type(nested), value, key)
        else:
            kwargs[name] = _coerce(value, fields[name].type, key)
    try:
        return cls(**kwargs)
    except ValueError as error:  # a record that validates itself (Preprocessing)
        if not where:
            raise
        raise ValueError(f"{where}: {error}") from error


# Keys of configs written before the preprocessing record, and where they live now.
LEGACY_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("data", "spacing_mm"): ("data", "preprocessing", "spacing_mm"),
    ("data", "hu_window"): ("data", "preprocessing", "hu_window"),
}


def _key_path(path: str) -> tuple[str, ...]:
    """`section.key` as a key path, an older key (LEGACY_KEYS) as the path it has now."""
    keys = tuple(key.strip() for key in path.strip().split("."))
    return LEGACY_KEYS.get(keys, keys)


def _set_value(values: dict[str, Any], keys: Sequence[str], value: Any, where: str) -> None:
    """Set the nested value at the key path `keys`, making sections on the way."""
    node = values
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"{where}: {key} is not a section")
    node[keys[-1]] = value


def _upgrade(values: Mapping[str, Any]) -> dict[str, Any]:
    """Nested config values with the keys of older configs (LEGACY_KEYS) moved to where they
    live now; giving both an older key and its new one with different values is an error."""
    upgraded = _copy_sections(values)
    for old, new in LEGACY_KEYS.items():
        parent = _section(upgraded, old[:-1])
        if parent is None or old[-1] not in parent:
            continue
        value = parent.pop(old[-1])
        target = _section(upgraded, new[:-1])
        if target is not None and new[-1] in target and target[new[-1]] != value:
            raise ValueError(f"{'.'.join(old)} and {'.'.join(new)} are the same setting; give "
                             "one of them")  # fmt: skip
        _set_value(upgraded, new, value, ".".join(new))
    return upgraded


def _copy_sections(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _copy_sections(value) if isinstance(value, Mapping) else value
            for key, value in values.items()}  # fmt: skip


def _section(values: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any] | None:
    node: Any = values
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, dict) else None


def _apply_override(values: dict[str, Any], override: str) -> None:
    """Apply one `a.b.c=value` override (value parsed as YAML) to nested dicts."""
    if "=" not in override:
        raise ValueError(f"override {override!r} must look like section.key=value")
    path, text = override.split("=", 1)
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as error:
        reason = getattr(error, "problem", None) or type(error).__name__
        raise ValueError(f"override {override!r}: the value is not valid YAML ({reason})") from None
    _set_value(values, _key_path(path), value, f"override {override!r}")


def config_from_keys(settings: Mapping[str, Any]) -> TrainConfig:
    """A TrainConfig from typed `section.key` → value settings (a study's `train` mapping; a
    value may also be a whole section), not yet validated: callers set their own fields with
    `dataclasses.replace`, then call `validate`."""
    values: dict[str, Any] = {}
    given: dict[tuple[str, ...], str] = {}
    for path, value in settings.items():
        keys = _key_path(str(path))
        if keys in given:  # an older key and its new name
            raise ValueError(f"{given[keys]} and {path} are the same setting; give one of them")
        given[keys] = str(path)
        _set_value(values, keys, value, str(path))
    return _build(TrainConfig, _upgrade(values), "")


def normalized_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """`TrainConfig.to_dict` of config values read from any version's config.yaml (older keys
    moved, missing keys at their defaults); raises ValueError when they do not build."""
    return _build(TrainConfig, _upgrade(values), "").to_dict()


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (None: all defaults) and apply `section.key=value` overrides.

    Keys of older configs (`data.spacing_mm`, `data.hu_window`) are read as the preprocessing
    record's (`data.preprocessing.spacing_mm`, ...), in the file and in overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise InputFileError(path, f"cannot read the training config: {error}") from error
        if not isinstance(loaded, dict):
            raise InputFileError(path, "the training config must be a mapping of keys")
        try:
            values = _upgrade(loaded)
        except ValueError as error:
            raise InputFileError(path, str(error)) from error
    for override in overrides:
        _apply_override(values, override)
    try:
        return validate(_build(TrainConfig, _upgrade(values), ""))
    except ValueError as error:
        if path is None:
            raise
        raise InputFileError(path, str(error)) from error


def validate(config: TrainConfig) -> TrainConfig:
    """Reject values that cannot train, naming the key."""
    from tumorscale.organs import TUMOR_ORGANS

    choices = {"optim.name": (config.optim.name, ("sgd", "adamw")),
               "amp": (config.amp, ("bf16", "fp16", "none")),
               "data.normalisation": (config.data.normalisation, ("window", "ct"))}  # fmt: skip
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    unknown = [organ for organ in config.organs if organ not in TUMOR_ORGANS]
    if unknown or not config.organs:
        raise ValueError(f"organs: {unknown or 'none'} not among {list(TUMOR_ORGANS)}")
    checks = {
        "batch_size": config.batch_size >= 1,
        "epochs": config.epochs >= 1,
        "iterations_per_epoch": config.iterations_per_epoch >= 1,
        "checkpoint_every": config.checkpoint_every >= 1,
        "patch_size": len(config.patch_size) == 3 and min(config.patch_size) >= 8,
        "foreground_fraction": 0.0 <= config.foreground_fraction <= 1.0,
        "synthesis.ratio": config.synthesis.ratio >= 0,
        "optim.lr": config.optim.lr > 0,
        "data.validation_fraction": 0.0 <= config.data.validation_fraction < 1.0,
        "workers": config.workers >= 0,
    }
    bad = [key for key, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"invalid value for {', '.join(bad)}")
    if not (config.data.root or config.data.cache):
        raise ValueError("data.root (scans) or data.cache (preprocessed cache) is required")
    return config


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
