"""Phantom generation speed: `tumorscale.phantom.generate_phantom` on a 256×256×128 grid.

Baselines, measured in the same run:
- naive rendering: the same phantom with every layer evaluated on the full grid (no bounding
  boxes, no per-segment boxes for tubes) — what the bounding-box design saves. Measured on a
  128×128×64 grid (the naive version takes minutes at full size); ours is timed there too.
- writing: the time to write the finished phantom's files (ct + masks, gzip NIfTI), the floor any
  `tumorscale phantom` run pays anyway.
Also times one phantom at the default spacing (0.6-1.0 mm in-plane, 1-5 mm slices).

    python benchmarks/bench_phantom.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from unittest import mock

import numpy as np

from tumorscale.phantom import PhantomOptions, generate_phantom
from tumorscale.phantom.cohort import write_case
from tumorscale.phantom.geometry import Implicit
from tumorscale.phantom.render import Canvas


@dataclass(frozen=True)
class FullGrid(Implicit):
    """A shape evaluated pointwise over the whole grid (the naive renderer)."""

    inner: Implicit

    def bounds(self):
        return np.full(3, -1e9), np.full(3, 1e9)

    def distance(self, x, y, z):
        return self.inner.distance(x, y, z)


def naive_paint(self: Canvas, layer, hu_table):
    return _original_paint(self, replace(layer, shape=FullGrid(layer.shape)), hu_table)


_original_paint = Canvas.paint


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    full = PhantomOptions(shape=(256, 256, 128), tumor_fraction=1.0)
    small = PhantomOptions(shape=(128, 128, 64), tumor_fraction=1.0)
    voxels = 256 * 256 * 128

    ours = best_of(args.repeats, lambda: generate_phantom(0, 1, full))
    print(f"256x256x128 phantom: {ours:.2f} s ({ours / voxels * 1e6:.3f} s per million voxels)")

    with tempfile.TemporaryDirectory() as folder:
        writing = best_of(args.repeats, lambda: write_case(Path(folder) / "case", 0, 1, full))
    write_only = writing - ours
    print(f"writing its files (gzip NIfTI): {write_only:.2f} s -> generate / write ratio "
          f"{ours / write_only:.2f}")

    ours_small = best_of(args.repeats, lambda: generate_phantom(0, 1, small))
    with mock.patch.object(Canvas, "paint", naive_paint):
        naive_small = best_of(1, lambda: generate_phantom(0, 1, small))
    print(f"128x128x64 phantom: bounding boxes {ours_small:.2f} s, naive full-grid "
          f"{naive_small:.2f} s -> speed-up x{naive_small / ours_small:.1f}")

    default = PhantomOptions(tumor_fraction=1.0)
    start = time.perf_counter()
    case = generate_phantom(0, 1, default)
    default_time = time.perf_counter() - start
    shape = case.ct.shape
    print(f"default spacing phantom {shape} at {tuple(round(s, 2) for s in case.ct.spacing)} mm: "
          f"{default_time:.2f} s ({default_time / np.prod(shape) * 1e6:.3f} s per million voxels)")


if __name__ == "__main__":
    main()
