"""Writing a phantom cohort in AbdomenAtlas layout: atomic per file, resumable per case.

    OUT/BDMAP_00000001/ct.nii.gz                       int16 HU
    OUT/BDMAP_00000001/segmentations/<name>.nii.gz     uint8 masks on the CT's grid
    OUT/BDMAP_00000001/.phantom-complete               written last: what the case was made with
    OUT/phantom_manifest.json                          per case: sex, style, grid, tumors
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tumorscale.io import Volume, content_fingerprint, write_nifti, write_text_atomic
from tumorscale.phantom.case import case_id, generate_phantom
from tumorscale.phantom.options import PhantomOptions

COMPLETE_MARKER = ".phantom-complete"
MANIFEST_NAME = "phantom_manifest.json"
FORMAT_VERSION = 1


def _signature(seed: int, index: int, options: PhantomOptions) -> dict:
    return {"format": FORMAT_VERSION, "seed": int(seed), "index": int(index),
            "options": json.loads(options.signature())}


def _completed_record(folder: Path, signature: dict) -> dict | None:
    """The stored record of a case completed with the same signature, else None."""
    marker = folder / COMPLETE_MARKER
    try:
        stored = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if stored.get("signature") != signature:
        return None
    record = stored.get("record", {})
    try:  # a file replaced or edited by hand since: generated again
        unchanged = content_fingerprint(_outputs(folder, record.get("files", []))) == stored.get(
            "outputs"
        )
    except OSError:  # a file is missing
        return None
    return record if unchanged else None


def _outputs(folder: Path, names: list[str]) -> list[Path]:
    return [folder / "ct.nii.gz", *(folder / "segmentations" / f"{n}.nii.gz" for n in names)]


def write_case(folder: Path, seed: int, index: int, options: PhantomOptions) -> dict:
    """Generate one case and write it (files atomically, the marker last); returns its record."""
    case = generate_phantom(seed, index, options)
    segmentations = folder / "segmentations"
    segmentations.mkdir(parents=True, exist_ok=True)
    # Stale files of an earlier, different run of this case would break the layout.
    (folder / COMPLETE_MARKER).unlink(missing_ok=True)
    for existing in segmentations.glob("*.nii.gz"):
        if existing.name.removesuffix(".nii.gz") not in case.masks:
            existing.unlink()
    write_nifti(case.ct, folder / "ct.nii.gz", dtype=np.int16)
    for name in case.masks:
        mask = Volume(case.masks[name], case.ct.affine)
        write_nifti(mask, segmentations / f"{name}.nii.gz", dtype=np.uint8)
    record = {**case.record(), "files": sorted(case.masks)}
    marker = {"signature": _signature(seed, index, options), "record": record,
              "outputs": content_fingerprint(_outputs(folder, sorted(case.masks)))}  # fmt: skip
    write_text_atomic(folder / COMPLETE_MARKER, json.dumps(marker, indent=1, sort_keys=True))
    return record


def write_cohort(
    out: Path,
    cases: int,
    seed: int,
    options: PhantomOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Write `cases` phantoms (ids BDMAP_00000001...) under `out`; returns the case ids.

    Cases already complete with the same seed and options are skipped (rerun after a crash to
    finish). `progress(done, total)` is called after each case. The manifest is rewritten last.
    """
    options = options or PhantomOptions()
    if not isinstance(cases, int | np.integer) or isinstance(cases, bool) or cases < 1:
        raise ValueError(f"cases must be an integer >= 1; got {cases!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records, ids = [], []
    for index in range(1, int(cases) + 1):
        folder = out / case_id(index)
        record = _completed_record(folder, _signature(seed, index, options))
        if record is None:
            record = write_case(folder, seed, index, options)
        records.append(record)
        ids.append(case_id(index))
        if progress is not None:
            progress(index, int(cases))
    manifest = {"generator": "tumorscale.phantom", "format": FORMAT_VERSION, "seed": int(seed),
                "options": asdict(options), "cases": records}
    write_text_atomic(out / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return ids
