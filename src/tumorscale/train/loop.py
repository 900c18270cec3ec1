"""The training loop: short on purpose. Setup, then iterate: batch → loss → step → log/checkpoint.

The run folder holds `config.yaml`, `checkpoint.pt` (every `checkpoint_every` iterations and at
the end), `log.csv` (loss, learning rate, throughput), `validation.csv` and, at the end,
`model.pt` (weights + `ModelSpec`: all that prediction needs).
"""

from __future__ import annotations

import csv
import io
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tumorscale.data import PreprocessedCache, PreprocessSettings, preprocess_dataset
from tumorscale.data.normalisation import ct_normalisation, foreground_sample
from tumorscale.errors import DatasetError
from tumorscale.io.atomic import write_text_atomic
from tumorscale.models import DeepSupervisionLoss, ModelSpec, class_names_for, save_model
from tumorscale.models.compute import autocast, memory_layout
from tumorscale.organs import ORGANS
from tumorscale.train.cases import CaseRoles, case_roles
from tumorscale.train.checkpoint import (
    CHECKPOINT_NAME,
    TrainingState,
    load_checkpoint,
    restore,
    save_checkpoint,
)
from tumorscale.train.config import TrainConfig, dump_config
from tumorscale.train.data import training_batches
from tumorscale.train.distributed import Distributed, setup, teardown
from tumorscale.train.preflight import fit_patch_to_images, warn_about_earlier_run
from tumorscale.train.validate import validate

LOG_COLUMNS = ["iteration", "epoch", "loss", "lr", "samples_per_s", "seconds"]


@dataclass(frozen=True)
class Progress:
    """What the loop reports after each logged iteration (for progress bars)."""

    iteration: int
    total: int
    loss: float
    samples_per_s: float


@dataclass(frozen=True)
class TrainResult:
    out: Path
    model: Path
    iterations: int
    losses: list[float]
    validation: list[dict[str, float]]


def prepare_cache(config: TrainConfig, distributed: Distributed) -> PreprocessedCache:
    """Open the preprocessed cache, preprocessing `data.root` into it first (rank 0, resumable)."""
    data = config.data
    cache_root = Path(data.cache or Path(config.out) / "cache")
    settings = PreprocessSettings(data.preprocessing)
    if data.root and distributed.is_main:
        report = preprocess_dataset(
            data.root, cache_root, settings, workers=data.preprocess_workers
        )
        if not report.done and not report.skipped:
            raise DatasetError(data.root, f"no case could be preprocessed: {report.failed[:3]}")
    distributed.barrier()
    return PreprocessedCache.open(cache_root, expected=settings)


def normalised(
    cache: PreprocessedCache, config: TrainConfig, roles: CaseRoles, verbose: bool
) -> PreprocessedCache:
    """The cache read with nnU-Net's CT normalisation when `data.normalisation` is "ct" (its
    foreground: the trained labels in the annotated training cases; the organs where those hold
    no tumor voxel, as in a label-free run), else as it is."""
    if config.data.normalisation != "ct":
        return cache
    lesions = tuple(ORGANS[organ].lesion_file for organ in config.organs)
    labels = lesions + (tuple(config.organs) if config.model.organ_classes else ())
    annotated = roles.real + roles.synthetic
    sample = foreground_sample(cache, annotated, labels, seed=config.seed)
    if sample.size == 0:
        labels = tuple(config.organs)
        sample = foreground_sample(cache, annotated + roles.healthy, labels, seed=config.seed)
    try:
        record = ct_normalisation(cache.settings.preprocessing, sample)
    except ValueError as error:
        raise DatasetError(cache.root, f"data.normalisation=ct: {error}") from None
    if verbose:
        low, high = record.hu_window
        print(f"CT normalisation from {', '.join(labels)}: HU clipped to [{low:.1f}, {high:.1f}],"
              f" z-scored to {record.intensity_range[0]:.2f}..{record.intensity_range[1]:.2f}",
              file=sys.stderr, flush=True)  # fmt: skip
    return cache.with_preprocessing(record)


def model_spec(config: TrainConfig, cache: PreprocessedCache) -> ModelSpec:
    return ModelSpec(
        network=config.model.network,
        class_names=class_names_for(config.organs, config.model.organ_classes),
        network_overrides=dict(config.model.overrides),
        preprocessing=cache.settings.preprocessing,  # what the patches were made with
        patch_size_vox=tuple(config.patch_size),
    )


