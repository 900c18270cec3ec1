"""Planning a study: nested subsets, an isolated test split, OOD separation, clear errors."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.study.conftest import write_study
from tumorscale.errors import DatasetError, InputFileError
from tumorscale.study import load_plan, load_study, make_plan, nested_subsets
from tumorscale.study.plan import draw_test_split, read_ids


@settings(max_examples=200, deadline=None)
@given(
    pool_size=st.integers(1, 60),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_every_smaller_subset_is_inside_every_larger_one(pool_size, seed, data):
    pool = [f"BDMAP_{i:08d}" for i in range(pool_size)]
    counts = data.draw(st.lists(st.integers(1, pool_size), min_size=1, max_size=6, unique=True))
    subsets = nested_subsets(pool, counts, seed)
    for small in counts:
        assert len(subsets[small]) == small == len(set(subsets[small]))
        assert set(subsets[small]) <= set(pool)
        for large in counts:
            if small <= large:
                assert set(subsets[small]) <= set(subsets[large])
    assert nested_subsets(list(reversed(pool)), counts, seed) == subsets  # order-free


def test_seeds_give_different_orders():
    pool = [f"c{i}" for i in range(40)]
    orders = {tuple(nested_subsets(pool, [40], seed)[40]) for seed in range(20)}
    assert len(orders) == 20


def test_test_split_is_stratified_and_seeded():
    positive, control = [f"p{i}" for i in range(30)], [f"c{i}" for i in range(10)]
    split = draw_test_split(positive, control, 8, seed=3)
    assert sum(c.startswith("p") for c in split) == 6 and len(split) == 8
    assert draw_test_split(positive, control, 8, seed=3) == split
    assert draw_test_split(positive, control, 8, seed=4) != split


@pytest.fixture(scope="module")
def planned(study_cohorts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("plan")
    spec = load_study(write_study(folder, study_cohorts, seeds=[0, 1, 2]))
    return spec, make_plan(spec, folder / "out")


def test_plan_files_and_round_trip(planned):
    _, plan = planned
    assert load_plan(plan.root) == plan
    assert len(plan.runs) == 2 * 2 * 3
    header = (plan.root / "runs.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "run_id,n_real,condition,synthetic_ratio,seed,iterations,real_cases_file"
    for run in plan.runs:
        assert len(plan.real_cases(run)) == run.n_real and run.iterations == 20
    assert [t.name for t in plan.test_sets] == ["id", "ood"]


def test_test_cases_never_train_and_nest(planned):
    spec, plan = planned
    test = set(read_ids(plan.root / "testsets/id.txt"))
    assert len(test) == 2
    healthy = set(plan.healthy_cases())
    assert healthy and not healthy & test
    for seed in spec.seeds:
        small, large = (set(read_ids(plan.root / f"subsets/{seed}/n{n}.txt")) for n in (2, 4))
        assert small <= large and not large & test
    links = sorted(os.listdir(plan.root / "testsets/id"))
    assert links == sorted(test)
    assert (plan.root / "testsets/id" / links[0]).resolve() == (spec.data / links[0]).resolve()
    ood = read_ids(plan.root / "testsets/ood.txt")
    assert len(ood) == 2 and (plan.root / "testsets/ood" / ood[0] / "ct.nii.gz").exists()


def test_count_larger_than_pool_is_an_error(study_cohorts, tmp_path):
    spec = load_study(write_study(tmp_path, study_cohorts, real_counts=[2, 7]))
    with pytest.raises(DatasetError, match=r"real_counts: \[7\] exceed the training pool of 6"):
        make_plan(spec, tmp_path / "out")


def test_ood_sharing_files_with_the_data_is_an_error(study_cohorts, tmp_path):
    leak = tmp_path / "leak"
    leak.mkdir()
    case = sorted(p for p in study_cohorts["data"].iterdir() if p.is_dir())[0]
    (leak / "BDMAP_99999999").symlink_to(case, target_is_directory=True)
    spec = load_study(write_study(tmp_path, study_cohorts, ood_tests={"leak": str(leak)}))
    with pytest.raises(DatasetError, match=r"ood_tests\.leak: shares files with the data"):
        make_plan(spec, tmp_path / "out")
    inside = load_study(write_study(tmp_path, study_cohorts, ood_tests={"x": str(case)}))
    with pytest.raises(DatasetError, match=r"ood_tests\.x: overlaps the data folder"):
        make_plan(inside, tmp_path / "out")


def test_ood_holding_a_copied_data_case_is_an_error(study_cohorts, tmp_path):
    """A byte-identical copy (not a link) of a training case in the OOD folder must not leak."""
    copied = tmp_path / "copied"
    case = sorted(p for p in study_cohorts["data"].iterdir() if p.is_dir())[0]
    shutil.copytree(case, copied / "BDMAP_99999999")
    spec = load_study(write_study(tmp_path, study_cohorts, ood_tests={"copied": str(copied)}))
    with pytest.raises(DatasetError, match=r"ood_tests\.copied: this CT is a byte-identical") as e:
        make_plan(spec, tmp_path / "out")
    message = str(e.value)
    assert str(copied / "BDMAP_99999999") in message and str(case / "ct.nii.gz") in message
    assert not (tmp_path / "out" / "testsets").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"real_counts": [-1, 4]}, "real_counts: every value must be >= 0"),
        ({"real_counts": [0]}, "real_counts: 0 \\(no real scans\\) needs"),
        ({"real_counts": [0, 4], "conditions": [{"name": "real", "synthetic_ratio": 0}]},
         "real_counts: 0 \\(no real scans\\) needs a condition with synthetic_ratio > 0"),
        ({"conditions": [{"name": "a b", "synthetic_ratio": 0}]}, "conditions\\[0\\].name"),
        ({"conditions": [{"name": "r", "synthetic_ratio": 0, "real_counts": [3]}]},
         "conditions\\[0\\].real_counts: \\[3\\] are not among the study's real_counts"),
        ({"real_counts": [0, 2], "conditions": [{"name": "s", "synthetic_ratio": 3},
                                                {"name": "r", "synthetic_ratio": 0,
                                                 "real_counts": [0, 2]}]},
         "conditions\\[1\\].real_counts: 0 real scans needs synthetic_ratio > 0"),
        ({"id_test": {"count": 2, "fraction": 0.1}}, "id_test: give exactly one"),
        ({"compute": {"policy": "linear"}}, "compute.policy"),
        ({"train": {"seed": 3}}, "train: \\['seed'\\] are set by the study"),
        ({"train": {"model.nope": 1}}, "train: model: unknown key"),
        ({"evaluation": {"tolerance": 2}}, "evaluation:"),
        ({"bogus": 1}, "unknown key\\(s\\) \\['bogus'\\]"),
        ({"allow_unknown_hosts": "yes"}, "allow_unknown_hosts: expected true or false"),
        ({"train": {"data.allow_unknown_hosts": True}},
         "train: data.allow_unknown_hosts is set by the study's allow_unknown_hosts key"),
    ],
)
def test_bad_study_names_the_key(study_cohorts, tmp_path, change, message):
    with pytest.raises(InputFileError, match=message):
        load_study(write_study(tmp_path, study_cohorts, **change))


def test_scaled_compute_policy(study_cohorts, tmp_path):
    compute = {"policy": "scaled", "per_real_case": 10, "min_iterations": 25}
    spec = load_study(write_study(tmp_path, study_cohorts, compute=compute))
    assert [spec.compute.iterations_for(n) for n in (2, 4, 60)] == [25, 40, 600]


def test_zero_real_scans_plans_synthetic_only_runs(study_cohorts, tmp_path):
    spec = load_study(write_study(tmp_path, study_cohorts, real_counts=[0, 2]))
    plan = make_plan(spec, tmp_path / "out")
    runs = {(run.n_real, run.condition) for run in plan.runs}
    assert runs == {(0, "synth3"), (2, "real"), (2, "synth3")}  # no real-only run without data
    label_free = next(run for run in plan.runs if run.n_real == 0)
    assert plan.real_cases(label_free) == () and plan.healthy_cases()
    assert load_plan(plan.root) == plan


def test_a_condition_may_train_at_some_of_the_study_sizes(study_cohorts, tmp_path):
    conditions = [{"name": "real", "synthetic_ratio": 0},
                  {"name": "synth3", "synthetic_ratio": 3, "real_counts": [0, 4]}]
    spec = load_study(write_study(tmp_path, study_cohorts, real_counts=[0, 2, 4],
                                  conditions=conditions))  # fmt: skip
    plan = make_plan(spec, tmp_path / "out")
    runs = {(run.n_real, run.condition) for run in plan.runs}
    assert runs == {(2, "real"), (4, "real"), (0, "synth3"), (4, "synth3")}
