"""Does `tumorscale train` learn tumors, and how fast, against a plain MONAI loop?

One task, trained one run after another in this process (same phantoms, same preprocessed
cache, same patch rule, same held-out cases):
- 22 liver phantoms, `PhantomOptions(shape=(136, 108, 120), tumor_fraction=0.75,
  female_fraction=0, tumor_organs=("liver",))`, default noise, resampled to 3 mm; 6 cases with
  tumors are held out, the other 16 train;
- 48³ patches, batch 2, half of them centred on a tumor voxel, AdamW 3e-3 with poly decay,
  no augmentation, no synthesis;
- held-out DSC on the 3 mm grid: sliding window (48³, overlap 0.25, Gaussian), argmax, DSC per
  held-out case, mean over the 6 cases.

Runs:
- `plain`: the baseline a MONAI user writes in 60 lines: MONAI `UNet(channels=(8, 16, 32, 64),
  strides=(2, 2, 2), num_res_units=1, norm=INSTANCE)`, `DiceCELoss(softmax)`, HU clipped to
  [-175, 250] then (HU - 100) / 50, `sliding_window_inference`;
- `tiny`, `unet` (the same MONAI UNet inside tumorscale) and `S`: `tumorscale.train.train` with
  validation on the held-out cases at every checkpoint (fp32, channels-last on CPU);
- `tiny-bf16`: `tiny` with `cpu_bf16=true` (bfloat16 autocast on CPUs that have it);
- `tiny-aug`: `tiny` with the training augmentations on (`augment=true`): a check that the
  augmentation chain leaves a model that learns the task (not part of the default runs);
- `tiny-ctnorm`: `tiny` with `data.normalisation=ct`, nnU-Net's CT normalisation (HU clipped to
  the 0.5 and 99.5 percentiles of the training cases' tumor voxels, then z-scored with their
  mean and SD) instead of the [-175, 250] window as HU / 100;
- `plain-ctnorm`: the plain loop with that same CT normalisation instead of its fixed window (not
  part of the default runs): does the normalisation help a plain MONAI loop as much?
- `tiny-ctnorm-aug`: `tiny-ctnorm` with the augmentations on (not part of the default runs).
- `tiny-range`, `unet-range`: `tiny` and `unet` reading the same window through the plain loop's
  map, (HU - 100) / 50 (`data.preprocessing.intensity_range=[-5.5, 3.0]`; the same cache, which
  applies the range when it reads), instead of HU / 100 (not part of the default runs): how much
  the input scale matters to each.
- `tiny-unit`: `tiny` with the window mapped to the paper's [0, 1] (`intensity_range=[0,1]`, the
  default before the tenth session; not part of the default runs): input 0 at HU -175 instead of
  water, where `tiny`'s normless stem starts its thresholds (see `benchmarks/RESULTS.md`).

It prints held-out DSC against training wall time (validation excluded) at each checkpoint, then
for each other run the time it took to reach the plain loop's final DSC as a ratio of the plain
loop's whole time (and the same against `plain-ctnorm` when that ran).

    python benchmarks/bench_learning.py [--runs plain,tiny,tiny-ctnorm,tiny-bf16,unet,S,...]
        [--iterations 1200] [--checkpoints 6] [--s-iterations 120] [--seed 0] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tumorscale.data import PreprocessedCache, PreprocessSettings, preprocess_dataset
from tumorscale.data.cache import structure_mask
from tumorscale.data.normalisation import ct_normalisation, foreground_sample
from tumorscale.phantom import PhantomOptions, write_cohort
from tumorscale.preprocessing import Preprocessing, scale_intensity
from tumorscale.train import load_config, train

PHANTOMS = PhantomOptions(
    shape=(136, 108, 120), tumor_fraction=0.75, female_fraction=0.0, tumor_organs=("liver",)
)
SPACING_MM = 3.0
PATCH = 48
HELD_OUT = 6
CASES = 22
LESION = "liver_lesion"
UNET_WIDTH = {"channels": [8, 16, 32, 64], "strides": [2, 2, 2], "num_res_units": 1}
# The plain loop's (HU - 100) / 50 as the window's intensity range: -175 -> -5.5, 250 -> 3.0.
PLAIN_RANGE = "data.preprocessing.intensity_range=[-5.5,3.0]"
# The paper's map of the window, -175 -> 0 and 250 -> 1 (the default is HU / 100).
UNIT_RANGE = "data.preprocessing.intensity_range=[0,1]"
# The `tumorscale train` runs at 48³ besides `tiny` itself: network, overrides, config changes.
VARIANTS: dict[str, tuple[str, dict, tuple[str, ...]]] = {
    "unet": ("UNet", UNET_WIDTH, ()),
    "tiny-bf16": ("tiny", {}, ("cpu_bf16=true",)),
    "tiny-aug": ("tiny", {}, ("augment=true",)),
    "tiny-ctnorm": ("tiny", {}, ("data.normalisation=ct",)),
    "tiny-ctnorm-aug": ("tiny", {}, ("data.normalisation=ct", "augment=true")),
    "tiny-range": ("tiny", {}, (PLAIN_RANGE,)),
    "unet-range": ("UNet", UNET_WIDTH, (PLAIN_RANGE,)),
    "tiny-unit": ("tiny", {}, (UNIT_RANGE,)),
}


@dataclass
class Task:
    data: Path
    cache: PreprocessedCache
    train_ids: list[str]
    held_out: list[str]


@dataclass
class Curve:
    name: str
    points: list[tuple[int, float, float]] = field(default_factory=list)  # (iteration, s, DSC)
    losses: tuple[float, float] = (float("nan"), float("nan"))  # first and last 10 % mean

    @property
    def final(self) -> tuple[int, float, float]:
        return self.points[-1]

    def time_to(self, dsc: float) -> float | None:
        return next((seconds for _, seconds, value in self.points if value >= dsc), None)


def make_task(workdir: Path, seed: int) -> Task:
    """Write the phantoms, preprocess them to 3 mm, hold out the last 6 cases with tumors."""
    data = workdir / "phantoms"
    write_cohort(data, cases=CASES, seed=seed, options=PHANTOMS)
    settings = PreprocessSettings(spacing_mm=(SPACING_MM,) * 3)
    preprocess_dataset(data, workdir / "cache", settings, workers=2)
    cache = PreprocessedCache.open(workdir / "cache", expected=settings)
    positive = [c for c in cache.case_ids if len(cache.foreground_locations(c, LESION))]
    held_out = positive[-HELD_OUT:]
    train_ids = [c for c in cache.case_ids if c not in held_out]
    return Task(data, cache, train_ids, held_out)


# ---------------------------------------------------------------------------- the plain loop


def plain_intensity(hu: np.ndarray) -> np.ndarray:
    return (np.clip(hu, -175.0, 250.0).astype(np.float32) - 100.0) / 50.0


def ct_intensity(task: Task, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """nnU-Net's CT normalisation from the training cases' tumor voxels, as `tiny-ctnorm`'s."""
    sample = foreground_sample(task.cache, task.train_ids, (LESION,), seed=seed)
    record = ct_normalisation(Preprocessing(spacing_mm=SPACING_MM), sample)
    print(f"  CT normalisation: HU [{record.hu_window[0]:.1f}, {record.hu_window[1]:.1f}] -> "
          f"{record.intensity_range[0]:.2f}..{record.intensity_range[1]:.2f}", flush=True)
    return lambda hu: scale_intensity(hu, record)


