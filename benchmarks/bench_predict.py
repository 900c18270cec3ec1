"""Prediction speed on CPU: tumorscale's sliding window vs MONAI's, plus the per-case stages.

Case: a 512×512×300 CT at 0.78×0.78×1.5 mm (smooth random HU), i.e. a 266×266×300 model grid
at 1.5 mm; the network has 7 outputs (background + six organs' lesions).
Measured in the same run, interleaved (ours, MONAI, MONAI, ours, ...), same network, torch threads =
cores, both under `torch.inference_mode`:
- windows: `tumorscale.infer.sliding_window_inference` vs `monai.inferers.sliding_window_inference`
  (overlap 0.5, Gaussian sigma 0.125, 2 windows per batch, no TTA: MONAI has none) on a crop of
  the model grid (a whole case takes minutes per run on CPU); seconds per window, the seconds
  per case that gives for the full grid's window count, the ratio ours / MONAI, and the largest
  absolute difference between the two outputs. `--full` runs the whole model grid instead.
- our other per-case stages, once: preprocessing (`prepare_input`: resample 512×512×300 to
  1.5 mm, round, clip, scale) and going back (`to_input_grid`: softmax probabilities resized
  to 512×512×300 and argmax), for a typical output (background but three tumors: only their
  box is resized) and the worst case (no voxel sure background: the whole grid is resized).
  The per-case estimate uses the typical one.
- on a CPU with native bfloat16, ours with bf16 autocast as well (what `tumorscale predict` runs
  there by default): its seconds, ratio to MONAI (fp32) and largest difference from MONAI.
Mirror TTA (default in `tumorscale predict`) multiplies the window time by 8.

    python benchmarks/bench_predict.py [--presets tiny S] [--repeats 2] [--quick] [--full]
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference as monai_sliding_window

from tumorscale.infer.preprocess import prepare_input, to_input_grid
from tumorscale.infer.sliding_window import (
    sliding_window_inference,
    window_grid,
)
from tumorscale.io import Volume
from tumorscale.models import ModelSpec, build_network, get_preset
from tumorscale.models.compute import bf16_runs_on, memory_layout

CT_SHAPE = (512, 512, 300)
CT_SPACING_MM = (0.78, 0.78, 1.5)
CLASSES = 7
OVERLAP = 0.5
WINDOWS_PER_BATCH = 2
CROPS = {"tiny": (160, 160, 160), "S": (144, 144, 144)}  # 64 and 8 windows
QUICK_CROPS = {"tiny": (96, 96, 96), "S": (96, 96, 144)}  # 8 and 2 windows


def synthetic_ct(seed: int = 0) -> Volume:
    """Smooth random HU (blurred noise, -1000..1000) on a 512×512×300, 0.78×0.78×1.5 mm grid."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 1, 32, 32, 19, generator=generator)
    smooth = F.interpolate(coarse, size=CT_SHAPE, mode="trilinear", align_corners=False)
    hu = (smooth[0, 0] * 400.0).clamp(-1000, 1000).numpy()
    return Volume(hu, np.diag([*CT_SPACING_MM, 1.0]))


def tumor_probabilities(shape: tuple[int, int, int]) -> torch.Tensor:
    """Softmax of logits that are background everywhere but three spheres (r 6, 10, 20 vox)."""
    logits = torch.zeros(CLASSES, *shape)
    logits[0] = 4.0
    grid = torch.stack(torch.meshgrid(*(torch.arange(n) for n in shape), indexing="ij"))
    for channel, centre, radius in (
        (1, (60, 80, 100), 6),
        (2, (150, 120, 200), 10),
        (3, (200, 180, 60), 20),
    ):
        distance = (grid - torch.tensor(centre).view(3, 1, 1, 1)).float().norm(dim=0)
        logits[channel] = 8.0 * (1 - distance / radius)
    return torch.softmax(logits, dim=0)


def noise_probabilities(shape: tuple[int, int, int]) -> torch.Tensor:
    """Softmax of smooth random logits: no voxel is sure background (the worst case)."""
    coarse = torch.randn(1, CLASSES, 24, 24, 27, generator=torch.Generator().manual_seed(1))
    logits = F.interpolate(coarse, size=shape, mode="trilinear", align_corners=False)[0] * 4
    return torch.softmax(logits, dim=0)


