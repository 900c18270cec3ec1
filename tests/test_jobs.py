"""The resumable-job core: completion markers, failures, atomic outputs, progress, report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tumorscale.errors import InputFileError
from tumorscale.io import atomic_path, input_fingerprint
from tumorscale.jobs import (
    MARKER_KEY,
    JobReport,
    Outcome,
    State,
    Tally,
    attempt,
    clear_marker,
    completed_marker,
    describe_error,
    marker_state,
    read_marker,
    run_cases,
    run_outcomes,
    write_marker,
)

SETTINGS = {"seed": 1, "size_mix": (4.0, 2.0, 1.0)}


@pytest.fixture
def case(tmp_path: Path) -> tuple[Path, Path, list]:
    """An input file, a case folder with one output, and the input's fingerprint."""
    source = tmp_path / "in" / "ct.nii.gz"
    source.parent.mkdir()
    source.write_bytes(b"ct")
    folder = tmp_path / "out" / "CASE_1"
    folder.mkdir(parents=True)
    (folder / "result.txt").write_text("made", encoding="utf-8")
    return source, folder, input_fingerprint([source])


def test_a_matching_marker_skips_and_any_mismatch_redoes(case) -> None:
    source, folder, inputs = case
    marker = folder / ".done.json"
    assert marker_state(marker, inputs, SETTINGS) is State.TODO  # no marker yet
    write_marker(marker, inputs, SETTINGS, [folder / "result.txt"], payload={"rows": [1, 2]})
    assert marker_state(marker, inputs, SETTINGS) is State.COMPLETE
    stored = completed_marker(marker, inputs, SETTINGS)
    assert stored is not None and stored["rows"] == [1, 2]  # the job's own record rides along
    assert stored[MARKER_KEY]["outputs"] == [["result.txt", 4, None]]
    # Other settings: made again, not "changed".
    assert marker_state(marker, inputs, {**SETTINGS, "seed": 2}) is State.TODO
    # Same settings, inputs changed since: made again and reported as changed.
    source.write_bytes(b"another scan")
    assert marker_state(marker, input_fingerprint([source]), SETTINGS) is State.CHANGED
    # An output removed or truncated by hand: not complete.
    (folder / "result.txt").write_text("x", encoding="utf-8")
    assert marker_state(marker, inputs, SETTINGS) is State.TODO
    (folder / "result.txt").unlink()
    assert marker_state(marker, inputs, SETTINGS) is State.TODO
    assert completed_marker(marker, inputs, SETTINGS) is None


def test_outputs_under_a_relative_folder_are_recorded_beside_the_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's Python API predicts into a relative folder; the marker once joined the
    # relative output path onto its own folder a second time.
    monkeypatch.chdir(tmp_path)
    folder = Path("out") / "case"
    (folder / "segmentations").mkdir(parents=True)
    (folder / "segmentations" / "a.nii.gz").write_bytes(b"abc")
    marker = folder / ".done.json"
    write_marker(marker, {"x": 1}, SETTINGS, [folder / "segmentations" / "a.nii.gz"])
    assert read_marker(marker)[MARKER_KEY]["outputs"] == [["segmentations/a.nii.gz", 3, None]]
    assert marker_state(marker, {"x": 1}, SETTINGS) is State.COMPLETE


def test_hashed_outputs_notice_an_edit_of_the_same_size(case) -> None:
    _, folder, inputs = case
    marker = folder / ".done.json"
    write_marker(marker, inputs, SETTINGS, [folder / "result.txt"], hashed=True)
    assert marker_state(marker, inputs, SETTINGS) is State.COMPLETE
    (folder / "result.txt").write_text("MADE", encoding="utf-8")
    assert marker_state(marker, inputs, SETTINGS) is State.TODO


def test_old_or_broken_markers_mean_a_clean_redo_never_a_crash(case) -> None:
    _, folder, inputs = case
    marker = folder / ".done.json"
    for text in ('{"signature": {"seed": 1}, "files": ["result.txt"]}', "[1, 2]", "{not json",
                 '{"job": {"version": 1}}', '{"job": {"version": 2, "outputs": 3}}'):
        marker.write_text(text, encoding="utf-8")
        assert read_marker(marker) is None
        assert marker_state(marker, inputs, SETTINGS) is State.TODO
    clear_marker(marker)
    clear_marker(marker)  # already gone: fine
    assert not marker.exists()


