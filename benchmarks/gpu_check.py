"""GPU figures in one command: training speed and memory, data-pipeline feed, prediction time.

Run once on a GPU machine (no network needed; about 8 minutes on one H100):

    python benchmarks/gpu_check.py [--out gpu_check.json]
    python benchmarks/gpu_check.py --smoke      # tiny sizes on CPU, for CI (about a minute)

It reports, each measured in this process:
- the machine: card, driver, torch, CUDA and cuDNN versions;
- training with random tensors (preset M, 96³, batch 2, bf16; the same for S and L, and M with
  `torch.compile`): iterations/s, peak memory, and the same network's convolutions alone (each
  Conv3d's forward and backward at the shape it meets in the network, summed): the step's share
  of that pure-convolution throughput (target for M: >= 35 %);
- training with the real input pipeline (phantoms preprocessed here, 3:1 on-the-fly synthesis,
  augmentation) at 4, 8 and 12 data workers: iterations/s and the share of steps that waited
  for data (target: <= 10 % with <= 8 workers);
- prediction with preset M on a 512×512×300 CT at 0.8 mm (1.5 mm model grid): seconds per case
  without and with 8× mirror TTA, and MONAI's `sliding_window_inference` on the same network,
  windows and precision (ratio, target <= 1.0; largest difference; M + TTA target <= 5 s);
- `bench_learning.py`'s task with presets `tiny` and `S` on this device: held-out DSC against
  training seconds.
Figures for `benchmarks/RESULTS.md` come from a real run, never from `--smoke`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference as monai_sliding_window

from tumorscale.data import PreprocessedCache, PreprocessSettings, preprocess_dataset
from tumorscale.infer.preprocess import prepare_input
from tumorscale.infer.sliding_window import ALL_AXES, sliding_window_inference
from tumorscale.io import Volume
from tumorscale.models import DeepSupervisionLoss, ModelSpec, build_network, get_preset
from tumorscale.models.compute import autocast
from tumorscale.phantom import PhantomOptions, write_cohort
from tumorscale.train import load_config
from tumorscale.train.cases import case_roles
from tumorscale.train.data import training_batches
from tumorscale.train.distributed import Distributed
from tumorscale.train.loop import model_spec

sys.path.insert(0, str(Path(__file__).parent))
import bench_learning

CLASSES = 4  # background + three organs' lesions, as the phantoms' training uses
WAIT_S = 0.002  # a step "waited for data" when fetching its batch took longer than this


@dataclass(frozen=True)
class Sizes:
    """What one mode measures: the full check or the CPU smoke test."""

    device: str
    presets: tuple[str, ...]  # training with random tensors
    patch: int
    steps: int
    warmup: int
    compile_preset: str | None
    workers: tuple[int, ...]
    pipeline_preset: str
    pipeline_cases: int
    phantom_shape: tuple[int, int, int]
    ct_shape: tuple[int, int, int]
    ct_spacing_mm: tuple[float, float, float]
    predict_preset: str
    learning: bool


FULL = Sizes("cuda", ("M", "S", "L"), 96, 30, 5, "M", (4, 8, 12), "M", 8, (256, 192, 160),
             (512, 512, 300), (0.8, 0.8, 0.8), "M", True)  # fmt: skip
SMOKE = Sizes("cpu", ("tiny",), 32, 2, 1, None, (1,), "tiny", 2, (96, 80, 48),
              (32, 32, 30), (3.0, 3.0, 3.0), "tiny", False)  # fmt: skip


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {"torch": torch.__version__, "python": platform.python_version(),
                               "device": str(device)}  # fmt: skip
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(card=properties.name, memory_gib=round(properties.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    driver=_driver())  # fmt: skip
    else:
        info.update(card=platform.processor() or platform.machine())
    return info


def _driver() -> str:
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ----------------------------------------------------------------------------- training


def _timed_steps(step: Callable[[], None], device: torch.device, warmup: int, steps: int) -> float:
    """Median seconds of `step` after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    sync(device)
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync(device)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def training_step(network: torch.nn.Module, batch: dict[str, torch.Tensor],
                  device: torch.device) -> Callable[[], None]:
    """One SGD step of the paper's recipe (Dice + CE with deep supervision, bf16 on CUDA)."""
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    loss_fn = DeepSupervisionLoss()
    amp = "bf16" if device.type == "cuda" else "none"

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = loss_fn(network(batch["image"]), batch["label"])
        loss.backward()
        optimizer.step()

    return step