def _optimizer(config: TrainConfig, network: torch.nn.Module) -> torch.optim.Optimizer:
    optim = config.optim
    if optim.name == "adamw":
        return torch.optim.AdamW(network.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    return torch.optim.SGD(
        network.parameters(),
        lr=optim.lr,
        momentum=optim.momentum,
        nesterov=optim.nesterov,
        weight_decay=optim.weight_decay,
    )


def _poly_schedule(config: TrainConfig, optimizer: torch.optim.Optimizer):
    total, exponent = config.total_iterations, config.optim.poly_exponent
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda iteration: (1 - min(iteration, total - 1) / total) ** exponent
    )


def build_state(config: TrainConfig, spec: ModelSpec, distributed: Distributed) -> TrainingState:
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    network = spec.build().to(distributed.device, memory_format=memory_layout(distributed.device))
    if distributed.enabled:
        device_ids = [distributed.device.index] if distributed.device.type == "cuda" else None
        network = torch.nn.parallel.DistributedDataParallel(network, device_ids=device_ids)
    if config.compile:
        network = torch.compile(network)
    optimizer = _optimizer(config, network)
    use_scaler = distributed.device.type == "cuda" and config.amp == "fp16"
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    return TrainingState(network, optimizer, _poly_schedule(config, optimizer), scaler)


def _amp(config: TrainConfig, device: torch.device) -> str:
    """The autocast setting for this device: `amp` on CUDA, bf16 on CPU only with `cpu_bf16`."""
    if device.type == "cuda":
        return config.amp
    return "bf16" if config.cpu_bf16 else "none"


def _step(state: TrainingState, loss_fn, batch, config: TrainConfig, device) -> float:
    image = batch["image"].to(device, non_blocking=True, memory_format=memory_layout(device))
    label = batch["label"].to(device, non_blocking=True)
    state.optimizer.zero_grad(set_to_none=True)
    with autocast(device, _amp(config, device)):
        loss = loss_fn(state.network(image), label)
    if state.scaler is not None:
        state.scaler.scale(loss).backward()
        state.scaler.unscale_(state.optimizer)
    else:
        loss.backward()
    torch.nn.utils.clip_grad_norm_(state.network.parameters(), config.optim.grad_clip)
    if state.scaler is not None:
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        state.optimizer.step()
    state.scheduler.step()
    return float(loss.detach())