def test_the_marker_is_written_atomically_and_identically(case, tmp_path: Path) -> None:
    _, folder, inputs = case
    marker = folder / ".done.json"
    write_marker(marker, inputs, SETTINGS, [folder / "result.txt"], hashed=True)
    first = marker.read_bytes()
    write_marker(marker, inputs, SETTINGS, [folder / "result.txt"], hashed=True)
    assert marker.read_bytes() == first  # same content, same bytes: reruns stay byte-identical
    assert json.loads(first)[MARKER_KEY]["settings"] == {"seed": 1, "size_mix": [4.0, 2.0, 1.0]}
    assert sorted(p.name for p in folder.iterdir()) == [".done.json", "result.txt"]


def test_an_atomic_output_is_left_complete_after_an_exception(tmp_path: Path) -> None:
    target = tmp_path / "out" / "labels.nii.gz"
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"complete")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"complete"
    assert [p.name for p in target.parent.iterdir()] == ["labels.nii.gz"]  # no temporary left


def _work(item: tuple[str, Path]) -> list[Outcome]:
    case_id, path = item
    return [attempt(case_id, path, _make, path)]


def _make(path: Path) -> str:
    if path.name == "bad":
        raise InputFileError(path, "unreadable NIfTI file")
    if path.name == "odd":
        raise ValueError("3 dimensions expected")
    return path.name.upper()


def test_a_failing_case_is_recorded_and_the_others_go_on(tmp_path: Path) -> None:
    items = [(f"C{i}", tmp_path / name) for i, name in enumerate(["a", "bad", "b", "odd", "c"])]
    report = JobReport(tmp_path)
    calls: list[tuple[int, int]] = []
    tally = Tally(len(items) + 1, lambda done, total: calls.append((done, total)))
    report.skipped.append("C9")
    tally.start(len(report.skipped))
    outcomes = run_cases(items, _work, report, tally)
    assert [o.value for o in outcomes if o.error is None] == ["A", "B", "C"]
    report.finish()
    assert report.done == ["C0", "C2", "C4"] and report.skipped == ["C9"]
    failed = dict(report.failed)
    assert failed["C1"] == f"{tmp_path / 'bad'}: unreadable NIfTI file"
    assert failed["C3"] == f"{tmp_path / 'odd'}: ValueError: 3 dimensions expected"
    assert not report.ok and report.complete == ["C0", "C2", "C4", "C9"]
    assert calls == [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]
    assert report.elapsed_s >= 0.0


def test_a_bug_is_not_swallowed_as_a_bad_case(tmp_path: Path) -> None:
    def broken(_: int) -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        attempt("C1", tmp_path, broken, 1, errors=(OSError, ValueError))


def _grouped(item: tuple[str, int]) -> Iterator[Outcome]:
    source, count = item
    for k in range(1, count + 1):
        yield Outcome(f"{source}_{k}")


def test_grouped_work_yields_one_outcome_per_case_serial_and_in_processes() -> None:
    items = [("S1", 2), ("S2", 1), ("S3", 3)]
    serial = [o.case_id for o in run_outcomes(items, _grouped)]
    assert serial == ["S1_1", "S1_2", "S2_1", "S3_1", "S3_2", "S3_3"]
    parallel = [o.case_id for o in run_outcomes(items, _grouped, workers=2, ordered=True)]
    assert parallel == serial
    unordered = [o.case_id for o in run_outcomes(items, _grouped, workers=2)]
    assert sorted(unordered) == sorted(serial)


def test_progress_reports_the_total_before_the_first_case() -> None:
    calls: list[tuple[int, int]] = []
    tally = Tally(3, lambda done, total: calls.append((done, total)))
    tally.start()
    tally.tick()
    assert calls == [(0, 3), (1, 3)]
    Tally(3, None).start()  # no callback: nothing to do


def test_describe_error_names_the_file() -> None:
    assert describe_error(OSError("disk full"), "/out/CASE") == "/out/CASE: OSError: disk full"
    error = InputFileError(Path("/in/ct.nii.gz"), "truncated")
    assert describe_error(error, "/elsewhere") == str(error)


def test_report_finish_sorts_unless_asked_to_keep_input_order(tmp_path: Path) -> None:
    report = JobReport(tmp_path, done=["b", "a"], failed=[("d", "x"), ("c", "y")])
    assert report.finish(sort=False).done == ["b", "a"]
    assert report.finish().done == ["a", "b"] and report.failed[0][0] == "c"
