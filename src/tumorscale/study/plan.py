"""Planning a study: nested real subsets, a held-out test split, OOD test sets, the run table.

A plan is a folder of plain files; `study run` reads only these, never the study YAML:

    OUT/plan.yaml                  data, organs, cache, test sets, train/predict/evaluation settings
    OUT/runs.csv                   run_id, n_real, condition, synthetic_ratio, seed, iterations,
                                   real_cases_file
    OUT/subsets/<seed>/n<k>.txt    the real training cases of size k (first k of the seed's order)
    OUT/healthy_pool.txt           hosts for synthetic tumors (never a test case)
    OUT/testsets/<name>.txt        the cases of each test set
    OUT/testsets/<name>/<case>     symlinks to the source case folders (an AbdomenAtlas tree)
"""

from __future__ import annotations

import csv
import filecmp
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tumorscale.atlas import TumorStatus, dataset_lesion_stats, discover_cases, index_dataset
from tumorscale.atlas.index import DatasetIndex
from tumorscale.errors import DatasetError, InputFileError
from tumorscale.io import write_text_atomic
from tumorscale.study.config import StudyConfig

PLAN_NAME = "plan.yaml"
RUNS_NAME = "runs.csv"
HEALTHY_NAME = "healthy_pool.txt"
RUN_COLUMNS = ["run_id", "n_real", "condition", "synthetic_ratio", "seed", "iterations",
               "real_cases_file"]  # fmt: skip


@dataclass(frozen=True)
class PlannedRun:
    """One training run; `real_cases_file` is relative to the plan folder."""

    run_id: str
    n_real: int
    condition: str
    synthetic_ratio: float
    seed: int
    iterations: int
    real_cases_file: str


@dataclass(frozen=True)
class TestSet:
    """A test set: its source tree, the case list and the folder of symlinks (both relative)."""

    name: str
    source: Path
    cases_file: str
    folder: str
    in_distribution: bool


@dataclass(frozen=True)
class Plan:
    root: Path
    name: str
    data: Path
    organs: tuple[str, ...]
    cache: Path
    study_seed: int
    test_sets: tuple[TestSet, ...]
    healthy_pool_file: str
    runs: tuple[PlannedRun, ...]
    train: Mapping[str, Any] = field(default_factory=dict)
    predict: Mapping[str, Any] = field(default_factory=dict)
    evaluation: Mapping[str, Any] = field(default_factory=dict)
    compute: Mapping[str, Any] = field(default_factory=dict)

    def run(self, run_id: str) -> PlannedRun:
        for run in self.runs:
            if run.run_id == run_id:
                return run
        raise KeyError(f"{self.root}: no run {run_id!r} in {RUNS_NAME}")

    def real_cases(self, run: PlannedRun) -> tuple[str, ...]:
        return read_ids(self.root / run.real_cases_file)

    def healthy_cases(self) -> tuple[str, ...]:
        return read_ids(self.root / self.healthy_pool_file)

    def test_folder(self, test_set: TestSet) -> Path:
        return self.root / test_set.folder


# ----------------------------------------------------------------------------- selection


def nested_subsets(pool: Sequence[str], counts: Iterable[int], seed: int,
                   study_seed: int = 0) -> dict[int, list[str]]:
    """count → the first `count` cases of one seeded permutation of the sorted pool, so every
    smaller subset is contained in every larger one."""
    ordered = sorted(pool)
    order = np.random.default_rng([seed, study_seed]).permutation(len(ordered))
    permuted = [ordered[i] for i in order]
    return {n: permuted[:n] for n in counts}


def _allocate(total: int, sizes: Sequence[int]) -> list[int]:
    """Split `total` across strata in proportion to their sizes (largest remainder)."""
    whole = sum(sizes)
    exact = [total * s / whole for s in sizes]
    counts = [int(x) for x in exact]
    for i in sorted(range(len(sizes)), key=lambda i: counts[i] - exact[i])[: total - sum(counts)]:
        counts[i] += 1
    return counts


