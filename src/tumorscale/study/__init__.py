"""Scaling studies: plan nested real subsets × conditions × seeds, run them (local or Dask),
record every step in a ledger, and collect the results (the law fits and reports build on them).

    from tumorscale.study import load_study, make_plan, execute_study
    plan = make_plan(load_study("study.yaml"), "out")
    outcome = execute_study("out", executor="dask")     # resumable: rerun to finish
"""

from tumorscale.study.config import (
    ComputePolicy,
    Condition,
    StudyConfig,
    StudyConfigError,
    TestSplit,
    load_study,
    parse_study,
)
from tumorscale.study.executors import StudyOutcome, StudyProgress, execute_study, unfinished_runs
from tumorscale.study.fit import StudyFit, fit_study, write_fit
from tumorscale.study.fit_io import read_per_case
from tumorscale.study.ledger import RunLedger, write_ledger
from tumorscale.study.plan import Plan, PlannedRun, TestSet, load_plan, make_plan, nested_subsets
from tumorscale.study.report import ReportPaths, write_report
from tumorscale.study.results import collect_results
from tumorscale.study.steps import RunOutcome, run_one

__all__ = [
    "ComputePolicy",
    "Condition",
    "Plan",
    "PlannedRun",
    "ReportPaths",
    "RunLedger",
    "RunOutcome",
    "StudyConfig",
    "StudyConfigError",
    "StudyFit",
    "StudyOutcome",
    "StudyProgress",
    "TestSet",
    "TestSplit",
    "collect_results",
    "execute_study",
    "fit_study",
    "load_plan",
    "load_study",
    "make_plan",
    "nested_subsets",
    "parse_study",
    "read_per_case",
    "run_one",
    "unfinished_runs",
    "write_fit",
    "write_ledger",
    "write_report",
]
