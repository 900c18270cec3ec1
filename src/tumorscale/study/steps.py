"""One run of a study: train → predict every test set → evaluate every test set; resumable.

Every step is recorded in the run's status file (see `ledger`). Finished work is skipped: a
trained model (model.pt), finished prediction cases, an evaluation with its summary.json; an
interrupted training resumes from its checkpoint bit-identically. A failing step is recorded with
its error and the run stops there.

    python -m tumorscale.study.steps OUT RUN_ID     runs one run (what the GPU executor starts)
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tumorscale.atlas import index_dataset
from tumorscale.data import PreprocessSettings, preprocess_dataset
from tumorscale.data.cache import case_dir
from tumorscale.errors import DatasetError
from tumorscale.infer.batch import RECORD_NAME
from tumorscale.io import input_fingerprint
from tumorscale.io.fingerprint import Fingerprint
from tumorscale.jobs import JobReport
from tumorscale.study.ledger import FAILED, STATUS_NAME, RunLedger, read_status, step_names
from tumorscale.study.plan import Plan, PlannedRun, TestSet, load_plan
from tumorscale.train import TrainConfig
from tumorscale.train.config import config_from_keys, validate
from tumorscale.workers import die_with_parent, parent_from_environment

# progress(stage, done, total): stage is e.g. "train", "predict:id", "evaluate:ood".
StepProgress = Callable[[str, int, int], None]
MODEL_NAME = "model.pt"


@dataclass(frozen=True)
class RunOutcome:
    """What a run ended with: done, or failed at `step` with `error`."""

    run_id: str
    status: str
    step: str | None = None
    error: str | None = None


def run_dir(plan: Plan, run_id: str) -> Path:
    return plan.root / "runs" / run_id


def base_config(plan: Plan) -> TrainConfig:
    """The plan's training settings on the shared cache (no run-specific keys yet): its
    `train` keys as typed records, then the study's organs and cache."""
    config = config_from_keys(plan.train)
    data = dataclasses.replace(config.data, cache=str(plan.cache))
    return validate(dataclasses.replace(config, organs=tuple(plan.organs), data=data))


def prepare_study(plan: Plan, progress: Callable[[int, int], None] | None = None,
                  workers: int = 1) -> JobReport:
    """Preprocess the data tree into the shared cache once (skips finished cases)."""
    data = base_config(plan).data
    settings = PreprocessSettings(data.preprocessing)
    report = preprocess_dataset(plan.data, plan.cache, settings, workers=workers,
                                progress=progress)  # fmt: skip
    if not report.done and not report.skipped:
        raise DatasetError(plan.data, f"no case could be preprocessed: {report.failed[:3]}")
    return report


def _in_daemon() -> bool:
    # Daemonic processes (Dask workers) may not start DataLoader or process-pool children.
    return multiprocessing.current_process().daemon


def run_config(plan: Plan, run: PlannedRun, device: str | None = None) -> TrainConfig:
    """The run's TrainConfig: its real subset, the healthy pool when it synthesizes, one epoch
    of `iterations`, its seed, its own output folder; no validation split (the test sets are)."""
    base = base_config(plan)
    synthetic = run.synthetic_ratio > 0
    data = dataclasses.replace(
        base.data,
        root="",
        real_cases=plan.real_cases(run),
        healthy_cases=plan.healthy_cases() if synthetic else (),
        validation_cases=(),
    )
    synthesis = dataclasses.replace(base.synthesis, on_the_fly=synthetic,
                                    ratio=run.synthetic_ratio)  # fmt: skip
    return dataclasses.replace(
        base,
        data=data,
        synthesis=synthesis,
        epochs=1,
        iterations_per_epoch=run.iterations,
        seed=run.seed,
        out=str(run_dir(plan, run.run_id) / "train"),
        device=device or base.device,
        workers=0 if _in_daemon() else base.workers,
    )


def _train(plan: Plan, run: PlannedRun, ledger: RunLedger, device: str | None,
           progress: StepProgress | None) -> Path:
    from tumorscale.train import train

    config = run_config(plan, run, device)
    model = Path(config.out) / MODEL_NAME
    inputs = train_inputs(plan, run)
    changed = _inputs_changed(ledger, "train", inputs) and model.exists()
    with ledger.step("train") as outputs:
        if changed:  # a training case was preprocessed again (its scan changed): start over
            shutil.rmtree(config.out)
        if not model.exists():
            report = (lambda p: progress("train", p.iteration, p.total)) if progress else None
            train(config, resume=True, report=report)
        outputs.update(model=str(model.relative_to(plan.root)), iterations=run.iterations,
                       inputs=inputs, redone_because_inputs_changed=changed)  # fmt: skip
    return model


def train_inputs(plan: Plan, run: PlannedRun) -> Fingerprint:
    """What a run's training is made from: its cases in the shared cache (a scan that changed is
    preprocessed again, which rewrites its `meta.json`)."""
    config = run_config(plan, run)
    cases = [*config.data.real_cases, *config.data.healthy_cases]
    return input_fingerprint(case_dir(plan.cache, case_id) / "meta.json" for case_id in cases)


