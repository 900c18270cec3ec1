"""Bad input and interrupted work, command by command: one row per hazard.

Each row builds a broken input under a temporary folder and names the command line, the exit
code and a piece of the message users must see. To add a hazard, write a `setup` that returns
the command's arguments and add a `Row`. `{tmp}` in the expected message is the test's folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import save_nifti
from tumorscale.cli import app

runner = CliRunner()
SHAPE = (20, 20, 10)


def _liver_case(root: Path, case_id: str) -> Path:
    """A small merged-layout case with a liver, a liver lesion and a plausible CT."""
    folder = root / case_id
    ct = np.random.default_rng(0).normal(40, 10, SHAPE).astype(np.int16)
    liver = np.zeros(SHAPE, np.uint8)
    liver[4:16, 4:16, 2:8] = 1
    lesion = np.zeros(SHAPE, np.uint8)
    lesion[8:11, 8:11, 4:6] = 1
    save_nifti(folder / "ct.nii.gz", ct)
    save_nifti(folder / "segmentations" / "liver.nii.gz", liver)
    save_nifti(folder / "segmentations" / "liver_lesion.nii.gz", lesion)
    return folder


# ----------------------------------------------------------------------------- set-ups


def _export_liver(tmp: Path) -> list[str]:
    return ["export-nnunet", str(tmp / "data"), str(tmp / "out"), "--dataset-id", "501",
            "--organ", "liver"]  # fmt: skip


def truncated_ct_export(tmp: Path) -> list[str]:
    _liver_case(tmp / "data", "BDMAP_00000001")
    bad = _liver_case(tmp / "data", "BDMAP_00000002") / "ct.nii.gz"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    return _export_liver(tmp)


def nan_ct_export(tmp: Path) -> list[str]:
    _liver_case(tmp / "data", "BDMAP_00000001")
    folder = _liver_case(tmp / "data", "BDMAP_00000002")
    ct = np.full(SHAPE, 40.0, np.float32)
    ct[0, 0, 0] = np.nan
    save_nifti(folder / "ct.nii.gz", ct)
    return _export_liver(tmp)


def malformed_override_train(tmp: Path) -> list[str]:
    config = tmp / "train.yaml"
    config.write_text("organs: [liver]\ndata:\n  root: data\n", encoding="utf-8")
    return ["train", str(config), "patch_size=[32,32"]


MARKUP_NAME = "ds_copy [old] :cd: x[/y"  # Rich markup, an emoji code and "[/" (a crash)


def markup_in_missing_path(tmp: Path) -> list[str]:
    return ["dataset", "check", str(tmp / MARKUP_NAME)]


def markup_in_case_error(tmp: Path) -> list[str]:
    _liver_case(tmp / MARKUP_NAME, "BDMAP_00000001")
    bad = _liver_case(tmp / MARKUP_NAME, "BDMAP_00000002") / "ct.nii.gz"
    bad.write_bytes(bad.read_bytes()[:100])
    return ["export-nnunet", str(tmp / MARKUP_NAME), str(tmp / "out"), "--dataset-id", "501"]


def mixed_layout_info(tmp: Path) -> list[str]:
    """One merged case and one split case (ct/ + label/) in one root."""
    _liver_case(tmp / "data", "BDMAP_00000001")
    split = _liver_case(tmp / "staging", "BDMAP_00000002")
    (tmp / "data" / "ct" / "BDMAP_00000002").mkdir(parents=True)
    (split / "ct.nii.gz").rename(tmp / "data" / "ct" / "BDMAP_00000002" / "ct.nii.gz")
    (tmp / "data" / "label" / "BDMAP_00000002").mkdir(parents=True)
    (split / "segmentations").rename(tmp / "data" / "label" / "BDMAP_00000002" / "segmentations")
    return ["dataset", "info", str(tmp / "data")]


def duplicate_id_across_layouts(tmp: Path) -> list[str]:
    mixed_layout_info(tmp)
    _liver_case(tmp / "data", "BDMAP_00000002")
    return ["dataset", "check", str(tmp / "data")]


def _synth_qa(tmp: Path) -> list[str]:
    return ["synth-qa", str(tmp / "synthetic"), "--reference", str(tmp / "reference"),
            "--out", str(tmp / "qa")]  # fmt: skip


def tumor_free_reference_qa(tmp: Path) -> list[str]:
    _liver_case(tmp / "synthetic", "BDMAP_00000001")
    healthy = _liver_case(tmp / "reference", "BDMAP_00000002")
    save_nifti(healthy / "segmentations" / "liver_lesion.nii.gz", np.zeros(SHAPE, np.uint8))
    return _synth_qa(tmp)


def unreadable_qa(tmp: Path) -> list[str]:
    for root in ("synthetic", "reference"):
        ct = _liver_case(tmp / root, "BDMAP_00000001") / "ct.nii.gz"
        ct.write_bytes(ct.read_bytes()[: ct.stat().st_size // 2])
    return _synth_qa(tmp)


def output_is_a_file(tmp: Path) -> list[str]:
    (tmp / "taken").write_text("not a folder", encoding="utf-8")
    return ["phantom", str(tmp / "taken"), "--cases", "1"]


def output_name_too_long(tmp: Path) -> list[str]:
    _liver_case(tmp / "data", "BDMAP_00000001")
    return ["export-nnunet", str(tmp / "data"), str(tmp / ("x" * 300)), "--dataset-id", "501"]


def symlink_loops_in_dataset(tmp: Path) -> list[str]:
    _liver_case(tmp / "data", "BDMAP_00000001")
    bad = _liver_case(tmp / "data", "BDMAP_00000002")
    (tmp / "data" / "loop").symlink_to(tmp / "data" / "loop")
    looped = bad / "segmentations" / "pancreas.nii.gz"
    looped.symlink_to(looped)
    return ["dataset", "check", str(tmp / "data")]


def garbage_ct_synth(tmp: Path) -> list[str]:
    healthy = _liver_case(tmp / "data", "BDMAP_00000001")
    save_nifti(healthy / "segmentations" / "liver_lesion.nii.gz", np.zeros(SHAPE, np.uint8))
    bad = _liver_case(tmp / "data", "BDMAP_00000002") / "ct.nii.gz"
    bad.write_bytes(b"not a NIfTI file at all")
    return ["synth", str(tmp / "data"), str(tmp / "out"), "--organs", "liver"]


def predictions_without_truth(tmp: Path) -> list[str]:
    _liver_case(tmp / "truth", "BDMAP_00000001")
    for case_id in ("BDMAP_00000001", "BDMAP_00000003"):
        _liver_case(tmp / "pred", case_id)
    return [
        "evaluate",
        "--pred",
        str(tmp / "pred"),
        "--gt",
        str(tmp / "truth"),
        "--out",
        str(tmp / "eval"),
        "--organ",
        "liver",
    ]


def lesion_outside_organ(tmp: Path) -> list[str]:
    folder = _liver_case(tmp / "data", "BDMAP_00000001")
    lesion = np.zeros(SHAPE, np.uint8)
    lesion[17:19, 17:19, 8:10] = 1  # outside the liver box 4..16
    save_nifti(folder / "segmentations" / "liver_lesion.nii.gz", lesion)
    return ["dataset", "check", str(tmp / "data")]


def raw_scanner_values(tmp: Path) -> list[str]:
    folder = _liver_case(tmp / "data", "BDMAP_00000001")
    save_nifti(folder / "ct.nii.gz", np.random.default_rng(1).integers(0, 3000, SHAPE, np.int16))
    return ["dataset", "check", str(tmp / "data")]


def kidney_parts_disagree(tmp: Path) -> list[str]:
    folder = _liver_case(tmp / "data", "BDMAP_00000001")
    left, right, whole = (np.zeros(SHAPE, np.uint8) for _ in range(3))
    left[2:6, 2:6, 2:6] = 1
    right[12:16, 2:6, 2:6] = 1
    whole[2:6, 12:16, 2:6] = 1  # somewhere else entirely
    for name, mask in (("kidney_left", left), ("kidney_right", right), ("kidney", whole)):
        save_nifti(folder / "segmentations" / f"{name}.nii.gz", mask)
    return ["dataset", "check", str(tmp / "data")]


def info_with_unusable_cache(tmp: Path) -> list[str]:
    _liver_case(tmp / "data", "BDMAP_00000001")
    (tmp / "a_file").write_text("the cache folder would have to be inside this file")
    return ["dataset", "info", str(tmp / "data")]


@dataclass(frozen=True)
class Row:
    """A hazard: what `setup` builds, the exit code and the words users must read."""

    name: str
    setup: Callable[[Path], list[str]]
    exit_code: int
    message: str
    check: Callable[[Path], None] | None = None  # what must (not) be on disk afterwards
    env: Callable[[Path], dict[str, str]] | None = None  # extra environment for the command


def _only_the_good_case_exported(tmp: Path) -> None:
    images = sorted(p.name for p in (tmp / "out").glob("Dataset501_*/imagesTr/*"))
    assert images == ["BDMAP_00000001_0000.nii.gz"]


ROWS = [
    Row(
        "export-nnunet: truncated CT",
        truncated_ct_export,
        1,
        "{tmp}/data/BDMAP_00000002/ct.nii.gz",
        _only_the_good_case_exported,
    ),
    Row("export-nnunet: CT with NaN", nan_ct_export, 1, "NaN", _only_the_good_case_exported),
    Row("messages: markup in a missing path", markup_in_missing_path, 2, "{tmp}/" + MARKUP_NAME),
    Row(
        "messages: markup in a failed case's path",
        markup_in_case_error,
        1,
        "{tmp}/" + MARKUP_NAME + "/BDMAP_00000002/ct.nii.gz",
    ),
    Row(
        "dataset info: merged and split cases in one root",
        mixed_layout_info,
        0,
        "(mixed layout): 2 cases",
    ),
    Row(
        "dataset check: one id in both layouts",
        duplicate_id_across_layouts,
        2,
        "case id BDMAP_00000002 is also at {tmp}/data/BDMAP_00000002",
    ),
    Row(
        "synth-qa: reference without tumors",
        tumor_free_reference_qa,
        1,
        "liver: the reference has no liver tumors, so no distance is computed",
    ),
    Row(
        "synth-qa: nothing readable",
        unreadable_qa,
        1,
        "no tumor was measured in either folder (2 case(s) could not be read)",
    ),
    Row("phantom: output path is a file", output_is_a_file, 2, "{tmp}/taken"),
    Row("export-nnunet: output name too long", output_name_too_long, 2, "file name too long"),
    Row(
        "dataset check: symlink loops in the root and in a case",
        symlink_loops_in_dataset,
        1,
        "{tmp}/data/BDMAP_00000002/segmentations/pancreas.nii.gz",
    ),
    Row(
        "synth: a garbage CT keeps the reader's reason",
        garbage_ct_synth,
        1,
        "{tmp}/data/BDMAP_00000002/ct.nii.gz: unreadable NIfTI file",
    ),
    Row(
        "evaluate: predictions without truth are named",
        predictions_without_truth,
        0,
        "1 predicted case(s) have no truth and are not scored: BDMAP_00000003",
    ),
    Row(
        "dataset check: a lesion outside its organ",
        lesion_outside_organ,
        0,
        "100% of the lesion lies outside the liver mask",
    ),
    Row(
        "dataset check: CT in raw scanner values",
        raw_scanner_values,
        0,
        "look like raw scanner values, not HU",
    ),
    Row(
        "dataset check: kidney against its halves",
        kidney_parts_disagree,
        0,
        "disagrees with kidney_left ∪ kidney_right (Dice 0.00)",
    ),
    Row(
        "train: malformed override",
        malformed_override_train,
        2,
        "override 'patch_size=[32,32': the value is not valid YAML",
    ),
    Row(
        "dataset info: a cache folder that cannot be made only costs time",
        info_with_unusable_cache,
        0,
        "(merged layout): 1 cases",
        env=lambda tmp: {"TUMORSCALE_CACHE_DIR": str(tmp / "a_file" / "cache")},
    ),
]


def _squeezed(text: str) -> str:
    """Without white space: Rich may wrap a long path anywhere."""
    return "".join(text.split())


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_hazard(row: Row, tmp_path: Path) -> None:
    env = {"COLUMNS": "400", **(row.env(tmp_path) if row.env else {})}
    result = runner.invoke(app, row.setup(tmp_path), env=env)
    assert result.exit_code == row.exit_code, result.output
    assert "Traceback" not in result.output
    expected = row.message.format(tmp=tmp_path)
    assert _squeezed(expected) in _squeezed(result.output), result.output
    if row.check is not None:
        row.check(tmp_path)
