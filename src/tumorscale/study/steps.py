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
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tumorscale.data import PreprocessReport, PreprocessSettings, preprocess_dataset
from tumorscale.errors import DatasetError
from tumorscale.study.ledger import FAILED, RunLedger, step_names
from tumorscale.study.plan import Plan, PlannedRun, TestSet, load_plan
from tumorscale.study.spec import train_overrides
from tumorscale.train import TrainConfig, load_config

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
    """The plan's training settings on the shared cache (no run-specific keys yet)."""
    return load_config(
        None,
        [*train_overrides(plan.train), f"data.cache={plan.cache}",
         f"organs={json.dumps(list(plan.organs))}"],
    )  # fmt: skip


def prepare_study(plan: Plan, progress: Callable[[int, int], None] | None = None,
                  workers: int = 1) -> PreprocessReport:
    """Preprocess the data tree into the shared cache once (skips finished cases)."""
    data = base_config(plan).data
    settings = PreprocessSettings(spacing_mm=data.spacing_mm, hu_clip=data.hu_window)
    counter = {"done": 0}

    def tick(_: str) -> None:
        counter["done"] += 1
        if progress is not None:
            progress(counter["done"], 0)

    report = preprocess_dataset(plan.data, plan.cache, settings, workers=workers,
                                progress=tick)  # fmt: skip
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
    with ledger.step("train") as outputs:
        if not model.exists():
            report = (lambda p: progress("train", p.iteration, p.total)) if progress else None
            train(config, resume=True, report=report)
        outputs.update(model=str(model.relative_to(plan.root)), iterations=run.iterations)
    return model


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
    with ledger.step(name) as outputs:
        if not (out / "summary.json").exists():
            evaluate_folders(
                folder / "predict" / test.name, plan.test_folder(test), out,
                organs=list(plan.organs), settings=EvaluationSettings(**plan.evaluation),
                workers=_worker_count(plan),
                progress=(lambda d, t: progress(name, d, t)) if progress else None,
            )  # fmt: skip
        outputs.update(per_case=str((out / "per_case.csv").relative_to(plan.root)),
                       summary=str((out / "summary.json").relative_to(plan.root)))  # fmt: skip


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
    outcome = run_one(argv[0], argv[1])
    print(json.dumps(dataclasses.asdict(outcome)), flush=True)
    return 0 if outcome.status != FAILED else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
