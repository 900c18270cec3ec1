"""Hosts for synthetic tumors are confirmed controls unless unknown status is opted in."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tumorscale.data import PreprocessedCache, PreprocessSettings
from tumorscale.data.augment import AugmentSettings
from tumorscale.errors import DatasetError
from tumorscale.train import load_config
from tumorscale.train.cases import case_roles, host_organs
from tumorscale.train.data import pipeline_config

ORGANS = ("pancreas", "liver")


class _Meta:
    """The things `case_roles` and `pipeline_config` ask of a preprocessed cache: ids, root,
    settings and each case's meta."""

    def __init__(self, statuses: dict[str, dict[str, str]]) -> None:
        self.statuses = statuses
        self.root = Path("cache")
        self.settings = PreprocessSettings()

    @property
    def case_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self.statuses))

    def case_meta(self, case_id: str) -> dict:
        status = self.statuses[case_id]
        return {"structures": sorted(status), "tumor_status": status}

    holds = PreprocessedCache.holds  # reads only `case_meta`


COHORT = _Meta({
    "control": {"pancreas": "control", "liver": "control"},
    "unknown": {"pancreas": "unknown", "liver": "unknown"},
    "mixed": {"pancreas": "control", "liver": "unknown"},  # hosts in its pancreas only
    "tumor": {"pancreas": "positive", "liver": "positive"},
})  # fmt: skip


def _config(*overrides: str):
    return load_config(None, ["organs=[pancreas,liver]", "data.cache=cache",
                              "data.validation_fraction=0", *overrides])  # fmt: skip


def test_unknown_status_is_no_host_by_default_controls_are() -> None:
    roles = case_roles(COHORT, _config())
    assert roles.healthy == ("control", "mixed")
    assert roles.host_organs == {"control": ORGANS, "mixed": ("pancreas",)}
    assert roles.real == ("control", "mixed", "tumor")


def test_unknown_status_hosts_with_the_opt_in() -> None:
    roles = case_roles(COHORT, _config("data.allow_unknown_hosts=true"))
    assert roles.healthy == ("control", "mixed", "unknown")
    assert roles.host_organs == {"control": ORGANS, "mixed": ORGANS, "unknown": ORGANS}


def test_listed_unknown_host_needs_the_opt_in() -> None:
    with pytest.raises(DatasetError, match=r"unknown tumor status .*\['unknown'\].*"
                                           r"data\.allow_unknown_hosts=true"):  # fmt: skip
        case_roles(COHORT, _config("data.healthy_cases=[control,unknown]"))
    roles = case_roles(COHORT, _config("data.healthy_cases=[control,unknown]",
                                       "data.allow_unknown_hosts=true"))  # fmt: skip
    assert roles.healthy == ("control", "unknown")


def test_listed_mixed_case_hosts_in_its_control_organ_only() -> None:
    roles = case_roles(COHORT, _config("data.healthy_cases=[mixed]"))
    assert roles.healthy == ("mixed",) and roles.host_organs == {"mixed": ("pancreas",)}


def test_listed_positive_host_is_an_error() -> None:
    with pytest.raises(DatasetError, match=r"tumor in every selected organ.*\['tumor'\]"):
        case_roles(COHORT, _config("data.healthy_cases=[control,tumor]"))


def test_no_host_because_all_are_unknown_names_the_opt_in() -> None:
    cache = _Meta({"a": {"pancreas": "unknown"}, "b": {"liver": "unknown"}})
    with pytest.raises(DatasetError, match=r"no training cases.*2 case\(s\) are of unknown tumor "
                                           r"status.*data\.allow_unknown_hosts=true"):  # fmt: skip
        case_roles(cache, _config())
    assert case_roles(cache, _config("data.allow_unknown_hosts=true")).healthy == ("a", "b")


def test_host_organs_reach_the_patch_stream() -> None:
    config = _config()
    roles = case_roles(COHORT, config)
    spec = SimpleNamespace(class_names=("background", "pancreas_lesion", "liver_lesion"))
    stream = pipeline_config(config, COHORT, roles, spec, SimpleNamespace(rank=0, world_size=1), 0)
    assert stream.case_organs("control") == ORGANS
    assert stream.case_organs("mixed") == ("pancreas",)  # never its liver of unknown status
    assert stream.preprocessing == COHORT.settings.preprocessing  # the workers read through it
    assert host_organs(COHORT, "unknown", config) == ()


def test_example_config_keeps_the_default() -> None:
    example = Path(__file__).parents[2] / "examples" / "train.yaml"
    assert load_config(example).data.allow_unknown_hosts is False


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ((), AugmentSettings()),
        (("augment_spatial=false",), AugmentSettings.intensity_only()),
        (("augment=false",), AugmentSettings.none()),
        (("augment=false", "augment_spatial=false"), AugmentSettings.none()),
    ],
)
def test_augment_settings_reach_the_patch_stream(
    overrides: tuple[str, ...], expected: AugmentSettings
) -> None:
    config = _config(*overrides)
    roles = case_roles(COHORT, config)
    spec = SimpleNamespace(class_names=("background", "pancreas_lesion", "liver_lesion"))
    stream = pipeline_config(config, COHORT, roles, spec, SimpleNamespace(rank=0, world_size=1), 0)
    assert stream.augment == expected