def draw_test_split(positive: Sequence[str], control: Sequence[str], count: int,
                    seed: int) -> list[str]:
    """`count` cases drawn once by `seed`, stratified so controls (for specificity) and
    tumor cases keep their share."""
    rng = np.random.default_rng(seed)
    strata = [sorted(positive), sorted(control)]
    chosen: list[str] = []
    for stratum, k in zip(strata, _allocate(count, [len(s) for s in strata]), strict=True):
        chosen += [stratum[i] for i in rng.permutation(len(stratum))[:k]]
    return sorted(chosen)


@dataclass(frozen=True)
class _Cohort:
    """host_kind: case → how it can host a synthetic tumor (see `_host_kind`)."""

    index: DatasetIndex
    positive: tuple[str, ...]
    control: tuple[str, ...]
    host_kind: Mapping[str, TumorStatus | None]

    @property
    def annotated(self) -> tuple[str, ...]:
        return tuple(sorted(self.positive + self.control))

    def hosts(self, allow_unknown: bool) -> tuple[str, ...]:
        kinds = (TumorStatus.CONTROL, TumorStatus.UNKNOWN) if allow_unknown else (
            TumorStatus.CONTROL,)  # fmt: skip
        return tuple(c for c, kind in self.host_kind.items() if kind in kinds)

    def of_kind(self, ids: Iterable[str], kind: TumorStatus) -> list[str]:
        return sorted(c for c in ids if self.host_kind.get(c) == kind)


def _host_kind(states: Sequence[TumorStatus]) -> TumorStatus | None:
    """The statuses of a case's study organs with a mask → control: a host (the organ is a
    confirmed control); unknown: a host only with `allow_unknown_hosts`; positive: no host
    (every such organ has a tumor); None: no study organ. The same rule as training's."""
    for kind in (TumorStatus.CONTROL, TumorStatus.UNKNOWN, TumorStatus.POSITIVE):
        if kind in states:
            return kind
    return None


def _cohort(data: Path, organs: Sequence[str]) -> _Cohort:
    """Annotated cases (positive or control for a study organ) and how each case can host a
    synthetic tumor (`_host_kind`)."""
    index = index_dataset(data)
    cases = [c for c in index.cases if c.ct is not None]
    stats = dataset_lesion_stats(cases, organs)
    status = {(s.case_id, s.organ): s.status for s in stats}
    positive, control, host_kind = [], [], {}
    for case in cases:
        states = [status[(case.case_id, o)] for o in organs]
        if TumorStatus.POSITIVE in states:
            positive.append(case.case_id)
        elif TumorStatus.CONTROL in states:
            control.append(case.case_id)
        with_mask = [status[(case.case_id, o)] for o in organs if case.organ(o).has_mask]
        host_kind[case.case_id] = _host_kind(with_mask)
    return _Cohort(index, tuple(positive), tuple(control), host_kind)


def _id_test(spec: StudyConfig, cohort: _Cohort) -> list[str]:
    split, annotated = spec.id_test, cohort.annotated
    if split.cases is not None:
        missing = sorted(set(split.cases) - set(annotated))
        if missing:
            raise DatasetError(spec.data, f"id_test.cases not annotated cases here: {missing[:5]}")
        return sorted(split.cases)
    count = split.count if split.count is not None else round(split.fraction * len(annotated))
    if not 1 <= count < len(annotated):
        raise DatasetError(spec.data, f"id_test: {count} test cases of {len(annotated)} annotated "
                                      "leave no training pool (or no test set)")
    return draw_test_split(cohort.positive, cohort.control, count, spec.study_seed)


UNKNOWN_HINT = "set allow_unknown_hosts: true to use them as hosts"


def _healthy(spec: StudyConfig, cohort: _Cohort, test: set[str]) -> list[str]:
    """Hosts for synthetic tumors: cases with a study organ that is a confirmed control (also
    one of unknown status with `allow_unknown_hosts`), listed or all of them; never a test case."""
    if spec.healthy_pool is None:
        pool = sorted(set(cohort.hosts(spec.allow_unknown_hosts)) - test)
        if not pool and spec.has_synthetic:
            raise DatasetError(spec.data, _no_hosts_message(spec, cohort, test))
        return pool
    _check_listed_hosts(spec, cohort, test)
    return sorted(spec.healthy_pool)