def loss_has_fallen(losses: list[float], share: float = 0.95) -> bool:
    """Whether the mean loss of the latest tenth of `losses` is below `share` x the first tenth's.

    The yardstick of the quarter-run warning.
    """
    tenth = max(1, len(losses) // 10)
    return float(np.mean(losses[-tenth:])) < share * float(np.mean(losses[:tenth]))


def _warn_if_not_learning(losses: list[float], iteration: int, total: int) -> None:
    """After a quarter of the run, say on stderr when the loss has not fallen."""
    if iteration != max(total // 4, 1) or len(losses) < 10 or loss_has_fallen(losses):
        return
    first, last = np.mean(losses[: len(losses) // 10]), np.mean(losses[-len(losses) // 10 :])
    print(
        f"warning: the training loss has not fallen after {iteration} of {total} iterations "
        f"({first:.3f} -> {last:.3f}); check the learning rate, the labels and the HU window",
        file=sys.stderr,
        flush=True,
    )


class _Log:
    """A CSV log rewritten atomically; on resume, rows past the checkpoint are dropped."""

    def __init__(self, path: Path, columns: list[str], keep_until: int | None) -> None:
        self.path, self.columns = path, columns
        self.rows: list[dict[str, object]] = []
        if keep_until is not None and path.exists():
            with path.open(encoding="utf-8") as handle:
                self.rows = [r for r in csv.DictReader(handle) if int(r["iteration"]) <= keep_until]

    def add(self, row: dict[str, object]) -> None:
        self.rows.append(row)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.path, buffer.getvalue())


def _resume(state: TrainingState, out: Path, resume: bool) -> int | None:
    """Restore the last checkpoint when resuming; the iteration it holds, or None."""
    path = out / CHECKPOINT_NAME
    if not resume or not path.exists():
        return None
    restore(state, load_checkpoint(path))
    return state.iteration


def train(
    config: TrainConfig,
    resume: bool = False,
    report: Callable[[Progress], None] | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train per `config`; with `resume`, continue from `out/checkpoint.pt` bit-identically.

    `stop_after` ends the loop early after that many iterations in total (for tests and smoke
    runs); the schedule still follows the configured length.
    """
    distributed = setup(config.device)
    try:
        return _train(config, distributed, resume, report, stop_after)
    finally:
        teardown(distributed)


def _train(config, distributed, resume, report, stop_after) -> TrainResult:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = prepare_cache(config, distributed)
    roles: CaseRoles = case_roles(cache, config)
    cache = normalised(cache, config, roles, distributed.is_main)
    config = fit_patch_to_images(config, cache, roles, distributed.is_main)
    spec = model_spec(config, cache)
    if distributed.is_main:
        warn_about_earlier_run(out, config, resume)
        write_text_atomic(out / "config.yaml", dump_config(config))
    state = build_state(config, spec, distributed)
    resumed_at = _resume(state, out, resume)
    log = _Log(out / "log.csv", LOG_COLUMNS, resumed_at if resumed_at is not None else -1)
    validation_log = _Log(
        out / "validation.csv",
        ["iteration", "epoch", "metric", "value"],
        resumed_at if resumed_at is not None else -1,
    )
    loss_fn = DeepSupervisionLoss()
    batches: Iterator[dict] = training_batches(
        config, cache, roles, spec, distributed, start_sample=state.samples_consumed
    )
    end = min(config.total_iterations, stop_after or config.total_iterations)
    losses, validations, window_start, window_losses = [], [], time.perf_counter(), []
    state.network.train()
    while state.iteration < end:
        loss = _step(state, loss_fn, next(batches), config, distributed.device)
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"the training loss is not finite at iteration {state.iteration + 1}; the weights "
                f"are lost from there (the last checkpoint in {out} is not): lower optim.lr, or "
                "train without mixed precision (amp=none, cpu_bf16=false)"
            )
        state.iteration += 1
        state.samples_consumed += config.batch_size
        losses.append(loss)
        window_losses.append(loss)
        if distributed.is_main:
            _warn_if_not_learning(losses, state.iteration, config.total_iterations)
        if state.iteration % config.log_every == 0 or state.iteration == end:
            elapsed = time.perf_counter() - window_start
            rate = len(window_losses) * config.batch_size * distributed.world_size / elapsed
            mean_loss = distributed.mean(float(np.mean(window_losses)))
            if distributed.is_main:
                log.add(
                    {
                        "iteration": state.iteration,
                        "epoch": state.iteration // config.iterations_per_epoch,
                        "loss": f"{mean_loss:.6f}",
                        "lr": state.optimizer.param_groups[0]["lr"],
                        "samples_per_s": f"{rate:.3f}",
                        "seconds": f"{elapsed:.3f}",
                    }
                )
            if report is not None and distributed.is_main:
                report(Progress(state.iteration, end, mean_loss, rate))
            window_start, window_losses = time.perf_counter(), []
        epoch_done = state.iteration % config.iterations_per_epoch == 0
        epoch = state.iteration // config.iterations_per_epoch
        if roles.validation and epoch_done and epoch % config.validate_every_epochs == 0:
            scores = validate(
                state.network,
                cache,
                roles.validation,
                spec,
                distributed,
                config.validation_windows_overlap,
            )
            state.network.train()
            validations.append({"iteration": state.iteration, **scores})
            if distributed.is_main:
                shown = ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if k.startswith("dsc"))
                print(f"validation at iteration {state.iteration}: {shown or 'no tumor case'}",
                      file=sys.stderr, flush=True)
                for metric, value in scores.items():
                    validation_log.add(
                        {
                            "iteration": state.iteration,
                            "epoch": epoch,
                            "metric": metric,
                            "value": value,
                        }
                    )
            window_start = time.perf_counter()  # throughput counts training, not validation
        if distributed.is_main and (
            state.iteration % config.checkpoint_every == 0 or state.iteration == end
        ):
            save_checkpoint(out / CHECKPOINT_NAME, state, config.to_dict())
    model_path = out / "model.pt"
    if distributed.is_main:
        save_model(
            model_path,
            state.network,
            spec,
            extra={"iterations": state.iteration, "config": config.to_dict()},
        )
    distributed.barrier()
    return TrainResult(out, model_path, state.iteration, losses, validations)
