"""The union of several mask files of one structure (name variants, left + right, sub-types)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tumorscale.io.grids import check_same_grid
from tumorscale.io.nifti import read_nifti
from tumorscale.io.volume import Geometry, Volume


def read_mask_union(
    paths: Sequence[Path],
    reference_path: Path | None = None,
    reference: Geometry | None = None,
    canonical: bool = False,
) -> Volume:
    """Boolean union of binary mask files, all on one grid.

    Each file's on-disk grid must equal `reference` (e.g. the CT's, named `reference_path`), or
    the first file's when no reference is given; otherwise `GridMismatchError` names the file.
    `canonical` returns the union in RAS, else in the files' on-disk orientation.
    """
    if not paths:
        raise ValueError("no mask files given")
    union: Volume | None = None
    for path in paths:
        mask = read_nifti(path, kind="mask", canonical=canonical)
        on_disk = mask.source if mask.source is not None else mask.geometry
        if reference is not None:
            check_same_grid(path, on_disk, reference_path or path, reference)
        else:
            reference, reference_path = on_disk, path
        array = mask.array.astype(bool)
        union = mask.with_array(array) if union is None else union.with_array(union.array | array)
    assert union is not None
    return union
