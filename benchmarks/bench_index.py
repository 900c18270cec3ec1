"""Indexing speed: `tumorscale.atlas.index_dataset` on a generated tree of header-sized files.

Baseline, measured in the same run: the naive approach (glob every NIfTI file of every case and
load it with nibabel, as a per-file loop would). Prints seconds and the speed-up ratio.

    python benchmarks/bench_index.py [--cases 10000]
"""

from __future__ import annotations

import argparse
import gzip
import io
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from tumorscale.atlas import index_dataset

SEGMENTATIONS = (
    "liver",
    "pancreas",
    "kidney_left",
    "kidney_right",
    "colon",
    "esophagus",
    "spleen",
    "liver_lesion",
    "pancreatic_lesion",
    "kidney_lesion",
)


def header_sized_nifti(dtype: type, shape: tuple[int, int, int] = (2, 2, 2)) -> bytes:
    """A complete, valid .nii.gz whose size is dominated by its header (a few hundred bytes)."""
    image = nib.Nifti1Image(np.zeros(shape, dtype), np.diag([0.8, 0.8, 2.5, 1.0]))
    buffer = io.BytesIO()
    file_map = image.make_file_map({"image": buffer, "header": buffer})
    image.to_file_map(file_map)
    raw = buffer.getvalue()
    return gzip.compress(raw, mtime=0)


def build_tree(root: Path, cases: int) -> int:
    ct, mask = header_sized_nifti(np.int16), header_sized_nifti(np.uint8)
    files = 0
    for number in range(1, cases + 1):
        folder = root / f"BDMAP_{number:08d}"
        (folder / "segmentations").mkdir(parents=True)
        (folder / "ct.nii.gz").write_bytes(ct)
        for name in SEGMENTATIONS:
            (folder / "segmentations" / f"{name}.nii.gz").write_bytes(mask)
        files += 1 + len(SEGMENTATIONS)
    return files


def naive_index(root: Path) -> int:
    shapes = 0
    for case in sorted(root.glob("BDMAP_*")):
        for path in [case / "ct.nii.gz", *sorted((case / "segmentations").glob("*.nii.gz"))]:
            shapes += len(nib.load(str(path)).shape)
    return shapes


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        build_seconds, files = timed(build_tree, root, args.cases)
        print(f"tree: {args.cases} cases, {files} files (built in {build_seconds:.1f} s)")
        baseline_seconds, _ = timed(naive_index, root)
        ours_seconds, index = timed(index_dataset, root)
        assert len(index) == args.cases and not index.problems
    print(f"baseline (nibabel.load of every file): {baseline_seconds:7.2f} s")
    print(
        f"tumorscale index_dataset:              {ours_seconds:7.2f} s "
        f"({args.cases / ours_seconds:,.0f} cases/s)"
    )
    print(f"speed-up vs baseline: {baseline_seconds / ours_seconds:.1f}x")


if __name__ == "__main__":
    main()
