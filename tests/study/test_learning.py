"""Per-run learned flags from training logs: loss fell, final validation DSC, unknown logs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tumorscale.study.learning import (
    RunLearning,
    learned_text,
    read_run_learning,
    read_study_learning,
)

LOG_COLUMNS = ["iteration", "epoch", "loss", "lr", "samples_per_s", "seconds"]


def write_log(train_dir: Path, losses: list[float], every: int = 5) -> None:
    """A log.csv as train.loop writes it: one mean loss per `every` iterations."""
    train_dir.mkdir(parents=True, exist_ok=True)
    with (train_dir / "log.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, LOG_COLUMNS)
        writer.writeheader()
        for k, loss in enumerate(losses, start=1):
            writer.writerow({"iteration": k * every, "epoch": 0, "loss": f"{loss:.6f}",
                             "lr": 0.01, "samples_per_s": 4.0, "seconds": 1.0})  # fmt: skip


def write_validation(train_dir: Path, rows: list[tuple[int, str, float]]) -> None:
    with (train_dir / "validation.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iteration", "epoch", "metric", "value"])
        writer.writerows([(it, 0, metric, value) for it, metric, value in rows])


FALLING = [1.5 - 0.05 * k for k in range(20)]  # 1.50 → 0.55
FLAT = [1.0, 1.02, 0.99, 1.01] * 5


def test_falling_loss_learned_with_tenth_means(tmp_path: Path) -> None:
    write_log(tmp_path / "train", FALLING)
    record = read_run_learning(tmp_path / "train", "run-a")
    assert record.run_id == "run-a" and record.iterations[-1] == 100
    # 20 logged losses: each tenth is 2 values
    assert record.first_tenth_loss == pytest.approx((1.5 + 1.45) / 2)
    assert record.last_tenth_loss == pytest.approx((0.6 + 0.55) / 2)
    assert record.loss_fell is True and record.learned is True
    assert record.validation_dsc is None and learned_text(record.learned) == "yes"


def test_flat_loss_did_not_learn(tmp_path: Path) -> None:
    write_log(tmp_path / "train", FLAT)
    record = read_run_learning(tmp_path / "train")
    assert record.run_id == tmp_path.name  # the run folder's name
    assert record.loss_fell is False and record.learned is False
    assert learned_text(record.learned) == "no"


def test_final_validation_dsc_decides_with_a_falling_loss(tmp_path: Path) -> None:
    train = tmp_path / "train"
    write_log(train, FALLING)
    # the last validated iteration counts; `validated_cases` is not a DSC
    rows = [(50, "dsc/liver_lesion", 0.4), (100, "dsc/liver_lesion", 0.0),
            (100, "dsc/kidney_lesion", 0.0), (100, "validated_cases", 3)]  # fmt: skip
    write_validation(train, rows)
    record = read_run_learning(train)
    assert record.validation_dsc == 0.0 and record.loss_fell is True
    assert record.learned is False
    write_validation(train, [(50, "dsc/liver_lesion", 0.0), (100, "dsc/liver_lesion", 0.3),
                             (100, "dsc/kidney_lesion", 0.1)])  # fmt: skip
    record = read_run_learning(train)
    assert record.validation_dsc == pytest.approx(0.2) and record.learned is True


def test_missing_or_unreadable_logs_are_unknown(tmp_path: Path) -> None:
    missing = read_run_learning(tmp_path / "none" / "train")
    assert missing.learned is None and "not found" in missing.problem
    assert learned_text(missing.learned) == "unknown"
    broken = tmp_path / "broken" / "train"
    broken.mkdir(parents=True)
    (broken / "log.csv").write_text("iteration,loss\n5,abc\n", encoding="utf-8")
    record = read_run_learning(broken)
    assert record.learned is None and "unreadable" in record.problem
    (broken / "log.csv").write_bytes(b"\xff\xfe\x00garbage")
    assert read_run_learning(broken).learned is None
    one = tmp_path / "one" / "train"
    write_log(one, [1.0])  # a single logged loss cannot show a fall
    assert read_run_learning(one).learned is None
    write_log(one, FALLING)
    (one / "validation.csv").write_text("iteration,metric\nx,dsc\n", encoding="utf-8")
    record = read_run_learning(one)
    assert record.learned is True and "validation.csv unreadable" in record.problem


def test_study_learning_reads_each_run_folder(tmp_path: Path) -> None:
    write_log(tmp_path / "runs" / "a" / "train", FALLING)
    write_log(tmp_path / "runs" / "b" / "train", FLAT)
    found = read_study_learning(tmp_path, ["a", "b", "c", "a", ""])
    assert list(found) == ["a", "b", "c"]
    assert [found[k].learned for k in found] == [True, False, None]
    assert isinstance(found["c"], RunLearning)
