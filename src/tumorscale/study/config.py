"""The study description: one YAML file naming the data, the counts, conditions, seeds, test sets.

    name: pancreas-scaling
    data: /data/AbdomenAtlas2.0          # annotated + healthy cases (paths: relative to this file)
    organs: [pancreas]
    real_counts: [0, 60, 278, 500, 1500, 3159]  # 0: synthetic tumors only (synthetic conditions)
    conditions:
      - {name: real, synthetic_ratio: 0}            # real scans only
      - {name: real+3x-synth, synthetic_ratio: 3}   # + 3x synthetic tumors on the fly
      # a condition may list its own sizes among the study's: real_counts: [0, 60, 3159]
    seeds: [0, 1, 2]
    study_seed: 0                        # draws the in-distribution test split, once
    id_test: {name: id, fraction: 0.1}   # or {count: 300} or {cases: [BDMAP_..., ...]}
    ood_tests: {panorama: /data/PANORAMA_atlas}
    healthy_pool: auto                   # or a list of case ids; hosts are confirmed controls
    allow_unknown_hosts: false           # true: also hosts of unknown tumor status (no lesion file)
    compute: {policy: scaled, per_real_case: 100, min_iterations: 25000}  # or {policy: fixed,
                                                                          #     iterations: 250000}
    train: {model.network: M, patch_size: [96, 96, 96]}     # TrainConfig `section.key` → value
    predict: {tta: true, overlap: 0.5}
    evaluation: {tolerance_mm: 2.0}      # tumorscale.metrics.EvaluationSettings fields
    cache: null                          # preprocessed cache (default: OUT/cache)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tumorscale.errors import InputFileError
from tumorscale.organs import TUMOR_ORGANS

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # safe in run ids and folder names
PREDICT_KEYS = {"tta": bool, "overlap": float, "window_batch_size": int, "organ_masks": bool,
                "workers": int}  # fmt: skip


class StudyConfigError(ValueError):
    """A study description that cannot be planned; the message names the key."""


@dataclass(frozen=True)
class Condition:
    """A training condition: real scans only (ratio 0) or real + ratio × synthetic samples.

    real_counts: the sizes this condition is trained at, among the study's (None: all of them;
    a real-only condition skips 0)."""

    name: str
    synthetic_ratio: float
    real_counts: tuple[int, ...] | None = None

    def counts(self, study_counts: tuple[int, ...]) -> tuple[int, ...]:
        chosen = self.real_counts if self.real_counts is not None else study_counts
        return tuple(n for n in chosen if n > 0 or self.synthetic_ratio > 0)


@dataclass(frozen=True)
class TestSplit:
    """The in-distribution test split: exactly one of fraction, count or explicit case ids."""

    name: str = "id"
    fraction: float | None = None
    count: int | None = None
    cases: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ComputePolicy:
    """fixed: `iterations` per run; scaled: max(min_iterations, per_real_case × n_real), capped
    by max_iterations when given (more data gets proportionally more steps)."""

    policy: str = "fixed"
    iterations: int = 1000
    per_real_case: float = 100.0
    min_iterations: int = 1000
    max_iterations: int | None = None

    def iterations_for(self, n_real: int) -> int:
        if self.policy == "fixed":
            return self.iterations
        scaled = max(self.min_iterations, round(self.per_real_case * n_real))
        return min(scaled, self.max_iterations) if self.max_iterations else scaled


@dataclass(frozen=True)
class StudyConfig:
    name: str
    data: Path
    organs: tuple[str, ...]
    real_counts: tuple[int, ...]
    conditions: tuple[Condition, ...]
    seeds: tuple[int, ...] = (0,)
    study_seed: int = 0
    id_test: TestSplit = field(default_factory=lambda: TestSplit(fraction=0.2))
    ood_tests: Mapping[str, Path] = field(default_factory=dict)
    healthy_pool: tuple[str, ...] | None = None  # None: every case with a study organ control
    allow_unknown_hosts: bool = False  # also host in organs of unknown status (no lesion file)
    compute: ComputePolicy = field(default_factory=ComputePolicy)
    train: Mapping[str, Any] = field(default_factory=dict)
    predict: Mapping[str, Any] = field(default_factory=dict)
    evaluation: Mapping[str, Any] = field(default_factory=dict)
    cache: Path | None = None

    @property
    def has_synthetic(self) -> bool:
        return any(c.synthetic_ratio > 0 for c in self.conditions)

    @property
    def test_set_names(self) -> tuple[str, ...]:
        return (self.id_test.name, *self.ood_tests)


# ----------------------------------------------------------------------------- parsing


def _require(values: Mapping[str, Any], key: str) -> Any:
    if key not in values or values[key] is None:
        raise StudyConfigError(f"{key}: required")
    return values[key]


def _int_list(value: Any, key: str, minimum: int) -> tuple[int, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    if not items or any(isinstance(v, bool) or not isinstance(v, int) for v in items):
        raise StudyConfigError(f"{key}: expected a list of integers, got {value!r}")
    if any(v < minimum for v in items):
        raise StudyConfigError(f"{key}: every value must be >= {minimum}, got {value!r}")
    if len(set(items)) != len(items):
        raise StudyConfigError(f"{key}: values repeat in {value!r}")
    return tuple(items)


def _name(value: Any, key: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise StudyConfigError(f"{key}: {value!r} must be letters, digits, '_', '.', '+' or '-'")
    return value


def _path(value: Any, key: str, base: Path) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise StudyConfigError(f"{key}: expected a path, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def _conditions(value: Any) -> tuple[Condition, ...]:
    if not isinstance(value, list) or not value:
        raise StudyConfigError("conditions: expected a list of {name, synthetic_ratio}")
    result = []
    for index, item in enumerate(value):
        key = f"conditions[{index}]"
        if not isinstance(item, Mapping) or not {"name", "synthetic_ratio"} <= set(item) or (
                set(item) - {"name", "synthetic_ratio", "real_counts"}):
            raise StudyConfigError(f"{key}: expected the keys name, synthetic_ratio and optionally "
                                   "real_counts")
        ratio = item["synthetic_ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or ratio < 0:
            raise StudyConfigError(f"{key}.synthetic_ratio: expected a number >= 0, got {ratio!r}")
        counts = item.get("real_counts")
        if counts is not None:
            counts = tuple(sorted(_int_list(counts, f"{key}.real_counts", 0)))
            if 0 in counts and ratio == 0:
                raise StudyConfigError(f"{key}.real_counts: 0 real scans needs synthetic_ratio > 0")
        result.append(Condition(_name(item["name"], f"{key}.name"), float(ratio), counts))
    if len({c.name for c in result}) != len(result):
        raise StudyConfigError("conditions: names repeat")
    return tuple(result)


def _test_split(value: Any) -> TestSplit:
    if not isinstance(value, Mapping):
        raise StudyConfigError("id_test: expected {fraction: x} or {count: n} or {cases: [...]}")
    unknown = set(value) - {"name", "fraction", "count", "cases"}
    if unknown:
        raise StudyConfigError(f"id_test: unknown key(s) {sorted(unknown)}")
    chosen = [k for k in ("fraction", "count", "cases") if value.get(k) is not None]
    if len(chosen) != 1:
        raise StudyConfigError("id_test: give exactly one of fraction, count or cases")
    name = _name(value.get("name", "id"), "id_test.name")
    fraction, count, cases = value.get("fraction"), value.get("count"), value.get("cases")
    if fraction is not None and not (isinstance(fraction, int | float) and 0 < fraction < 1):
        raise StudyConfigError(f"id_test.fraction: expected a number in (0, 1), got {fraction!r}")
    if count is not None:
        count = _int_list(count, "id_test.count", 1)[0]
    if cases is not None:
        if not isinstance(cases, list) or not cases:
            raise StudyConfigError("id_test.cases: expected a list of case ids")
        cases = tuple(str(c) for c in cases)
    return TestSplit(name, float(fraction) if fraction is not None else None, count, cases)


def _compute(value: Any) -> ComputePolicy:
    if not isinstance(value, Mapping):
        raise StudyConfigError("compute: expected {policy: fixed, iterations: n} or "
                               "{policy: scaled, per_real_case: x, min_iterations: n}")
    fields = {f.name for f in dataclasses.fields(ComputePolicy)}
    unknown = set(value) - fields
    if unknown:
        raise StudyConfigError(
            f"compute: unknown key(s) {sorted(unknown)}; known: {sorted(fields)}"
        )
    policy = ComputePolicy(**value)
    if policy.policy not in ("fixed", "scaled"):
        raise StudyConfigError(f"compute.policy: {policy.policy!r} is not 'fixed' or 'scaled'")
    for key in ("iterations", "min_iterations"):
        number = getattr(policy, key)
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise StudyConfigError(f"compute.{key}: expected an integer >= 1, got {number!r}")
    if not isinstance(policy.per_real_case, int | float) or policy.per_real_case <= 0:
        raise StudyConfigError("compute.per_real_case: expected a number > 0")
    return policy


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise StudyConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise StudyConfigError(f"{key}: expected a mapping of keys")
    return dict(value)


def _ood(value: Any, base: Path) -> dict[str, Path]:
    tests = _mapping(value, "ood_tests")
    return {_name(k, f"ood_tests.{k}"): _path(v, f"ood_tests.{k}", base) for k, v in tests.items()}


def _organs(value: Any) -> tuple[str, ...]:
    organs = tuple(value) if isinstance(value, list | tuple) else (value,)
    unknown = [o for o in organs if o not in TUMOR_ORGANS]
    if unknown or not organs:
        raise StudyConfigError(f"organs: {unknown or 'none'} not among {list(TUMOR_ORGANS)}")
    return organs


# Training keys a study sets itself for every run (`study.steps.base_config` and `run_config`),
# so a study file may not give them under `train`.
STUDY_TRAIN_KEYS: tuple[str, ...] = (
    "out", "organs", "seed", "epochs", "iterations_per_epoch", "data.root", "data.cache",
    "data.real_cases", "data.healthy_cases", "data.validation_cases", "synthesis.on_the_fly",
    "synthesis.ratio", "data.synthetic",
)


def _check_train(train: Mapping[str, Any], organs: tuple[str, ...]) -> None:
    """Reject keys the study sets itself, then let TrainConfig validate the rest."""
    from tumorscale.train.config import config_from_keys, validate

    if "data.allow_unknown_hosts" in train:
        raise StudyConfigError("train: data.allow_unknown_hosts is set by the study's "
                               "allow_unknown_hosts key")
    taken = sorted(set(train) & set(STUDY_TRAIN_KEYS))
    if taken:
        raise StudyConfigError(f"train: {taken} are set by the study for each run")
    try:
        config = config_from_keys(train)
        validate(dataclasses.replace(config, data=dataclasses.replace(config.data, cache="check")))
    except ValueError as error:
        raise StudyConfigError(f"train: {error}") from error


def _check_sections(predict: Mapping[str, Any], evaluation: Mapping[str, Any]) -> None:
    from tumorscale.metrics import EvaluationSettings

    unknown = sorted(set(predict) - set(PREDICT_KEYS))
    if unknown:
        raise StudyConfigError(f"predict: unknown key(s) {unknown}; known: {sorted(PREDICT_KEYS)}")
    try:
        EvaluationSettings(**evaluation)
    except (TypeError, ValueError) as error:
        raise StudyConfigError(f"evaluation: {error}") from error


def parse_study(values: Mapping[str, Any], base: Path) -> StudyConfig:
    """Build and validate a StudyConfig from YAML values; relative paths resolve against `base`."""
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise StudyConfigError(f"unknown key(s) {unknown}; known: {sorted(known)}")
    organs = _organs(_require(values, "organs"))
    healthy = values.get("healthy_pool", "auto")
    if healthy not in (None, "auto") and not isinstance(healthy, list):
        raise StudyConfigError("healthy_pool: expected 'auto' or a list of case ids")
    spec = StudyConfig(
        name=_name(_require(values, "name"), "name"),
        data=_path(_require(values, "data"), "data", base),
        organs=organs,
        real_counts=tuple(sorted(_int_list(_require(values, "real_counts"), "real_counts", 0))),
        conditions=_conditions(_require(values, "conditions")),
        seeds=_int_list(values.get("seeds", [0]), "seeds", 0),
        study_seed=_int_list(values.get("study_seed", 0), "study_seed", 0)[0],
        id_test=_test_split(values.get("id_test", {"fraction": 0.2})),
        ood_tests=_ood(values.get("ood_tests"), base),
        healthy_pool=tuple(str(c) for c in healthy) if isinstance(healthy, list) else None,
        allow_unknown_hosts=_flag(values.get("allow_unknown_hosts", False), "allow_unknown_hosts"),
        compute=_compute(values.get("compute", {"policy": "fixed"})),
        train=_mapping(values.get("train"), "train"),
        predict=_mapping(values.get("predict"), "predict"),
        evaluation=_mapping(values.get("evaluation"), "evaluation"),
        cache=_path(values["cache"], "cache", base) if values.get("cache") else None,
    )
    for index, condition in enumerate(spec.conditions):
        extra = sorted(set(condition.real_counts or ()) - set(spec.real_counts))
        if extra:
            raise StudyConfigError(f"conditions[{index}].real_counts: {extra} are not among the "
                                   f"study's real_counts {list(spec.real_counts)}")
    if spec.real_counts == (0,) or (0 in spec.real_counts and not spec.has_synthetic):
        raise StudyConfigError("real_counts: 0 (no real scans) needs a condition with "
                               "synthetic_ratio > 0 and at least one count above 0")
    if spec.id_test.name in spec.ood_tests:
        raise StudyConfigError(
            f"ood_tests.{spec.id_test.name}: the name of the in-distribution test")
    _check_train(spec.train, organs)
    _check_sections(spec.predict, spec.evaluation)
    return spec


def load_study(path: str | Path) -> StudyConfig:
    """Read a study YAML file; errors name the file and the key."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise InputFileError(path, f"cannot read the study description: {error}") from error
    if not isinstance(values, Mapping):
        raise InputFileError(path, "the study description must be a mapping of keys")
    try:
        return parse_study(values, path.resolve().parent)
    except (StudyConfigError, TypeError) as error:
        raise InputFileError(path, str(error)) from error
