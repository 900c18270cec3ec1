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
complete; reruns skip cases whose `.synthesis.json` matches the request; `synthesis.csv` is
rebuilt from those records, so an interrupted run finished by a rerun equals an uninterrupted
run byte for byte. One run per OUT folder at a time (a run removes stale `.partial-*` folders).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from tumorscale.atlas import CaseEntry, TumorStatus, index_dataset, lesion_stats
from tumorscale.errors import InputFileError, TumorscaleError
from tumorscale.io import (
    Volume,
    check_same_grid,
    input_fingerprint,
    read_geometry,
    read_nifti,
    write_csv_atomic,
    write_nifti,
    write_text_atomic,
)
from tumorscale.organs import ORGANS, TUMOR_ORGANS
from tumorscale.synth.types import DEFAULT_SIZE_MIX, TumorParams, TumorRecord
from tumorscale.workers import process_pool

FORMAT_VERSION = 1
RECORD_NAME = ".synthesis.json"
CSV_NAME = "synthesis.csv"
PREVIEW_FOLDER = "previews"
PARTIAL_PREFIX = ".partial-"
MAX_PER_CASE = 99

Progress = Callable[[int, int], None]


@dataclass
class BatchReport:
    """What a `synthesize_dataset` run did (ids sorted).

    written: output cases built by this run; skipped: output cases already complete;
    changed: output cases built again because their source's files changed since (in `written`
    once built);
    failed: (case id, reason) for sources that could not be read or outputs that could not be
    built; excluded: (source id, reason) for cases that are not healthy sources;
    tumors: tumors inserted across all complete output cases (synthesis.csv rows not skipped).
    """

    out: Path
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)
    tumors: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


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


# ----------------------------------------------------------------------------- CSV rows


def _param_columns() -> list[str]:
    columns: list[str] = []
    for item in fields(TumorParams):
        if item.name == "organ":
            continue
        if item.name == "center_mm":
            columns += ["center_x_mm", "center_y_mm", "center_z_mm"]
        elif item.name == "semi_axis_scale":
            columns += [f"semi_axis_scale_{i}" for i in (1, 2, 3)]
        elif item.name == "rotation":
            columns += [f"rotation_{r}{c}" for r in (1, 2, 3) for c in (1, 2, 3)]
        else:
            columns.append(item.name)
    return columns


PARAM_COLUMNS: tuple[str, ...] = tuple(_param_columns())
CSV_COLUMNS: tuple[str, ...] = (
    "case_id",
    "source_id",
    "organ",
    "tumor",
    *PARAM_COLUMNS,
    "achieved_contrast_hu",
    "achieved_diameter_mm",
    "organ_median_hu",
    "skipped",
)


def _flat_params(params: TumorParams) -> dict[str, object]:
    data = params.to_dict()
    row: dict[str, object] = {}
    for name in PARAM_COLUMNS:
        if name.startswith("center_"):
            row[name] = float(params.center_mm["xyz".index(name[7])])
        elif name.startswith("semi_axis_scale_"):
            row[name] = float(params.semi_axis_scale[int(name[-1]) - 1])
        elif name.startswith("rotation_"):
            row[name] = float(params.rotation[3 * (int(name[-2]) - 1) + int(name[-1]) - 1])
        elif name == "geometry":
            row[name] = json.dumps(data["geometry"], sort_keys=True)
        else:
            row[name] = data[name]
    return row


def record_row(case_id: str, source_id: str, tumor: int | None, record: TumorRecord) -> dict:
    """One synthesis.csv row (JSON-ready) for a tumor record; `tumor` numbers inserted tumors."""
    row: dict[str, object] = dict.fromkeys(CSV_COLUMNS)
    row.update(case_id=case_id, source_id=source_id, organ=record.organ, tumor=tumor)
    if record.params is not None:
        row.update(_flat_params(record.params))
    for name in ("achieved_contrast_hu", "achieved_diameter_mm", "organ_median_hu"):
        value = getattr(record, name)
        row[name] = None if value is None else float(value)
    row["skipped"] = record.skipped
    return row


def params_from_row(row: dict[str, object]) -> TumorParams:
    """Rebuild the `TumorParams` of a synthesis.csv row (as dict of strings or of JSON values)."""

    def number(name: str) -> float:
        return float(row[name])  # type: ignore[arg-type]

    data: dict[str, object] = {"organ": row["organ"]}
    for item in fields(TumorParams):
        name = item.name
        if name == "organ":
            continue
        if name == "center_mm":
            data[name] = tuple(number(f"center_{a}_mm") for a in "xyz")
        elif name == "semi_axis_scale":
            data[name] = tuple(number(f"semi_axis_scale_{i}") for i in (1, 2, 3))
        elif name == "rotation":
            data[name] = tuple(number(f"rotation_{r}{c}") for r in (1, 2, 3) for c in (1, 2, 3))
        elif name == "geometry":
            value = row.get(name)
            data[name] = json.loads(value) if isinstance(value, str) and value else value
        elif name in ("kind", "size_class", "phase"):
            data[name] = str(row[name])
        elif name == "seed":
            data[name] = int(float(row[name]))  # type: ignore[arg-type]
        elif name == "exophytic":
            data[name] = row[name] in (True, "True", "true", "1", 1)
        else:
            data[name] = number(name)
    return TumorParams.from_dict(data)


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def write_synthesis_csv(path: Path, rows: Iterable[dict]) -> None:
    """Write synthesis.csv atomically (fixed column order, floats with full precision)."""
    write_csv_atomic(path, CSV_COLUMNS, rows, _csv_value)


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