def plain_patch(rng, image, label, positive, air):
    """48³ box: centred on a tumor voxel half of the time (where the case has one), else
    uniform; volumes smaller than the patch are padded with air (`air`: its intensity)."""
    if positive is not None and rng.random() < 0.5:
        centre = positive[rng.integers(len(positive))]
        start = [int(np.clip(c - PATCH // 2, 0, max(n - PATCH, 0)))
                 for c, n in zip(centre, image.shape, strict=True)]
    else:
        start = [int(rng.integers(0, max(n - PATCH, 0) + 1)) for n in image.shape]
    box = tuple(slice(s, s + PATCH) for s in start)
    crop_i, crop_l = image[box], label[box]
    pad = [(0, PATCH - n) for n in crop_i.shape]
    return np.pad(crop_i, pad, constant_values=air), np.pad(crop_l, pad)


def plain_loop(
    task: Task, iterations: int, checkpoints: list[int], seed: int, name: str = "plain",
    intensity: Callable[[np.ndarray], np.ndarray] = plain_intensity,
) -> Curve:
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    volumes = {}
    for case_id in task.train_ids + task.held_out:
        hu, bits = task.cache.read_case_hu(case_id)
        label = structure_mask(bits, LESION).astype(np.int64)
        positive = np.argwhere(label) if label.any() else None
        volumes[case_id] = (intensity(hu), label, positive)
    air = float(intensity(np.array([-1000.0]))[0])
    net = UNet(3, 1, 2, norm="INSTANCE", **UNET_WIDTH)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=3e-5)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: (1 - min(i, iterations - 1) / iterations) ** 0.9)
    curve, elapsed, losses = Curve(name), 0.0, []
    for iteration in range(1, iterations + 1):
        start = time.perf_counter()
        net.train()
        pairs = []
        for _ in range(2):
            image, label, positive = volumes[task.train_ids[rng.integers(len(task.train_ids))]]
            pairs.append(plain_patch(rng, image, label, positive, air))
        x = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None]
        y = torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None]
        optimizer.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        elapsed += time.perf_counter() - start
        if iteration in checkpoints:
            net.eval()
            scores = []
            with torch.no_grad():
                for case_id in task.held_out:
                    image, label, _ = volumes[case_id]
                    logits = sliding_window_inference(
                        torch.from_numpy(image)[None, None], (PATCH,) * 3, 2, net,
                        overlap=0.25, mode="gaussian")
                    predicted = logits.argmax(1)[0].numpy() == 1
                    truth = label == 1
                    scores.append(2 * (predicted & truth).sum() / (predicted.sum() + truth.sum()))
            curve.points.append((iteration, elapsed, float(np.mean(scores))))
            print(f"  {name:6s} {iteration:5d} it  {elapsed:7.1f} s  DSC {curve.points[-1][2]:.3f}",
                  flush=True)
    curve.losses = _loss_ends(losses)
    return curve


