"""Batch synthesis over an AbdomenAtlas tree: K synthetic cases per healthy case, resumable.

    OUT/BDMAP_00000003_syn01/ct.nii.gz                      int16 HU, the source's geometry
    OUT/BDMAP_00000003_syn01/segmentations/<name>.nii.gz    every source mask, mass-effect-updated
    OUT/BDMAP_00000003_syn01/segmentations/<organ>_lesion.nii.gz   synthetic tumors (uint8)
    OUT/BDMAP_00000003_syn01/.synthesis.json                 written last: what the case holds
    OUT/synthesis.csv                                        one row per tumor, rebuilt every run
    OUT/previews/BDMAP_00000003_syn01_liver_1.png            with `preview=True`

Output ids: `<source id>_synNN`, NN = 01 ... per_case (two digits, so ids sort in order; at most
99 per source). Every output case's randomness comes from (seed, crc32 of the source id, NN,
organ) through `numpy.random.SeedSequence`, so results do not depend on case order, on which
cases already exist, or on the number of workers.

Resumable: a case is built in a hidden `OUT/.partial-*` folder and renamed into place only when
complete; reruns skip cases whose `.synthesis.json` (a `tumorscale.jobs` completion marker that
also holds the case's tumor rows) matches the request and the source files; `synthesis.csv` is
rebuilt from those records, so an interrupted run finished by a rerun equals an uninterrupted
run byte for byte. One run per OUT folder at a time (a run removes stale `.partial-*` folders).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tumorscale.atlas import CaseEntry, TumorStatus, index_dataset, lesion_stats
from tumorscale.errors import InputFileError
from tumorscale.io import (
    Volume,
    check_same_grid,
    input_fingerprint,
    read_geometry,
    read_nifti,
    write_nifti,
)
from tumorscale.jobs import (
    JobReport,
    Outcome,
    Progress,
    State,
    Tally,
    attempt,
    completed_marker,
    marker_state,
    outputs_intact,
    read_marker,
    run_cases,
    write_marker,
)
from tumorscale.organs import ORGANS, TUMOR_ORGANS
from tumorscale.synth.batch_csv import (  # re-exported: where callers found them before
    CSV_COLUMNS,
    PARAM_COLUMNS,
    params_from_row,
    record_row,
    write_synthesis_csv,
)
from tumorscale.synth.types import DEFAULT_SIZE_MIX, TumorRecord

FORMAT_VERSION = 1
RECORD_NAME = ".synthesis.json"
CSV_NAME = "synthesis.csv"
PREVIEW_FOLDER = "previews"
PARTIAL_PREFIX = ".partial-"
MAX_PER_CASE = 99

# What `synthesize_dataset` returns: `done` output cases built by this run, `skipped` already
# complete, `changed` built again because their source's files changed, `failed` (case id,
# reason), `excluded` (source id, reason) for cases that are not healthy sources, and
# `details["tumors"]`: tumors inserted across all complete output cases.


@dataclass(frozen=True)
class SourcePlan:
    """A healthy source case and the requested organs tumors go into (registry order)."""

    case: CaseEntry
    organs: tuple[str, ...]


@dataclass(frozen=True)
class _Settings:
    out: Path
    seed: int
    size_mix: tuple[float, ...]
    tumors_per_organ: int
    preview: bool


def output_case_id(source_id: str, k: int) -> str:
    """Id of synthetic case `k` (1-based) of a source: BDMAP_00000003 -> BDMAP_00000003_syn01."""
    if not 1 <= k <= MAX_PER_CASE:
        raise ValueError(f"synthetic case number must be in 1..{MAX_PER_CASE}; got {k}")
    return f"{source_id}_syn{k:02d}"


def case_seed_sequence(seed: int, source_id: str, k: int, organ: str) -> np.random.SeedSequence:
    """Entropy of (run seed, source id, output number, organ); crc32 is stable across runs."""
    return np.random.SeedSequence(
        [int(seed), zlib.crc32(source_id.encode("utf-8")), int(k), TUMOR_ORGANS.index(organ)]
    )


# ----------------------------------------------------------------------------- selection


def select_sources(
    cases: Sequence[CaseEntry], organs: Sequence[str], allow_unknown: bool = False
) -> tuple[list[SourcePlan], list[tuple[str, str]], list[tuple[str, str]]]:
    """Healthy sources, excluded cases (id, reason) and failed cases (id, reason).

    A case is a source when none of its organs has a tumor (any positive lesion file excludes
    it) and at least one requested organ has a mask and control status (a lesion file, all
    zero), or unknown status (no lesion file) when `allow_unknown`.
    """
    wanted = [organ for organ in TUMOR_ORGANS if organ in set(organs)]
    plans: list[SourcePlan] = []
    excluded: list[tuple[str, str]] = []
    failed: list[tuple[str, str]] = []
    for case in cases:
        if case.ct is None or case.geometry is None:
            failed.append((case.case_id, str(case.ct_problem() or f"{case.ct}: unreadable CT")))
            continue
        reasons, usable, broken = [], [], None
        for organ in TUMOR_ORGANS:
            if not case.organ(organ).has_lesion_file:
                status = TumorStatus.UNKNOWN
            else:
                stats = lesion_stats(case, organ)
                if stats.error is not None:
                    broken = stats.error
                    break
                status = stats.status
            if status == TumorStatus.POSITIVE:
                reasons = [f"{organ} has a tumor"]
                usable = []
                break
            if organ not in wanted:
                continue
            if not case.organ(organ).has_mask:
                reasons.append(f"no {organ} mask")
            elif status == TumorStatus.UNKNOWN and not allow_unknown:
                reasons.append(f"{organ} status unknown (no lesion file)")
            else:
                usable.append(organ)
        if broken is not None:
            failed.append((case.case_id, broken))
        elif usable:
            plans.append(SourcePlan(case, tuple(usable)))
        else:
            excluded.append((case.case_id, "; ".join(reasons) or "no requested organ"))
    return plans, excluded, failed


# ----------------------------------------------------------------------------- records


def _request(settings: _Settings, plan: SourcePlan, k: int) -> dict:
    """The settings an output case is made with (its source's files are fingerprinted apart)."""
    return {
        "format": FORMAT_VERSION,
        "seed": settings.seed,
        "source_id": plan.case.case_id,
        "k": k,
        "organs": list(plan.organs),
        "size_mix": [float(v) for v in settings.size_mix],
        "tumors_per_organ": settings.tumors_per_organ,
    }


def _inputs(plan: SourcePlan) -> list:
    """What an output case is made from: its source's files (name, size, mtime)."""
    source = plan.case
    return input_fingerprint([p for p in [source.ct, *source.segmentation_files] if p])


def completed_record(
    folder: Path, settings: dict | None = None, inputs: list | None = None
) -> dict | None:
    """The `.synthesis.json` of a complete output case (made with `settings` from `inputs`, when
    given); None when missing, outdated, of an older format, or its files are not all there."""
    if settings is not None:
        return completed_marker(folder / RECORD_NAME, inputs, settings)
    stored = read_marker(folder / RECORD_NAME)
    return stored if stored is not None and outputs_intact(folder / RECORD_NAME, stored) else None


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _move_into_place(partial: Path, final: Path) -> None:
    """Rename a finished case folder onto `final`, replacing an incomplete or outdated one."""
    if final.exists():
        prefix = f"{PARTIAL_PREFIX}old-{final.name}-"
        trash = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
        os.replace(final, trash / final.name)
        _remove_tree(trash)
    os.replace(partial, final)


# ----------------------------------------------------------------------------- one source


def read_source(case: CaseEntry, organs: Sequence[str]) -> tuple[Volume, dict, list[Path]]:
    """Read a source case for synthesis into `organs`: its canonical CT (HU), the masks to carry
    (file stem -> uint8, canonical; lesion files left out) and the other organs' lesion files to
    copy through. Raises `InputFileError` for an unreadable file or one off the CT's grid."""
    assert case.ct is not None and case.geometry is not None
    ct = read_nifti(case.ct, kind="image")
    masks: dict[str, np.ndarray] = {}
    copies: list[Path] = []
    synthesized = set(organs)
    for organ in TUMOR_ORGANS:
        for path in case.organ(organ).lesions:
            check_same_grid(path, read_geometry(path), case.ct, case.geometry)
            if organ not in synthesized:
                copies.append(path)  # an all-zero lesion file of another organ: kept as is
    lesion_files = {path for organ in TUMOR_ORGANS for path in case.organ(organ).lesions}
    for path in case.segmentation_files:
        if path in lesion_files:
            continue
        volume = read_nifti(path, kind="mask")
        assert volume.source is not None
        check_same_grid(path, volume.source, case.ct, case.geometry)
        masks[_stem(path)] = volume.array
    return ct, masks, copies


def _stem(path: Path) -> str:
    name = path.name
    return name.removesuffix(".gz").removesuffix(".nii")


def _as_written(ct: Volume) -> Volume:
    """The CT exactly as stored (int16 HU), so previews from memory equal previews from disk."""
    values = np.clip(np.rint(ct.array), -32768, 32767).astype(np.int16)
    return ct.with_array(values)


def synthesize_case(
    ct: Volume, masks: dict[str, np.ndarray], organs: Sequence[str], seed: int, source_id: str,
    k: int, size_mix: Sequence[float] = DEFAULT_SIZE_MIX, tumors_per_organ: int = 1,
) -> tuple[Volume, dict[str, np.ndarray], dict[str, np.ndarray], list[TumorRecord]]:
    """Insert tumors into each organ in turn (registry order), each organ with its own stream.

    Returns the CT, the updated masks, one uint8 lesion mask per organ, and the records. Lesion
    masks of earlier organs ride along with the masks so a later tumor's mass effect moves them.
    """
    from tumorscale.synth import Host, insert_tumors

    phase = Host(ct, masks).phase  # once per case, shared by every organ's tumors
    current = dict(masks)
    lesion_keys: dict[str, str] = {}
    records: list[TumorRecord] = []
    for organ in organs:
        rng = np.random.default_rng(case_seed_sequence(seed, source_id, k, organ))
        result = insert_tumors(
            ct, current, organ, rng, count=tumors_per_organ, size_mix=tuple(size_mix), phase=phase
        )
        ct, previous = result.ct, current
        current = dict(result.masks)
        for key in lesion_keys.values():  # in case the synthesizer returns only what it knows
            current.setdefault(key, previous[key])
        key = ORGANS[organ].lesion_file
        current[key] = result.tumor_mask.astype(np.uint8, copy=False)
        lesion_keys[organ] = key
        records.extend(result.records)
    lesions = {organ: current.pop(key) for organ, key in lesion_keys.items()}
    return ct, current, lesions, records


def _build_case(
    settings: _Settings, plan: SourcePlan, k: int, ct: Volume, masks: dict[str, np.ndarray],
    copies: list[Path],
) -> list[dict]:
    source_id = plan.case.case_id
    case_id = output_case_id(source_id, k)
    new_ct, new_masks, lesions, records = synthesize_case(
        ct, masks, plan.organs, settings.seed, source_id, k, settings.size_mix,
        settings.tumors_per_organ,
    )
    rows, numbers = [], dict.fromkeys(plan.organs, 0)
    for record in records:
        number = None
        if record.skipped is None:
            numbers[record.organ] += 1
            number = numbers[record.organ]
        rows.append(record_row(case_id, source_id, number, record))
    partial = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{case_id}-", dir=settings.out))
    try:
        segmentations = partial / "segmentations"
        segmentations.mkdir()
        written = _as_written(new_ct)
        write_nifti(written, partial / "ct.nii.gz", dtype=np.int16)
        files = ["ct.nii.gz"]
        outputs = dict(new_masks)
        outputs.update({ORGANS[o].lesion_file: mask for o, mask in lesions.items()})
        for name in sorted(outputs):
            array = outputs[name].astype(np.uint8, copy=False)
            write_nifti(written.with_array(array), segmentations / f"{name}.nii.gz", np.uint8)
            files.append(f"segmentations/{name}.nii.gz")
        for path in copies:
            shutil.copyfile(path, segmentations / path.name)
            files.append(f"segmentations/{path.name}")
        if settings.preview:
            from tumorscale.synth.preview import write_case_previews

            write_case_previews(written, lesions, rows, settings.out / PREVIEW_FOLDER)
        record = {"case_id": case_id, "source_id": source_id, "files": sorted(files), "rows": rows}
        write_marker(partial / RECORD_NAME, _inputs(plan), _request(settings, plan, k),
                     [partial / name for name in sorted(files)], payload=record)  # fmt: skip
        _move_into_place(partial, settings.out / case_id)
    finally:
        _remove_tree(partial)
    return rows


def _run_source(job: tuple[_Settings, SourcePlan, tuple[int, ...]]) -> Iterator[Outcome]:
    """Build the output cases `ks` of one source (read once): one outcome per case, or one
    failure for the source when it cannot be read."""
    settings, plan, ks = job
    loaded = attempt(plan.case.case_id, plan.case.folder, read_source, plan.case, plan.organs,
                     errors=(InputFileError, OSError, ValueError))  # fmt: skip
    if loaded.error is not None:
        yield loaded
        return
    ct, masks, copies = loaded.value
    for k in ks:
        case_id = output_case_id(plan.case.case_id, k)
        yield attempt(case_id, plan.case.folder, _build_case, settings, plan, k, ct, masks, copies)


# ----------------------------------------------------------------------------- the batch


def _clean_partials(out: Path) -> None:
    for entry in out.iterdir():
        if entry.name.startswith(PARTIAL_PREFIX) and entry.is_dir():
            _remove_tree(entry)


def synthesize_dataset(
    source: Path,
    out: Path,
    organs: list[str],
    per_case: int,
    seed: int,
    size_mix: Sequence[float] = DEFAULT_SIZE_MIX,
    workers: int = 1,
    preview: bool = False,
    allow_unknown: bool = False,
    progress: Progress | None = None,
    tumors_per_organ: int = 1,
) -> JobReport:
    """Write `per_case` synthetic cases for every healthy case of the AbdomenAtlas tree `source`.

    organs: organs to put tumors in (any of the six); each output case gets `tumors_per_organ`
    tumors in every requested organ its source can take (see `select_sources`), sizes drawn with
    `size_mix` (small:medium:large). `progress(done, total)` counts output cases (complete ones
    count at once; with workers > 1 it advances per source; a source that cannot be read counts
    once). Never writes inside `source`.
    Bad sources and cases are recorded in the report and skipped; the others go on.
    """
    unknown = [organ for organ in organs if organ not in TUMOR_ORGANS]
    if unknown or not organs:
        raise ValueError(f"organs must be among {', '.join(TUMOR_ORGANS)}; got {organs!r}")
    if not isinstance(per_case, int) or not 1 <= per_case <= MAX_PER_CASE:
        raise ValueError(f"per_case must be an integer in 1..{MAX_PER_CASE}; got {per_case!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    mix = tuple(float(v) for v in size_mix)
    if len(mix) != 3 or min(mix) < 0 or sum(mix) <= 0:
        raise ValueError(f"size_mix must be three non-negative weights; got {size_mix!r}")
    if tumors_per_organ < 1:
        raise ValueError(f"tumors_per_organ must be >= 1; got {tumors_per_organ!r}")
    source, out = Path(source), Path(out)
    if out.resolve() == source.resolve():
        raise ValueError("the output folder must differ from the source dataset")
    index = index_dataset(source)
    plans, excluded, failed = select_sources(index.cases, organs, allow_unknown)
    out.mkdir(parents=True, exist_ok=True)
    _clean_partials(out)
    settings = _Settings(out, int(seed), mix, int(tumors_per_organ), bool(preview))
    report = JobReport(out, failed=list(failed), excluded=excluded)

    jobs: list[tuple[_Settings, SourcePlan, tuple[int, ...]]] = []
    for plan in plans:
        todo = []
        for k in range(1, per_case + 1):
            case_id = output_case_id(plan.case.case_id, k)
            marker = out / case_id / RECORD_NAME
            state = marker_state(marker, _inputs(plan), _request(settings, plan, k))
            if state is not State.COMPLETE:
                if state is State.CHANGED:
                    report.changed.append(case_id)
                todo.append(k)
                continue
            report.skipped.append(case_id)
            if preview:
                from tumorscale.synth.preview import previews_for_written_case

                stored = json.loads(marker.read_text(encoding="utf-8"))
                previews_for_written_case(out / case_id, stored["rows"], out / PREVIEW_FOLDER)
        if todo:
            jobs.append((settings, plan, tuple(todo)))

    tally = Tally(len(plans) * per_case, progress)
    tally.start(len(report.skipped))
    run_cases(jobs, _run_source, report, tally, workers)
    rows: list[dict] = []
    for plan in plans:
        for k in range(1, per_case + 1):
            try:
                inputs = _inputs(plan)
            except OSError:  # a source file removed during the run: its output is not listed
                continue
            folder = out / output_case_id(plan.case.case_id, k)
            stored = completed_record(folder, _request(settings, plan, k), inputs)
            if stored is not None:
                rows.extend(stored["rows"])
    write_synthesis_csv(out / CSV_NAME, rows)
    report.details["tumors"] = sum(1 for row in rows if not row.get("skipped"))
    return report.finish()


__all__ = [
    "CSV_COLUMNS",
    "CSV_NAME",
    "MAX_PER_CASE",
    "PARAM_COLUMNS",
    "PARTIAL_PREFIX",
    "PREVIEW_FOLDER",
    "RECORD_NAME",
    "SourcePlan",
    "case_seed_sequence",
    "completed_record",
    "output_case_id",
    "params_from_row",
    "read_source",
    "record_row",
    "select_sources",
    "synthesize_case",
    "synthesize_dataset",
    "write_synthesis_csv",
]