def _signature(settings: _Settings, plan: SourcePlan, k: int) -> dict:
    """What an output case is made from: the request and its source's files (size, mtime)."""
    source = plan.case
    return {
        "format": FORMAT_VERSION,
        "seed": settings.seed,
        "source_id": source.case_id,
        "inputs": input_fingerprint([p for p in [source.ct, *source.segmentation_files] if p]),
        "k": k,
        "organs": list(plan.organs),
        "size_mix": [float(v) for v in settings.size_mix],
        "tumors_per_organ": settings.tumors_per_organ,
    }


def _inputs_changed(folder: Path, signature: dict) -> bool:
    """Whether `folder` holds a finished case made by the same request from other inputs."""
    stored = completed_record(folder)
    if stored is None or not isinstance(stored.get("signature"), dict):
        return False
    earlier = {**stored["signature"], "inputs": None}
    return earlier == {**signature, "inputs": None} and stored["signature"] != signature


def completed_record(folder: Path, signature: dict | None = None) -> dict | None:
    """The `.synthesis.json` of a complete output case (matching `signature` if given)."""
    try:
        stored = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if signature is not None and stored.get("signature") != signature:
        return None
    if not all((folder / name).is_file() for name in stored.get("files", [])):
        return None
    return stored


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
        record = {
            "signature": _signature(settings, plan, k),
            "case_id": case_id,
            "source_id": source_id,
            "files": sorted(files),
            "rows": rows,
        }
        write_text_atomic(partial / RECORD_NAME, json.dumps(record, indent=1, sort_keys=True))
        _move_into_place(partial, settings.out / case_id)
    finally:
        _remove_tree(partial)
    return rows


def _describe(error: BaseException) -> str:
    if isinstance(error, TumorscaleError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _run_source(
    settings: _Settings, plan: SourcePlan, ks: Sequence[int],
    on_case: Callable[[], None] | None = None,
) -> tuple[list[str], list[tuple[str, str]]]:
    """Build the output cases `ks` of one source; returns (written ids, failures)."""
    written: list[str] = []
    failed: list[tuple[str, str]] = []
    try:
        ct, masks, copies = read_source(plan.case, plan.organs)
    except (InputFileError, OSError, ValueError) as error:
        return [], [(plan.case.case_id, _describe(error))]
    for k in ks:
        case_id = output_case_id(plan.case.case_id, k)
        try:
            _build_case(settings, plan, k, ct, masks, copies)
            written.append(case_id)
        except Exception as error:  # a batch records a broken case and goes on with the others
            failed.append((case_id, _describe(error)))
        if on_case is not None:
            on_case()
    return written, failed


def _run_job(job: tuple[_Settings, SourcePlan, tuple[int, ...]]) -> tuple[list, list]:
    return _run_source(*job)


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
) -> BatchReport:
    """Write `per_case` synthetic cases for every healthy case of the AbdomenAtlas tree `source`.

    organs: organs to put tumors in (any of the six); each output case gets `tumors_per_organ`
    tumors in every requested organ its source can take (see `select_sources`), sizes drawn with
    `size_mix` (small:medium:large). `progress(done, total)` counts output cases (complete ones
    count at once; with workers > 1 it advances per source). Never writes inside `source`.
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
    report = BatchReport(out, failed=list(failed), excluded=excluded)

    jobs: list[tuple[_Settings, SourcePlan, tuple[int, ...]]] = []
    for plan in plans:
        todo = []
        for k in range(1, per_case + 1):
            case_id = output_case_id(plan.case.case_id, k)
            signature = _signature(settings, plan, k)
            stored = completed_record(out / case_id, signature)
            if stored is None:
                if _inputs_changed(out / case_id, signature):
                    report.changed.append(case_id)
                todo.append(k)
                continue
            report.skipped.append(case_id)
            if preview:
                from tumorscale.synth.preview import previews_for_written_case

                previews_for_written_case(out / case_id, stored["rows"], out / PREVIEW_FOLDER)
        if todo:
            jobs.append((settings, plan, tuple(todo)))

    total = len(plans) * per_case
    done = len(report.skipped)
    if progress is not None:
        progress(done, total)

    def finish(written: list[str], failures: list[tuple[str, str]]) -> None:
        report.written.extend(written)
        report.failed.extend(failures)

    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            counter = [done]

            def tick(counter: list[int] = counter) -> None:
                counter[0] += 1
                if progress is not None:
                    progress(counter[0], total)

            finish(*_run_source(*job, on_case=tick))
            done = counter[0]
    else:
        with process_pool(min(workers, len(jobs))) as pool:
            futures = {pool.submit(_run_job, job): len(job[2]) for job in jobs}
            for future in as_completed(futures):
                finish(*future.result())
                done += futures[future]
                if progress is not None:
                    progress(done, total)

    rows: list[dict] = []
    for plan in plans:
        for k in range(1, per_case + 1):
            try:
                signature = _signature(settings, plan, k)
            except OSError:  # a source file removed during the run: its output is not listed
                continue
            stored = completed_record(out / output_case_id(plan.case.case_id, k), signature)
            if stored is not None:
                rows.extend(stored["rows"])
    write_synthesis_csv(out / CSV_NAME, rows)
    report.tumors = sum(1 for row in rows if not row.get("skipped"))
    report.written.sort()
    report.skipped.sort()
    report.failed.sort()
    return report