def time_once(function) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def compare_windows(preset: str, image: torch.Tensor, repeats: int) -> dict[str, float]:
    """Interleaved seconds (median) of ours and MONAI's on `image`, and their largest diff."""
    network = build_network(preset, 1, CLASSES).eval()
    window = get_preset(preset).patch_size_vox
    # Ours runs as `tumorscale predict` does: on its own copy of the network, in the device's
    # memory layout (channels-last 3-D on CPU).
    memory_format = memory_layout(image.device)
    tuned = copy.deepcopy(network).to(memory_format=memory_format)
    print(f"{preset}: memory format {memory_format}")

    def ours(bf16: bool = False) -> torch.Tensor:  # bf16: what `predict` runs on such CPUs
        return sliding_window_inference(
            image,
            tuned,
            window,
            overlap=OVERLAP,
            batch_size=WINDOWS_PER_BATCH,
            memory_format=memory_format,
            bf16=bf16,
        )

    def monai() -> torch.Tensor:
        with torch.inference_mode():
            return monai_sliding_window(
                image,
                window,
                WINDOWS_PER_BATCH,
                network,
                overlap=OVERLAP,
                mode="gaussian",
                sigma_scale=0.125,
            )

    with torch.inference_mode():
        network(torch.zeros(WINDOWS_PER_BATCH, 1, *window))  # warm-up: first-call kernels
    runs = {"ours": ours, "monai": monai}
    if bf16_runs_on(image.device):
        runs["ours_bf16"] = functools.partial(ours, bf16=True)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    diffs = dict.fromkeys(runs, 0.0)
    for repeat in range(repeats):
        # Alternate the order, so warm caches or a busy neighbour favour none of them.
        order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
        outputs = {}
        for name in order:
            took, outputs[name] = time_once(runs[name])
            seconds[name].append(took)
        for name in runs:
            diffs[name] = max(diffs[name], float((outputs[name] - outputs["monai"]).abs().max()))
    windows = len(window_grid(image.shape[2:], window, OVERLAP))
    bf16_s = statistics.median(seconds["ours_bf16"]) if "ours_bf16" in runs else float("nan")
    return {
        "ours_s": statistics.median(seconds["ours"]),
        "monai_s": statistics.median(seconds["monai"]),
        "ours_bf16_s": bf16_s,
        "windows": windows,
        "max_abs_diff": diffs["ours"],
        "bf16_max_abs_diff": diffs.get("ours_bf16", float("nan")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "S"])
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="interleaved runs per preset (default 2; 1 with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="smaller crops, one run each")
    parser.add_argument("--full", action="store_true", help="whole model grid (slow on CPU)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")

    ct = synthetic_ct()
    spec = ModelSpec(network="tiny", class_names=("background", "liver_lesion"))
    prepare_s, prepared = time_once(lambda: prepare_input(ct, spec))
    grid_shape = prepared.model_shape
    typical, worst = tumor_probabilities(grid_shape), noise_probabilities(grid_shape)
    back_s, _ = time_once(lambda: to_input_grid(typical, prepared, channels=range(1, CLASSES)))
    worst_s, _ = time_once(lambda: to_input_grid(worst, prepared, channels=range(1, CLASSES)))
    print(f"CT {CT_SHAPE} at {CT_SPACING_MM} mm -> model grid {grid_shape} at 1.5 mm")
    print(
        f"prepare_input {prepare_s:.2f} s; back to the CT grid ({CLASSES} classes): "
        f"{back_s:.2f} s with three tumors, {worst_s:.2f} s when no voxel is sure background"
    )

    image = torch.from_numpy(prepared.image)[None, None]
    crops = QUICK_CROPS if args.quick else CROPS
    print(
        "\npreset  crop             windows  ours s  MONAI s  ratio  max|diff|  "
        "case windows  est. s/case (ours)  | bf16 s  ratio  max|diff|"
    )
    for preset in args.presets:
        window = get_preset(preset).patch_size_vox
        crop = grid_shape if args.full else crops.get(preset, window)
        part = image[(..., *(slice(0, c) for c in crop))].contiguous()
        repeats = args.repeats or (1 if args.quick else 2)
        row = compare_windows(preset, part, repeats)
        case_windows = len(window_grid(grid_shape, window, OVERLAP))
        per_case = row["ours_s"] / row["windows"] * case_windows + prepare_s + back_s
        ratio = row["ours_s"] / row["monai_s"]
        print(
            f"{preset:6s}  {tuple(part.shape[2:])!s:15s}  {row['windows']:7d}  "
            f"{row['ours_s']:6.1f}  {row['monai_s']:7.1f}  {ratio:5.3f}  "
            f"{row['max_abs_diff']:9.2e}  {case_windows:12d}  {per_case:8.0f}  "
            f"| {row['ours_bf16_s']:6.1f}  {row['ours_bf16_s'] / row['monai_s']:5.3f}  "
            f"{row['bf16_max_abs_diff']:9.2e}"
        )


if __name__ == "__main__":
    main()