def _no_hosts_message(spec: StudyConfig, cohort: _Cohort, test: set[str]) -> str:
    message = ("healthy_pool: no host for synthetic tumors (no case outside the test split with "
               "a study organ that is a confirmed control: lesion file present, all zero)")
    unknown = cohort.of_kind(set(cohort.host_kind) - test, TumorStatus.UNKNOWN)
    if unknown and not spec.allow_unknown_hosts:
        message += (f"; {len(unknown)} case(s) are of unknown tumor status (no lesion file): "
                    f"{UNKNOWN_HINT}")  # fmt: skip
    return message


def _check_listed_hosts(spec: StudyConfig, cohort: _Cohort, test: set[str]) -> None:
    """A listed host must be in the data, outside the test split, and have a study organ to host
    in: not one with a tumor, nor (without `allow_unknown_hosts`) one of unknown status."""
    listed = set(spec.healthy_pool or ())
    missing = sorted(listed - {c.case_id for c in cohort.index.cases})
    if missing:
        raise DatasetError(spec.data, f"healthy_pool: case(s) not in the data: {missing[:5]}")
    leaked = sorted(listed & test)
    if leaked:
        raise DatasetError(spec.data, f"healthy_pool: case(s) in the test split: {leaked[:5]}")
    positive = cohort.of_kind(listed, TumorStatus.POSITIVE)
    if positive:
        raise DatasetError(spec.data, f"healthy_pool: case(s) with a tumor in every study organ "
                                      f"they have cannot host one: {positive[:5]}")  # fmt: skip
    unknown = cohort.of_kind(listed, TumorStatus.UNKNOWN)
    if unknown and not spec.allow_unknown_hosts:
        raise DatasetError(spec.data, f"healthy_pool: case(s) of unknown tumor status (no lesion "
                                      f"file; an unannotated tumor may be there): {unknown[:5]}; "
                                      f"{UNKNOWN_HINT}")  # fmt: skip


def _file_keys(index: DatasetIndex) -> dict[tuple[int, int], Path]:
    """(device, inode) → path of every CT and mask file: catches symlinks and hard links too."""
    keys = {}
    for case in index.cases:
        for path in [*([case.ct] if case.ct else []), *case.segmentation_files]:
            info = path.stat()
            keys[(info.st_dev, info.st_ino)] = path
    return keys


def check_ood_separate(data: Path, ood: Mapping[str, Path], data_index: DatasetIndex) -> None:
    """Raise when an OOD test set shares a folder or any case file with the training data."""
    data_real, data_keys = data.resolve(), _file_keys(data_index)
    for name, path in ood.items():
        real = path.resolve()
        if real == data_real or data_real in real.parents or real in data_real.parents:
            raise DatasetError(path, f"ood_tests.{name}: overlaps the data folder {data}")
        ood_index = index_dataset(path)
        shared = sorted(str(p) for k, p in _file_keys(ood_index).items() if k in data_keys)
        if shared:
            raise DatasetError(path, f"ood_tests.{name}: shares files with the data folder "
                                     f"{data}: {shared[:3]}")
        copy = _copied_ct(ood_index, data_index)
        if copy is not None:
            raise DatasetError(copy[0], f"ood_tests.{name}: this CT is a byte-identical copy of "
                                        f"{copy[1]} in the data folder")


def _copied_ct(ood: DatasetIndex, data: DatasetIndex) -> tuple[Path, Path] | None:
    """(OOD CT, data CT) of the first OOD CT whose bytes equal a data CT's, else None.

    Files are compared byte by byte only when their sizes match, so a real cohort costs one
    `stat` per file.
    """
    by_size: dict[int, list[Path]] = {}
    for case in data.cases:
        if case.ct is not None:
            by_size.setdefault(case.ct.stat().st_size, []).append(case.ct)
    for case in ood.cases:
        if case.ct is None:
            continue
        for candidate in by_size.get(case.ct.stat().st_size, []):
            if filecmp.cmp(case.ct, candidate, shallow=False):
                return case.ct, candidate
    return None


