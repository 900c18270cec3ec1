"""Training speed on CPU: input-pipeline patches/s and model iterations/s.

Cohort: 4 phantoms at their default size (about 450×330×150 voxels, 0.6–1.0 × 1–5 mm), two with
tumors, preprocessed to 1.5 mm. Measured in the same run, one process each:
- baseline: what a plain loader does per sample: nibabel-load the CT and the lesion mask of a
  case (gzipped NIfTI) and crop a random 96³ patch (no resampling, no augmentation);
- tumorscale `PatchStream`, 96³ patches, augmentation on: real patches only, and the default mix
  with tumors synthesized on the fly in healthy cases (synthetic:real = 3);
- augmentation alone, on the same real patches, interleaved: the nnU-Net chain as MONAI
  dictionary transforms (`monai_augment.py`, the baseline) against `tumorscale.data.augment`;
- model only (`benchmark_random_data`: random tensors): SGD iterations/s with Dice+CE deep
  supervision for preset `tiny` (64³, batch 2) and `S` (96³, batch 2), torch threads = cores.
It then prints how many data workers one accelerator needs at a few model speeds.

    python benchmarks/bench_train.py [--samples 40] [--iterations 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

# benchmarks/ is on sys.path (the script's folder)
from monai_augment import build_monai_augmentation, monai_augment

from tumorscale.data import PreprocessedCache, PreprocessSettings, preprocess_dataset
from tumorscale.data.augment import AugmentSettings, augment, build_augmentation
from tumorscale.data.labels import label_map
from tumorscale.data.pipeline import PatchStream, PipelineConfig
from tumorscale.models import DeepSupervisionLoss, build_network
from tumorscale.phantom import PhantomOptions, write_cohort

CLASSES = ("background", "pancreas_lesion", "kidney_lesion", "liver_lesion")
PATCH = (96, 96, 96)


def make_cohort(folder: Path) -> tuple[Path, PreprocessedCache]:
    options = PhantomOptions(tumor_fraction=0.5, female_fraction=0.0,
                             tumor_organs=("pancreas", "kidney", "liver"))
    write_cohort(folder / "data", cases=4, seed=0, options=options)
    preprocess_dataset(folder / "data", folder / "cache", PreprocessSettings(), workers=2)
    return folder / "data", PreprocessedCache.open(folder / "cache")


def naive_patches_per_s(data: Path, samples: int) -> float:
    cases = sorted(p for p in data.iterdir() if p.is_dir())
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for index in range(samples):
        case = cases[index % len(cases)]
        ct = np.asarray(nib.load(case / "ct.nii.gz").dataobj)
        lesion = np.asarray(nib.load(case / "segmentations" / "pancreas_lesion.nii.gz").dataobj)
        corner = [int(rng.integers(0, max(1, n - p))) for n, p in zip(ct.shape, PATCH, strict=True)]
        box = tuple(slice(c, c + p) for c, p in zip(corner, PATCH, strict=True))
        _ = ct[box].astype(np.float32), lesion[box].astype(np.int64)
    return samples / (time.perf_counter() - start)


def stream_patches_per_s(cache: PreprocessedCache, samples: int, synthesize: bool) -> float:
    status = {c: cache.case_meta(c)["tumor_status"] for c in cache.case_ids}
    real = tuple(c for c in cache.case_ids if "positive" in status[c].values())
    healthy = tuple(c for c in cache.case_ids if c not in real)
    config = PipelineConfig(
        cache_root=cache.root, class_names=CLASSES, real_case_ids=real,
        healthy_case_ids=healthy if synthesize else (), patch_size=PATCH,
        synthetic_ratio=3.0 if synthesize else 0.0, on_the_fly=synthesize,
        augment=AugmentSettings(),
    )
    stream = PatchStream(config)
    stream.sample(0)  # warm-up: opens files
    start = time.perf_counter()
    for index in range(1, samples + 1):
        stream.sample(index)
    return samples / (time.perf_counter() - start)


def augmentation_ms(cache: PreprocessedCache, samples: int) -> tuple[float, float]:
    """Mean ms per patch of the MONAI chain and of ours, alternating on the same patches and
    seeds (one torch thread, as in a data worker)."""
    rng = np.random.default_rng(1)
    patches = []
    for index in range(samples):
        case = cache.case_ids[index % len(cache.case_ids)]
        start = [int(rng.integers(0, max(1, n - p))) for n, p in
                 zip(cache.image_shape(case), PATCH, strict=True)]
        image, bits = cache.read_patch(case, start, PATCH)
        patches.append((image, label_map(bits, CLASSES)))
    chains = {"monai": (build_monai_augmentation(AugmentSettings()), monai_augment),
              "ours": (build_augmentation(AugmentSettings()), augment)}
    spent = dict.fromkeys(chains, 0.0)
    for seed, (image, label) in enumerate(patches):
        for name, (chain, apply) in chains.items():
            begin = time.perf_counter()
            apply(chain, image, label, seed)
            spent[name] += time.perf_counter() - begin
    return 1000 * spent["monai"] / samples, 1000 * spent["ours"] / samples


def iterations_per_s(preset: str, patch: int, iterations: int) -> float:
    torch.manual_seed(0)
    network = build_network(preset, 1, len(CLASSES))
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    loss_fn = DeepSupervisionLoss()
    image = torch.rand(2, 1, patch, patch, patch)
    label = torch.randint(0, len(CLASSES), (2, patch, patch, patch))
    times = []
    for _ in range(iterations + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss_fn(network(image), label).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times[1:])  # the first includes allocator warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data, cache = make_cohort(Path(folder))
        naive = naive_patches_per_s(data, max(8, args.samples // 4))
        real = stream_patches_per_s(cache, args.samples, synthesize=False)
        mixed = stream_patches_per_s(cache, args.samples, synthesize=True)
        monai_ms, ours_ms = augmentation_ms(cache, 2 * args.samples)
    print("input pipeline, one process, 96³ patches")
    print(f"  baseline: load NIfTI + crop          {naive:7.2f} patches/s   1.0x")
    print(f"  PatchStream, real only, augmented     {real:7.2f} patches/s   {real / naive:.1f}x")
    print(f"  PatchStream, 3:1 on-the-fly synthesis {mixed:7.2f} patches/s   {mixed / naive:.1f}x")
    print("augmentation alone (nnU-Net chain, same patches and seeds, one thread)")
    print(f"  baseline: MONAI dictionary transforms {monai_ms:7.1f} ms/patch   1.0x")
    print(f"  tumorscale.data.augment               {ours_ms:7.1f} ms/patch   "
          f"{monai_ms / ours_ms:.1f}x")
    tiny = iterations_per_s("tiny", 64, args.iterations * 4)
    small = iterations_per_s("S", 96, args.iterations)
    print(f"model only (random data), {torch.get_num_threads()} CPU threads, batch 2")
    print(f"  tiny 64³: {tiny:6.2f} it/s = {2 * tiny:6.2f} patches/s")
    print(f"  S    96³: {small:6.3f} it/s = {2 * small:6.3f} patches/s")
    print("data workers needed per accelerator (batch 2, 3:1 synthesis, augmented):")
    for speed in (2, 5, 10):
        print(f"  model at {speed:2d} it/s needs {2 * speed / mixed:5.1f} workers")


if __name__ == "__main__":
    main()