def random_batch(patch: int, device: torch.device) -> dict[str, torch.Tensor]:
    shape = (2, 1, patch, patch, patch)
    return {"image": torch.rand(shape, device=device),
            "label": torch.randint(0, CLASSES, shape, device=device)}  # fmt: skip


def conv_only_seconds(network: torch.nn.Module, batch: dict[str, torch.Tensor],
                      device: torch.device, steps: int) -> float:
    """Forward + backward of every Conv3d alone, at the input shape it meets, summed."""
    shapes: list[tuple[torch.nn.Conv3d, torch.Size]] = []
    hooks = [module.register_forward_pre_hook(lambda m, a: shapes.append((m, a[0].shape)))
             for module in network.modules() if isinstance(module, torch.nn.Conv3d)]  # fmt: skip
    with torch.no_grad(), autocast(device, "bf16" if device.type == "cuda" else "none"):
        network(batch["image"])
    for hook in hooks:
        hook.remove()
    total = 0.0
    for conv, shape in shapes:
        inputs = torch.randn(shape, device=device, requires_grad=True)

        def one(conv: torch.nn.Conv3d = conv, inputs: torch.Tensor = inputs) -> None:
            with autocast(device, "bf16" if device.type == "cuda" else "none"):
                out = conv(inputs)
            out.float().sum().backward()

        total += _timed_steps(one, device, 1, max(2, steps // 3))
    return total


def train_random(preset: str, sizes: Sizes, device: torch.device, compile_: bool = False) -> dict:
    torch.manual_seed(0)
    network = build_network(preset, 1, CLASSES).to(device).train()
    batch = random_batch(sizes.patch, device)
    conv_s = conv_only_seconds(network, batch, device, sizes.steps) if not compile_ else None
    model = torch.compile(network) if compile_ else network
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_s = _timed_steps(training_step(model, batch, device), device,
                          sizes.warmup + (3 if compile_ else 0), sizes.steps)  # fmt: skip
    row = {"preset": preset, "patch": sizes.patch, "batch": 2, "compile": compile_,
           "iterations_per_s": 1.0 / step_s}  # fmt: skip
    if device.type == "cuda":
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    if conv_s is not None:
        row["conv_only_s"] = conv_s
        row["share_of_conv_throughput"] = conv_s / step_s
    return row


# ----------------------------------------------------------------------------- data pipeline


def phantom_cache(folder: Path, sizes: Sizes) -> PreprocessedCache:
    options = PhantomOptions(shape=sizes.phantom_shape, tumor_fraction=0.5, female_fraction=0.0,
                             tumor_organs=("pancreas", "kidney", "liver"))  # fmt: skip
    write_cohort(folder / "phantoms", sizes.pipeline_cases, 0, options)
    settings = PreprocessSettings(spacing_mm=(1.5, 1.5, 1.5))
    preprocess_dataset(folder / "phantoms", folder / "cache", settings, workers=4)
    return PreprocessedCache.open(folder / "cache", expected=settings)


def train_pipeline(cache: PreprocessedCache, workers: int, sizes: Sizes,
                   device: torch.device) -> dict:
    """Steps of `pipeline_preset` fed by the real loader: it/s and the share that waited."""
    config = load_config(None, [
        f"data.cache={cache.root}", "organs=[pancreas,kidney,liver]", "data.validation_fraction=0",
        f"model.network={sizes.pipeline_preset}",
        f"patch_size=[{sizes.patch},{sizes.patch},{sizes.patch}]", f"workers={workers}",
        "synthesis.ratio=3", "augment=true",
    ])  # fmt: skip
    roles = case_roles(cache, config)
    spec = model_spec(config, cache)
    batches = training_batches(config, cache, roles, spec, Distributed(device=device))
    torch.manual_seed(0)
    network = build_network(sizes.pipeline_preset, 1, len(spec.class_names)).to(device).train()
    first = _to(next(batches), device)
    step = training_step(network, first, device)
    for _ in range(sizes.warmup):
        step()
    waits, seconds = [], []
    for _ in range(sizes.steps * 2):
        start = time.perf_counter()
        batch = _to(next(batches), device)
        fetched = time.perf_counter()
        first["image"], first["label"] = batch["image"], batch["label"]  # the step reads these
        step()
        sync(device)
        waits.append(fetched - start)
        seconds.append(time.perf_counter() - start)
    return {"workers": workers, "iterations_per_s": len(seconds) / sum(seconds),
            "share_waiting": float(np.mean([w > WAIT_S for w in waits])),
            "median_wait_s": statistics.median(waits)}  # fmt: skip


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: batch[key].to(device, non_blocking=True) for key in ("image", "label")}


# ----------------------------------------------------------------------------- prediction


def synthetic_ct(sizes: Sizes) -> Volume:
    rng = np.random.default_rng(0)
    array = rng.normal(40, 30, sizes.ct_shape).astype(np.float32)
    affine = np.diag([*sizes.ct_spacing_mm, 1.0])
    return Volume(array, affine)


def predict(sizes: Sizes, device: torch.device) -> dict:
    """Seconds per case for ours (no TTA, 8× TTA) and MONAI's, one network and precision."""
    spec = ModelSpec(network=sizes.predict_preset, class_names=("background", "liver_lesion"),
                     patch_size_vox=get_preset(sizes.predict_preset).patch_size_vox)  # fmt: skip
    prepared = prepare_input(synthetic_ct(sizes), spec)
    image = torch.from_numpy(prepared.image)[None, None].to(device)
    network = build_network(sizes.predict_preset, 1, 2).to(device).eval()
    window = spec.patch_size_vox

    def ours(tta: bool) -> torch.Tensor:
        return sliding_window_inference(image, network, window, overlap=0.5, batch_size=2,
                                        mirror_axes=ALL_AXES if tta else (),
                                        bf16=device.type == "cuda")  # fmt: skip

    def monai() -> torch.Tensor:
        with torch.inference_mode(), autocast(device, "bf16" if device.type == "cuda" else "none"):
            return monai_sliding_window(image, window, 2, network, overlap=0.5, mode="gaussian",
                                        sigma_scale=0.125).float()  # fmt: skip

    results = {}
    for name, run in (("ours", lambda: ours(False)), ("monai", monai),
                      ("ours_tta8", lambda: ours(True))):  # fmt: skip
        run()  # warm-up: kernels and allocation
        sync(device)
        start = time.perf_counter()
        results[name] = run()
        sync(device)
        results[f"{name}_s"] = time.perf_counter() - start
    difference = float((results["ours"] - results["monai"]).abs().max())
    return {"preset": sizes.predict_preset, "model_grid": list(prepared.model_shape),
            "ours_s": results["ours_s"], "monai_s": results["monai_s"],
            "ours_over_monai": results["ours_s"] / results["monai_s"],
            "ours_tta8_s": results["ours_tta8_s"], "max_abs_difference": difference}  # fmt: skip


# ----------------------------------------------------------------------------- learning


def learning(folder: Path, device: str) -> dict:
    """`bench_learning.py`'s task on this device: `tiny` (1,200 iterations) and `S` (600)."""
    task = bench_learning.make_task(folder, seed=0)
    curves = {}
    for name, network, patch, iterations in (("tiny", "tiny", 48, 1200), ("S", "S", 64, 600)):
        curve = bench_learning.tumorscale_run(task, folder, name, network, {}, iterations, 6,
                                              patch, 0, extra=(f"device={device}",))  # fmt: skip
        curves[name] = [{"iteration": i, "seconds": s, "dsc": d} for i, s, d in curve.points]
    return curves


# ----------------------------------------------------------------------------- main


def run(sizes: Sizes, folder: Path) -> dict:
    device = torch.device(sizes.device)
    report: dict[str, object] = {"machine": machine(device), "smoke": sizes is SMOKE}
    print(json.dumps(report["machine"]), flush=True)
    training = [train_random(preset, sizes, device) for preset in sizes.presets]
    if sizes.compile_preset:
        training.append(train_random(sizes.compile_preset, sizes, device, compile_=True))
    report["training_random"] = training
    _show("training, random tensors", training)
    cache = phantom_cache(folder, sizes)
    report["training_pipeline"] = [train_pipeline(cache, w, sizes, device) for w in sizes.workers]
    _show(f"training {sizes.pipeline_preset}, real input pipeline", report["training_pipeline"])
    report["prediction"] = predict(sizes, device)
    _show("prediction", [report["prediction"]])
    if sizes.learning:
        report["learning"] = learning(folder / "learning", sizes.device)
        _show("learning", [report["learning"]])
    return report


def _show(title: str, rows: list) -> None:
    print(f"\n{title}:")
    for row in rows:
        print("  " + json.dumps(row, default=float))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU (CI)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else FULL
    if sizes.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; run with --smoke for the CPU test")
    with tempfile.TemporaryDirectory() as temporary:
        report = run(sizes, Path(temporary))
    args.out.write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
