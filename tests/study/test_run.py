"""Running a study end to end: locally, killed and resumed, and on a Dask LocalCluster."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.study.conftest import write_study
from tumorscale.cli.study import study_app
from tumorscale.study import execute_study, load_plan

STUDY_CLI = "from tumorscale.cli.study import study_app; study_app()"
RUN_IDS = ["n2_real_s0", "n2_synth3_s0", "n4_real_s0", "n4_synth3_s0"]


def _env() -> dict[str, str]:
    # One thread everywhere (as Dask workers run), so every executor computes the same numbers.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _plan(cohorts: dict[str, Path], folder: Path, **changes: object) -> Path:
    study = write_study(folder, cohorts, **changes)
    result = CliRunner().invoke(study_app, ["plan", str(study), str(folder / "out")])
    assert result.exit_code == 0, result.output
    assert "runs planned" in result.output
    return folder / "out"


def _run_cli(out: Path) -> subprocess.Popen:
    command = [sys.executable, "-c", STUDY_CLI, "run", str(out), "--quiet"]
    return subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def straight(study_cohorts, tmp_path_factory) -> Path:
    """A tiny study planned and run uninterrupted by `study run` in a subprocess."""
    out = _plan(study_cohorts, tmp_path_factory.mktemp("straight"))
    process = _run_cli(out)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr + stdout
    assert "4 of 4 runs done" in stdout
    return out


def test_local_study_end_to_end(straight):
    ledger = _table(straight / "ledger.csv")
    steps = ["train", "predict:id", "predict:ood", "evaluate:id", "evaluate:ood"]
    assert [(r["run_id"], r["step"]) for r in ledger] == [(i, s) for i in RUN_IDS for s in steps]
    assert all(r["status"] == "done" and float(r["seconds"]) > 0 for r in ledger)
    status = json.loads((straight / "runs/n2_real_s0/status.json").read_text(encoding="utf-8"))
    assert status["status"] == "done" and status["steps"]["train"]["outputs"]["iterations"] == 20
    for run_id in RUN_IDS:
        assert (straight / "runs" / run_id / "train/model.pt").exists()
    rows = _table(straight / "results/per_case.csv")
    assert list(rows[0])[:7] == ["run_id", "n_real", "condition", "synthetic_ratio", "seed",
                                 "test_set", "case_id"]  # fmt: skip
    # 4 runs × (2 id + 2 ood cases) × 3 organs
    assert len(rows) == 4 * 4 * 3
    assert {(r["run_id"], r["test_set"]) for r in rows} == {
        (i, t) for i in RUN_IDS for t in ("id", "ood")
    }
    summary = _table(straight / "results/runs.csv")
    assert len(summary) == 4 * 2 * 4  # runs × test sets × (3 organs + 'all organs')
    assert {r["organ"] for r in summary} == {"pancreas", "liver", "kidney", "all organs"}
    # A rerun finds nothing to do and leaves the results as they were.
    before = (straight / "results/per_case.csv").read_text(encoding="utf-8")
    outcome = execute_study(straight)
    assert outcome.ok and len(outcome.outcomes) == 4
    assert (straight / "results/per_case.csv").read_text(encoding="utf-8") == before


def _killed_mid_study(out: Path) -> None:
    """Start `study run`; SIGKILL it once the second run's training has checkpointed."""
    process = _run_cli(out)
    second = out / "runs" / RUN_IDS[1] / "train"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if (second / "checkpoint.pt").exists():
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    states = [json.loads((out / "runs" / r / "status.json").read_text(encoding="utf-8"))["status"]
              for r in RUN_IDS[:2]]  # fmt: skip
    assert states[0] == "done" and states[1] == "running", states
    assert not (out / "runs" / RUN_IDS[3] / "status.json").exists()


def test_killed_study_rerun_equals_uninterrupted(straight, study_cohorts, tmp_path):
    out = _plan(study_cohorts, tmp_path)
    _killed_mid_study(out)
    process = _run_cli(out)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr + stdout
    assert _table(out / "results/per_case.csv") == _table(straight / "results/per_case.csv")
    assert _table(out / "results/runs.csv") == _table(straight / "results/runs.csv")


def test_dask_executor_on_a_local_cluster(straight, study_cohorts, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the worker processes inherit it
    out = _plan(study_cohorts, tmp_path, real_counts=[2])  # 2 runs: one per worker
    outcome = execute_study(out, executor="dask", n_workers=2)
    assert outcome.ok, outcome.failed
    assert sorted(o.run_id for o in outcome.outcomes) == RUN_IDS[:2]
    ledger = _table(out / "ledger.csv")
    assert len(ledger) == 2 * 5 and all(r["status"] == "done" for r in ledger)
    expected = [r for r in _table(straight / "results/per_case.csv") if r["run_id"] in RUN_IDS[:2]]
    assert _table(out / "results/per_case.csv") == expected
    assert load_plan(out).runs == load_plan(straight).runs[:2]


def test_cpu_processes_equal_the_straight_run_and_train_label_free(straight, study_cohorts,
                                                                    tmp_path, monkeypatch):
    monkeypatch.setattr("tumorscale.study.executors.os.cpu_count", lambda: 2)  # 1 thread each
    out = _plan(study_cohorts, tmp_path, real_counts=[0, 2])
    outcome = execute_study(out, processes=2)
    assert outcome.ok, outcome.failed
    assert sorted(o.run_id for o in outcome.outcomes) == ["n0_synth3_s0", *RUN_IDS[:2]]
    rows = _table(out / "results/per_case.csv")
    expected = [r for r in _table(straight / "results/per_case.csv") if r["run_id"] in RUN_IDS[:2]]
    assert [r for r in rows if r["run_id"] in RUN_IDS[:2]] == expected
    label_free = [r for r in rows if r["run_id"] == "n0_synth3_s0"]
    assert label_free and {r["n_real"] for r in label_free} == {"0"}
    log = (out / "runs/n0_synth3_s0/train/log.csv").read_text(encoding="utf-8").splitlines()
    assert len(log) > 1  # trained on synthetic tumors alone


def test_a_changed_training_scan_retrains_the_runs_that_used_it(study_cohorts, tmp_path):
    """Resume compares what a run was made from: a replaced training CT is trained on again."""
    data = tmp_path / "data"
    shutil.copytree(study_cohorts["data"], data)
    cohorts = {**study_cohorts, "data": data, "cache": tmp_path / "cache"}
    out = _plan(cohorts, tmp_path, real_counts=[2], conditions=[
        {"name": "real", "synthetic_ratio": 0}])  # fmt: skip
    assert execute_study(out).ok
    plan = load_plan(out)
    (run,) = plan.runs
    model = out / "runs" / run.run_id / "train" / "model.pt"
    first_model = model.read_bytes()
    ct = data / plan.real_cases(run)[0] / "ct.nii.gz"
    image = nib.load(str(ct))
    brighter = np.asarray(image.dataobj).astype(np.int16) + 30  # another scan of the same grid
    nib.save(nib.Nifti1Image(brighter, image.affine, image.header), str(ct))
    assert execute_study(out).ok
    status = json.loads((out / "runs" / run.run_id / "status.json").read_text(encoding="utf-8"))
    assert status["steps"]["train"]["outputs"]["redone_because_inputs_changed"] is True
    second_model = model.read_bytes()
    assert second_model != first_model
    status_file = out / "runs" / run.run_id / "status.json"
    before = status_file.read_text(encoding="utf-8")
    assert execute_study(out).ok  # nothing changed since: the run is not touched
    assert model.read_bytes() == second_model
    assert status_file.read_text(encoding="utf-8") == before
