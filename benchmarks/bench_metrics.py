"""Metric speed: DSC + NSD (2 mm) + HD95 of one mask pair, tumorscale vs the reference libraries.

Volume 512×512×300 at 0.8×0.8×1.0 mm holding a lobulated 40 mm tumor (truth) and a prediction
that is a differently lobulated, 1 mm larger, shifted copy. Timed in the same run, interleaved
(baseline and tumorscale back to back in each of `--repeats`; ratio = median of the per-repeat
ratios; MONAI, much slower, is timed 3 times):
- DeepMind surface-distance 0.1: `compute_surface_distances` + `compute_surface_dice_at_tolerance`
  + `compute_robust_hausdorff(95)` + `compute_dice_coefficient` (the baseline);
- MONAI: `compute_dice` + `SurfaceDiceMetric(use_subvoxels=True)` (DeepMind-equivalent NSD) +
  `compute_hausdorff_distance(percentile=95)`, on CPU tensors;
- tumorscale: `segmentation_scores` (DSC, NSD, HD95 and mean surface distance together).
It also prints the three libraries' values, which must agree (MONAI's HD95 is a voxel-centre
percentile, a different definition; it is shown for reference).

    python benchmarks/bench_metrics.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from tumorscale.metrics import segmentation_scores

SHAPE = (512, 512, 300)
SPACING = (0.8, 0.8, 1.0)
TOLERANCE_MM = 2.0


def lobulated_tumor(centre_mm, radius_mm: float, seed: int) -> np.ndarray:
    """A sphere whose radius varies with direction (three random lobes), on the benchmark grid."""
    rng = np.random.default_rng(seed)
    margin = int(radius_mm * 1.5 / min(SPACING)) + 2
    centre = [int(c / s) for c, s in zip(centre_mm, SPACING, strict=True)]
    box = tuple(slice(c - margin, c + margin) for c in centre)
    grid = np.ogrid[box]
    offsets = [(g - c / s) * s for g, c, s in zip(grid, centre_mm, SPACING, strict=True)]
    distance = np.sqrt(sum(o**2 for o in offsets)) + 1e-9
    radius = np.full(distance.shape, radius_mm)
    for _ in range(3):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        cosine = sum(o * d for o, d in zip(offsets, direction, strict=True)) / distance
        radius = radius + 0.12 * radius_mm * np.clip(cosine, 0, None) ** 2
    mask = np.ones(SHAPE, bool)  # allocated and touched, as a mask read from a file would be
    mask[:] = False
    mask[box] = distance <= radius * 0.9
    return mask


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    function()  # warm-up (imports, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def deepmind_scores(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    import surface_distance as sd

    distances = sd.compute_surface_distances(truth, pred, SPACING)
    return (
        sd.compute_dice_coefficient(truth, pred),
        sd.compute_surface_dice_at_tolerance(distances, TOLERANCE_MM),
        sd.compute_robust_hausdorff(distances, 95),
    )


def monai_scores(truth: torch.Tensor, pred: torch.Tensor) -> tuple[float, float, float]:
    from monai.metrics import SurfaceDiceMetric, compute_dice, compute_hausdorff_distance

    nsd_metric = SurfaceDiceMetric([TOLERANCE_MM], include_background=True, use_subvoxels=True)
    dice = compute_dice(pred, truth, include_background=True)
    nsd = nsd_metric(pred, truth, spacing=SPACING)
    hd95 = compute_hausdorff_distance(
        pred, truth, include_background=True, percentile=95, spacing=SPACING
    )
    return float(dice), float(nsd), float(hd95)


def tumorscale_scores(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    scores = segmentation_scores(truth, pred, SPACING, TOLERANCE_MM)
    return scores.dsc, scores.nsd, scores.hd95_mm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.set_num_threads(2)
    centre = (205.0, 200.0, 150.0)
    truth = lobulated_tumor(centre, 20.0, seed=1)
    pred = lobulated_tumor((206.5, 199.0, 151.0), 21.0, seed=2)
    truth_t = torch.from_numpy(truth)[None, None]
    pred_t = torch.from_numpy(pred)[None, None]
    diameter = 2 * (3 * truth.sum() * np.prod(SPACING) / (4 * np.pi)) ** (1 / 3)
    print(f"grid {SHAPE} at {SPACING} mm; tumor equivalent diameter {diameter:.1f} mm")

    runs = {
        "surface-distance (baseline)": lambda: deepmind_scores(truth, pred),
        "tumorscale": lambda: tumorscale_scores(truth, pred),
    }
    # Interleaved: each repeat times the baseline and tumorscale back to back, so machine noise
    # hits both; the ratio is the median of the per-repeat ratios.
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    monai_seconds = median_seconds(lambda: monai_scores(truth_t, pred_t), 3)
    baseline = times["surface-distance (baseline)"]
    print(f"{'library':<30} {'seconds':>9} {'vs baseline':>12}   DSC       NSD       HD95 mm")
    rows = [
        (
            name,
            statistics.median(t),
            statistics.median([b / x for b, x in zip(baseline, t, strict=True)]),
        )
        for name, t in times.items()
    ]
    rows.append(("MONAI", monai_seconds, statistics.median(baseline) / monai_seconds))
    values = {"MONAI": monai_scores(truth_t, pred_t), **{name: run() for name, run in runs.items()}}
    for name, seconds, ratio in rows:
        dsc, nsd, hd95 = values[name]
        print(f"{name:<30} {seconds:9.4f} {ratio:11.1f}x   {dsc:.6f}  {nsd:.6f}  {hd95:.4f}")


if __name__ == "__main__":
    main()