# ----------------------------------------------------------------------------- writing


def _ids_text(ids: Iterable[str]) -> str:
    return "".join(f"{case_id}\n" for case_id in ids)


def read_ids(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InputFileError(path, f"cannot read the case list: {error}") from error
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def _link(target: Path, link: Path) -> None:
    """A symlink `link` → `target`, replacing a stale one (replanning is idempotent)."""
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    if link.is_symlink():
        link.unlink()
    link.symlink_to(target, target_is_directory=target.is_dir())


def materialize(source: Path, case_ids: Iterable[str], folder: Path) -> None:
    """A folder of per-case symlinks into `source`, so predict/evaluate take a plain folder.

    Merged-layout cases are linked whole; split-layout cases get a folder linking their CT and
    their segmentations folder."""
    wanted = set(case_ids)
    folder.mkdir(parents=True, exist_ok=True)
    for case in discover_cases(source)[1]:
        if case.case_id not in wanted:
            continue
        merged = case.ct is not None and case.ct.parent == case.folder and (
            case.segmentations is None or case.segmentations.parent == case.folder)
        if merged:
            _link(case.folder.resolve(), folder / case.case_id)
            continue
        (folder / case.case_id).mkdir(exist_ok=True)
        if case.ct is not None:
            _link(case.ct.resolve(), folder / case.case_id / case.ct.name)
        if case.segmentations is not None:
            _link(case.segmentations.resolve(), folder / case.case_id / "segmentations")


def _run_id(n_real: int, condition: str, seed: int, width: int) -> str:
    return f"n{n_real:0{width}d}_{condition}_s{seed}"


def _runs(spec: StudyConfig) -> list[PlannedRun]:
    width = len(str(max(spec.real_counts)))
    return [
        PlannedRun(_run_id(n, c.name, seed, width), n, c.name, c.synthetic_ratio, seed,
                   spec.compute.iterations_for(n), f"subsets/{seed}/n{n}.txt")
        for seed in spec.seeds for n in spec.real_counts for c in spec.conditions
        if n in c.counts(spec.real_counts)  # n = 0 is the label-free setting: synthetic only
    ]  # fmt: skip


def write_runs_csv(path: Path, runs: Sequence[PlannedRun]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, RUN_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for run in runs:
        writer.writerow({column: getattr(run, column) for column in RUN_COLUMNS})
    write_text_atomic(path, buffer.getvalue())


def _test_set_values(test: TestSet) -> dict[str, Any]:
    return {"source": str(test.source), "cases": test.cases_file, "folder": test.folder,
            "in_distribution": test.in_distribution}  # fmt: skip


def _plan_yaml(plan: Plan) -> str:
    values = {
        "name": plan.name,
        "data": str(plan.data),
        "organs": list(plan.organs),
        "cache": str(plan.cache),
        "study_seed": plan.study_seed,
        "healthy_pool": plan.healthy_pool_file,
        "runs": RUNS_NAME,
        "test_sets": {t.name: _test_set_values(t) for t in plan.test_sets},
        "compute": dict(plan.compute),
        "train": dict(plan.train),
        "predict": dict(plan.predict),
        "evaluation": dict(plan.evaluation),
    }
    header = (f"# Study plan '{plan.name}' written by `tumorscale study plan`; `study run` reads "
              "this file, runs.csv and the case lists.\n# Edit them to change the study "
              "(results already computed are not invalidated automatically).\n")
    return header + yaml.safe_dump(values, sort_keys=False)


def make_plan(spec: StudyConfig, out: str | Path) -> Plan:
    """Select every case set of the study and write the plan folder (see the module docstring).

    Raises DatasetError naming the data and the key when a count exceeds the training pool, a
    test set overlaps the training data, or a listed case is missing."""
    out = Path(out).resolve()
    cohort = _cohort(spec.data, spec.organs)
    check_ood_separate(spec.data, spec.ood_tests, cohort.index)
    test = _id_test(spec, cohort)
    pool = sorted(set(cohort.annotated) - set(test))
    too_many = [n for n in spec.real_counts if n > len(pool)]
    if too_many:
        raise DatasetError(spec.data, f"real_counts: {too_many} exceed the training pool of "
                                      f"{len(pool)} annotated cases ({len(test)} held out for "
                                      f"the test split '{spec.id_test.name}')")
    for seed in spec.seeds:
        for n, subset in nested_subsets(pool, spec.real_counts, seed, spec.study_seed).items():
            write_text_atomic(out / "subsets" / str(seed) / f"n{n}.txt", _ids_text(subset))
    write_text_atomic(out / HEALTHY_NAME, _ids_text(_healthy(spec, cohort, set(test))))
    test_sets = [_test_set(out, spec.id_test.name, spec.data, test, True)]
    for name, path in spec.ood_tests.items():
        ids = [c.case_id for c in index_dataset(path).cases if c.ct is not None]
        test_sets.append(_test_set(out, name, path, ids, False))
    runs = _runs(spec)
    write_runs_csv(out / RUNS_NAME, runs)
    plan = Plan(out, spec.name, spec.data.resolve(), spec.organs,
                (spec.cache or out / "cache").resolve(), spec.study_seed, tuple(test_sets),
                HEALTHY_NAME, tuple(runs), _train_dict(spec), dict(spec.predict),
                dict(spec.evaluation), _compute_dict(spec))  # fmt: skip
    write_text_atomic(out / PLAN_NAME, _plan_yaml(plan))
    return plan


def _train_dict(spec: StudyConfig) -> dict[str, Any]:
    """The runs' training settings: the spec's, and its opt-in to hosts of unknown status (the
    runs check their healthy pool again)."""
    opt_in = {"data.allow_unknown_hosts": True} if spec.allow_unknown_hosts else {}
    return {**spec.train, **opt_in}


def _compute_dict(spec: StudyConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(spec.compute)


def _test_set(out: Path, name: str, source: Path, ids: Sequence[str], in_dist: bool) -> TestSet:
    cases_file, folder = f"testsets/{name}.txt", f"testsets/{name}"
    write_text_atomic(out / cases_file, _ids_text(sorted(ids)))
    materialize(source, ids, out / folder)
    return TestSet(name, source.resolve(), cases_file, folder, in_dist)


# ----------------------------------------------------------------------------- reading


def _read_runs(path: Path) -> tuple[PlannedRun, ...]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise InputFileError(path, f"cannot read the run table: {error}") from error
    runs = []
    for line, row in enumerate(rows, start=2):
        try:
            runs.append(PlannedRun(row["run_id"], int(row["n_real"]), row["condition"],
                                   float(row["synthetic_ratio"]), int(row["seed"]),
                                   int(row["iterations"]), row["real_cases_file"]))
        except (KeyError, TypeError, ValueError) as error:
            raise InputFileError(path, f"line {line}: bad row ({error!r})") from error
    if len({r.run_id for r in runs}) != len(runs):
        raise InputFileError(path, "run ids repeat")
    return tuple(runs)


def load_plan(root: str | Path) -> Plan:
    """Read a plan folder written by `make_plan` (and possibly edited by hand)."""
    root = Path(root).resolve()
    path = root / PLAN_NAME
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
        tests = tuple(
            TestSet(name, Path(t["source"]), t["cases"], t["folder"], bool(t["in_distribution"]))
            for name, t in values["test_sets"].items()
        )
        return Plan(root, str(values["name"]), Path(values["data"]), tuple(values["organs"]),
                    Path(values["cache"]), int(values["study_seed"]), tests,
                    values["healthy_pool"], _read_runs(root / values.get("runs", RUNS_NAME)),
                    values.get("train") or {}, values.get("predict") or {},
                    values.get("evaluation") or {}, values.get("compute") or {})  # fmt: skip
    except OSError as error:
        raise InputFileError(path, f"not a study plan folder ({error})") from error
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as error:
        raise InputFileError(path, f"malformed plan ({error!r})") from error