def _loss_ends(losses: list[float]) -> tuple[float, float]:
    tenth = max(1, len(losses) // 10)
    return float(np.mean(losses[:tenth])), float(np.mean(losses[-tenth:]))


# ---------------------------------------------------------------------------- tumorscale runs


def tumorscale_run(
    task: Task, workdir: Path, name: str, network: str, overrides: dict, iterations: int,
    n_checkpoints: int, patch: int, seed: int, extra: tuple[str, ...] = (),
) -> Curve:
    every = max(1, iterations // n_checkpoints)
    out = workdir / f"run_{name}"
    config = load_config(None, [
        f"out={out}", f"data.root={task.data}", f"data.cache={task.cache.root}",
        f"data.preprocessing.spacing_mm=[{SPACING_MM},{SPACING_MM},{SPACING_MM}]", "organs=[liver]",
        f"data.real_cases={json.dumps(task.train_ids)}",
        f"data.validation_cases={json.dumps(task.held_out)}",
        f"model.network={network}", f"model.overrides={json.dumps(overrides)}",
        f"patch_size=[{patch},{patch},{patch}]", "batch_size=2", "foreground_fraction=0.5",
        "synthesis.on_the_fly=false", "augment=false", "optim.name=adamw", "optim.lr=0.003",
        f"epochs={iterations // every}", f"iterations_per_epoch={every}",
        "validate_every_epochs=1", "validation_windows_overlap=0.25", "workers=0",
        f"seed={seed}", "log_every=10", "device=cpu", *extra,
    ])
    result = train(config)
    seconds = _training_seconds(out / "log.csv")
    curve = Curve(name)
    for record in result.validation:
        iteration = int(record["iteration"])
        curve.points.append((iteration, seconds[iteration], float(record[f"dsc/{LESION}"])))
        print(f"  {name:6s} {iteration:5d} it  {seconds[iteration]:7.1f} s  "
              f"DSC {curve.points[-1][2]:.3f}", flush=True)
    curve.losses = _loss_ends(result.losses)
    return curve


def _training_seconds(log: Path) -> dict[int, float]:
    """Cumulative training seconds at each logged iteration (validation is not in the log)."""
    total, seconds = 0.0, {}
    with log.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            total += float(row["seconds"])
            seconds[int(row["iteration"])] = total
    return seconds


# ---------------------------------------------------------------------------- report


def report(curves: dict[str, Curve]) -> None:
    print("\nrun              final it   train s   held-out DSC   loss first→last 10 %")
    for curve in curves.values():
        iteration, seconds, dsc = curve.final
        first, last = curve.losses
        print(f"{curve.name:15s} {iteration:9d} {seconds:9.1f} {dsc:14.3f}   "
              f"{first:.3f} → {last:.3f}")
    for baseline in ("plain", "plain-ctnorm"):
        if baseline in curves:
            _report_against(curves, baseline)


def _report_against(curves: dict[str, Curve], baseline: str) -> None:
    """When each other run first reached the baseline's final DSC, as a share of its time."""
    _, base_seconds, base_dsc = curves[baseline].final
    print(f"\n{baseline}: final held-out DSC {base_dsc:.3f} after {base_seconds:.1f} s")
    for name, curve in curves.items():
        if name == baseline:
            continue
        reached = curve.time_to(base_dsc)
        if reached is None:
            best = max(point[2] for point in curve.points)
            print(f"{name:15s} never reached {base_dsc:.3f} (best {best:.3f})")
        else:
            print(f"{name:15s} reached {base_dsc:.3f} after {reached:.1f} s = "
                  f"{reached / base_seconds:.2f}x the {baseline} loop's time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="plain,tiny,tiny-ctnorm,tiny-bf16,unet,S")
    parser.add_argument("--iterations", type=int, default=1200)
    parser.add_argument("--checkpoints", type=int, default=6)
    parser.add_argument("--s-iterations", type=int, default=120,
                        help="budget of preset S (3.6 s per iteration at 64³ on 2 CPU cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as temporary:
        workdir = args.workdir or Path(temporary)
        task = make_task(workdir, args.seed)
        print(f"task: {len(task.train_ids)} training, {len(task.held_out)} held-out phantoms")
        every = max(1, args.iterations // args.checkpoints)
        checkpoints = list(range(every, args.iterations + 1, every))
        curves: dict[str, Curve] = {}
        for name in args.runs.split(","):
            print(f"{name}:", flush=True)
            if name == "plain":
                curves[name] = plain_loop(task, args.iterations, checkpoints, args.seed)
            elif name == "plain-ctnorm":
                curves[name] = plain_loop(task, args.iterations, checkpoints, args.seed, name,
                                          ct_intensity(task, args.seed))
            elif name in VARIANTS:
                network, overrides, extra = VARIANTS[name]
                curves[name] = tumorscale_run(task, workdir, name, network, overrides,
                                              args.iterations, args.checkpoints, PATCH, args.seed,
                                              extra=extra)
            elif name == "S":
                # S has 6 stages (size divisor 32, smallest input 64³): a 64³ patch, not 48³.
                curves[name] = tumorscale_run(task, workdir, name, "S", {}, args.s_iterations,
                                              3, 64, args.seed)
            else:
                curves[name] = tumorscale_run(task, workdir, name, name, {}, args.iterations,
                                              args.checkpoints, PATCH, args.seed)
        report(curves)


if __name__ == "__main__":
    main()
