"""The study's healthy pool: confirmed controls by default, unknown status only when opted in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.study.conftest import ORGANS, write_study
from tumorscale.errors import DatasetError
from tumorscale.study import load_plan, load_study, make_plan
from tumorscale.study.plan import read_ids
from tumorscale.study.steps import run_config

UNKNOWN = ["BDMAP_00000007", "BDMAP_00000008"]  # all-control phantoms made of unknown status


def _statuses(data: Path) -> dict[str, dict[str, str]]:
    manifest = json.loads((data / "phantom_manifest.json").read_text(encoding="utf-8"))
    return {case["case_id"]: case["tumor_status"] for case in manifest["cases"]}


def _copy(study_cohorts: dict[str, Path], folder: Path) -> dict[str, Path]:
    data = folder / "data"
    shutil.copytree(study_cohorts["data"], data)
    return {**study_cohorts, "data": data}


def _drop_lesion_files(data: Path, case_id: str, organs: list[str]) -> None:
    for organ in organs:
        (data / case_id / "segmentations" / f"{organ}_lesion.nii.gz").unlink()


@pytest.fixture(scope="module")
def unknown_cohorts(study_cohorts, tmp_path_factory) -> dict[str, Path]:
    """The study data with the lesion files of two all-control cases removed (unknown status)."""
    cohorts = _copy(study_cohorts, tmp_path_factory.mktemp("unknown"))
    for case_id in UNKNOWN:
        assert set(_statuses(cohorts["data"])[case_id].values()) == {"control"}
        _drop_lesion_files(cohorts["data"], case_id, ORGANS)
    return cohorts


def _plan(cohorts: dict[str, Path], folder: Path, **changes: object):
    return make_plan(load_study(write_study(folder, cohorts, **changes)), folder / "out")


def test_unknown_status_is_no_host_by_default(unknown_cohorts, tmp_path):
    plan = _plan(unknown_cohorts, tmp_path)
    pool = set(plan.healthy_cases())
    test = set(read_ids(plan.root / "testsets/id.txt"))
    controls = {c for c, s in _statuses(unknown_cohorts["data"]).items()
                if set(s.values()) == {"control"} and c not in UNKNOWN}  # fmt: skip
    assert pool and not pool & set(UNKNOWN)
    assert controls - test <= pool  # the confirmed controls stay hosts
    assert "data.allow_unknown_hosts" not in plan.train


def test_unknown_status_hosts_with_the_opt_in(unknown_cohorts, tmp_path):
    plan = _plan(unknown_cohorts, tmp_path, allow_unknown_hosts=True)
    assert set(UNKNOWN) <= set(plan.healthy_cases())
    assert plan.train["data.allow_unknown_hosts"] is True
    synthetic = next(run for run in plan.runs if run.synthetic_ratio > 0)
    config = run_config(load_plan(plan.root), synthetic)  # what the run trains with
    assert config.data.allow_unknown_hosts and set(UNKNOWN) <= set(config.data.healthy_cases)


def test_listed_unknown_host_needs_the_opt_in(unknown_cohorts, tmp_path):
    message = r"healthy_pool: case\(s\) of unknown tumor status.*BDMAP_00000008.*allow_unknown"
    with pytest.raises(DatasetError, match=message + "_hosts: true"):
        _plan(unknown_cohorts, tmp_path / "a", healthy_pool=["BDMAP_00000001", UNKNOWN[1]])
    plan = _plan(unknown_cohorts, tmp_path / "b", healthy_pool=[UNKNOWN[1]],
                 allow_unknown_hosts=True)  # fmt: skip
    assert plan.healthy_cases() == (UNKNOWN[1],)


def test_listed_case_with_a_tumor_in_every_organ_is_an_error(study_cohorts, tmp_path):
    cohorts = _copy(study_cohorts, tmp_path)
    plan = _plan(cohorts, tmp_path / "first")
    test = set(read_ids(plan.root / "testsets/id.txt"))
    case_id = next(c for c, s in sorted(_statuses(cohorts["data"]).items())
                   if "positive" in s.values() and c not in test)  # fmt: skip
    segmentations = cohorts["data"] / case_id / "segmentations"
    tumor = next(segmentations / f"{o}_lesion.nii.gz" for o in ORGANS
                 if _statuses(cohorts["data"])[case_id][o] == "positive")  # fmt: skip
    for organ in ORGANS:  # every study organ now holds (that) tumor
        if segmentations / f"{organ}_lesion.nii.gz" != tumor:
            shutil.copyfile(tumor, segmentations / f"{organ}_lesion.nii.gz")
    with pytest.raises(DatasetError, match=rf"tumor in every study organ.*{case_id}"):
        _plan(cohorts, tmp_path / "second", healthy_pool=[case_id])


def test_no_host_because_all_are_unknown_names_the_opt_in(study_cohorts, tmp_path):
    cohorts = _copy(study_cohorts, tmp_path)
    for case_id, status in _statuses(cohorts["data"]).items():
        _drop_lesion_files(cohorts["data"], case_id,
                           [o for o in ORGANS if status[o] == "control"])  # fmt: skip
    with pytest.raises(DatasetError, match=r"healthy_pool: no host for synthetic tumors.*"
                                           r"unknown tumor status.*allow_unknown_hosts: true"):
        _plan(cohorts, tmp_path / "a", real_counts=[1])
    plan = _plan(cohorts, tmp_path / "b", real_counts=[1], allow_unknown_hosts=True)
    assert plan.healthy_cases()
