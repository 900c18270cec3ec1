"""Scaling studies: plan nested real subsets × conditions × seeds, run them (local or Dask),
record every step in a ledger, and collect the results (the law fits and reports build on them).

    from tumorscale.study import load_study, make_plan, run_study
    plan = make_plan(load_study("study.yaml"), "out")
    outcome = run_study("out", executor="dask")     # resumable: rerun to finish
"""

from tumorscale.study.executors import StudyOutcome, StudyProgress, run_study, unfinished_runs
from tumorscale.study.ledger import RunLedger, write_ledger
from tumorscale.study.plan import Plan, PlannedRun, TestSet, load_plan, make_plan, nested_subsets
from tumorscale.study.results import collect_results
from tumorscale.study.spec import (
    ComputePolicy,
    Condition,
    StudySpec,
    StudySpecError,
    TestSplit,
    load_study,
    parse_study,
)
from tumorscale.study.steps import RunOutcome, run_one

__all__ = [
    "ComputePolicy",
    "Condition",
    "Plan",
    "PlannedRun",
    "RunLedger",
    "RunOutcome",
    "StudyOutcome",
    "StudyProgress",
    "StudySpec",
    "StudySpecError",
    "TestSet",
    "TestSplit",
    "collect_results",
    "load_plan",
    "load_study",
    "make_plan",
    "nested_subsets",
    "parse_study",
    "run_one",
    "run_study",
    "unfinished_runs",
    "write_ledger",
]