def evaluate_inputs(plan: Plan, run: PlannedRun, test: TestSet) -> Fingerprint:
    """What a run's evaluation on `test` is made from: the test cases' CTs and masks and the
    predictions' completion records (rewritten whenever a case is predicted again)."""
    cases = index_dataset(plan.test_folder(test), read_headers=False).cases
    truth = [p for case in cases for p in [*([case.ct] if case.ct else []),
                                           *case.segmentation_files]]  # fmt: skip
    folder = run_dir(plan, run.run_id) / "predict" / test.name
    return input_fingerprint([*truth, *sorted(folder.glob(f"*/{RECORD_NAME}"))])


def _inputs_changed(ledger: RunLedger, step: str, inputs: Fingerprint) -> bool:
    """Whether `step` finished earlier from other inputs (so its result is stale)."""
    recorded = ledger.steps[step].get("outputs", {}).get("inputs")
    return ledger.is_done(step) and recorded is not None and recorded != inputs


def inputs_changed_since(plan: Plan, run_id: str) -> bool:
    """Whether a finished run's training or evaluation inputs have changed since it ran (call
    after `prepare_study`, which preprocesses changed scans again)."""
    run = plan.run(run_id)
    steps = read_status(run_dir(plan, run_id) / STATUS_NAME).get("steps", {})

    def recorded(step: str) -> object:
        return (steps.get(step) or {}).get("outputs", {}).get("inputs")

    if recorded("train") not in (None, train_inputs(plan, run)):
        return True
    return any(recorded(f"evaluate:{t.name}") not in (None, evaluate_inputs(plan, run, t))
               for t in plan.test_sets)  # fmt: skip


def _worker_count(plan: Plan) -> int:
    return 1 if _in_daemon() else int(plan.predict.get("workers", 1))


def _predict(plan: Plan, run: PlannedRun, test: TestSet, model: Path, ledger: RunLedger,
             device: str | None, progress: StepProgress | None) -> None:
    from tumorscale.infer import Predictor
    from tumorscale.infer.batch import predict_folder

    name = f"predict:{test.name}"
    out = run_dir(plan, run.run_id) / "predict" / test.name
    with ledger.step(name) as outputs:
        predictor = Predictor(model, device=device or "auto",
                              tta=bool(plan.predict.get("tta", True)),
                              overlap=float(plan.predict.get("overlap", 0.5)),
                              window_batch_size=int(plan.predict.get("window_batch_size", 2)))
        report = predict_folder(
            plan.test_folder(test), out, predictor,
            organ_masks=bool(plan.predict.get("organ_masks", False)),
            workers=max(1, int(plan.predict.get("workers", 1))),
            progress=(lambda d, t: progress(name, d, t)) if progress else None,
            model_path=model,
        )  # fmt: skip
        outputs.update(folder=str(out.relative_to(plan.root)), done=len(report.done),
                       skipped=len(report.skipped))  # fmt: skip
        if report.failed:
            raise DatasetError(out, f"{len(report.failed)} case(s) failed: {report.failed[:3]}")


def _evaluate(plan: Plan, run: PlannedRun, test: TestSet, ledger: RunLedger,
              progress: StepProgress | None) -> None:
    from tumorscale.metrics import EvaluationSettings, evaluate_folders

    name = f"evaluate:{test.name}"
    folder = run_dir(plan, run.run_id)
    out = folder / "evaluate" / test.name
    inputs = evaluate_inputs(plan, run, test)
    changed = _inputs_changed(ledger, name, inputs)
    with ledger.step(name) as outputs:
        if changed or not (out / "summary.json").exists():
            evaluate_folders(
                folder / "predict" / test.name, plan.test_folder(test), out,
                organs=list(plan.organs), settings=EvaluationSettings(**plan.evaluation),
                workers=_worker_count(plan),
                progress=(lambda d, t: progress(name, d, t)) if progress else None,
            )  # fmt: skip
        outputs.update(per_case=str((out / "per_case.csv").relative_to(plan.root)),
                       summary=str((out / "summary.json").relative_to(plan.root)),
                       inputs=inputs, redone_because_inputs_changed=changed)  # fmt: skip


def run_one(plan_dir: str | Path, run_id: str, gpu: int | None = None,
            progress: StepProgress | None = None) -> RunOutcome:
    """Train, predict and evaluate one run of the plan (skipping finished steps).

    gpu: CUDA device index for this run (None: the plan's device, 'auto' by default). Errors are
    recorded in the run's status file and returned, not raised, so other runs go on."""
    plan = load_plan(plan_dir)
    run = plan.run(run_id)
    names = [t.name for t in plan.test_sets]
    ledger = RunLedger.open(run_dir(plan, run_id), run_id, step_names(names))
    device = f"cuda:{gpu}" if gpu is not None else None
    try:
        model = _train(plan, run, ledger, device, progress)
        for test in plan.test_sets:
            _predict(plan, run, test, model, ledger, device, progress)
        for test in plan.test_sets:
            _evaluate(plan, run, test, ledger, progress)
    except Exception as error:  # recorded in the ledger; other runs go on
        failed = next((s for s, v in ledger.steps.items() if v["status"] == FAILED), None)
        return RunOutcome(run_id, FAILED, failed, f"{type(error).__name__}: {error}")
    return RunOutcome(run_id, ledger.status)


def main(argv: list[str]) -> int:
    """Entry point of one-run subprocesses: print the outcome as JSON, exit 1 when it failed."""
    die_with_parent(parent_from_environment())  # a killed `study run` takes its runs with it
    outcome = run_one(argv[0], argv[1])
    print(json.dumps(dataclasses.asdict(outcome)), flush=True)
    return 0 if outcome.status != FAILED else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
