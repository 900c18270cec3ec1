"""Writing a phantom cohort in AbdomenAtlas layout: atomic per file, resumable per case.

    OUT/BDMAP_00000001/ct.nii.gz                       int16 HU
    OUT/BDMAP_00000001/segmentations/<name>.nii.gz     uint8 masks on the CT's grid
    OUT/BDMAP_00000001/.phantom-complete               written last: what the case was made with
    OUT/phantom_manifest.json                          per case: sex, style, grid, tumors
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tumorscale.errors import TumorscaleError
from tumorscale.io import Volume, write_nifti, write_text_atomic
from tumorscale.jobs import (
    JobReport,
    Outcome,
    Progress,
    Tally,
    attempt,
    clear_marker,
    completed_marker,
    run_cases,
    write_marker,
)
from tumorscale.phantom.case import case_id, generate_phantom
from tumorscale.phantom.options import PhantomOptions

COMPLETE_MARKER = ".phantom-complete"
MANIFEST_NAME = "phantom_manifest.json"
FORMAT_VERSION = 1


def _signature(seed: int, index: int, options: PhantomOptions) -> dict:
    return {"format": FORMAT_VERSION, "seed": int(seed), "index": int(index),
            "options": json.loads(options.signature())}


def _completed_record(folder: Path, signature: dict) -> dict | None:
    """The stored record of a case completed with the same signature and unchanged files (the
    marker holds their sha256: a file replaced or edited by hand since is generated again)."""
    marker = completed_marker(folder / COMPLETE_MARKER, None, signature)
    return None if marker is None else marker.get("record")


def _outputs(folder: Path, names: list[str]) -> list[Path]:
    return [folder / "ct.nii.gz", *(folder / "segmentations" / f"{n}.nii.gz" for n in names)]


def write_case(folder: Path, seed: int, index: int, options: PhantomOptions) -> dict:
    """Generate one case and write it (files atomically, the marker last); returns its record."""
    case = generate_phantom(seed, index, options)
    segmentations = folder / "segmentations"
    segmentations.mkdir(parents=True, exist_ok=True)
    # Stale files of an earlier, different run of this case would break the layout.
    clear_marker(folder / COMPLETE_MARKER)
    for existing in segmentations.glob("*.nii.gz"):
        if existing.name.removesuffix(".nii.gz") not in case.masks:
            existing.unlink()
    write_nifti(case.ct, folder / "ct.nii.gz", dtype=np.int16)
    for name in case.masks:
        mask = Volume(case.masks[name], case.ct.affine)
        write_nifti(mask, segmentations / f"{name}.nii.gz", dtype=np.uint8)
    record = {**case.record(), "files": sorted(case.masks)}
    write_marker(folder / COMPLETE_MARKER, None, _signature(seed, index, options),
                 _outputs(folder, sorted(case.masks)), hashed=True, payload={"record": record})
    return record


def _make_case(job: tuple[Path, int, int, PhantomOptions]) -> list[Outcome]:
    folder, seed, index, options = job
    return [attempt(case_id(index), folder, write_case, folder, seed, index, options,
                    errors=(TumorscaleError, OSError))]  # fmt: skip


def write_cohort(
    out: Path,
    cases: int,
    seed: int,
    options: PhantomOptions | None = None,
    progress: Progress | None = None,
) -> JobReport:
    """Write `cases` phantoms (ids BDMAP_00000001...) under `out`; returns the job's report
    (`report.complete`: the ids of every case now in `out`).

    Cases already complete with the same seed and options are skipped (rerun after a crash to
    finish); a case that cannot be written is recorded in the report and the others go on.
    `progress(done, total)` counts cases. The manifest is rewritten last.
    """
    options = options or PhantomOptions()
    if not isinstance(cases, int | np.integer) or isinstance(cases, bool) or cases < 1:
        raise ValueError(f"cases must be an integer >= 1; got {cases!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = JobReport(out)
    records: dict[str, dict] = {}
    todo = []
    for index in range(1, int(cases) + 1):
        folder = out / case_id(index)
        record = _completed_record(folder, _signature(seed, index, options))
        if record is None:
            todo.append((folder, int(seed), index, options))
        else:
            records[case_id(index)] = record
            report.skipped.append(case_id(index))
    tally = Tally(int(cases), progress)
    tally.start(len(report.skipped))
    for outcome in run_cases(todo, _make_case, report, tally):
        if outcome.error is None:
            records[outcome.case_id] = outcome.value
    manifest = {"generator": "tumorscale.phantom", "format": FORMAT_VERSION, "seed": int(seed),
                "options": asdict(options), "cases": [records[k] for k in sorted(records)]}
    write_text_atomic(out / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return report.finish()
