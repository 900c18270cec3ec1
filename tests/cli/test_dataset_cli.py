"""The `tumorscale dataset` commands end to end, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from tests.atlas.test_check import build_broken_tree
from tests.conftest import CaseMaker
from tumorscale.cli import app

runner = CliRunner()
SHAPE = (20, 20, 10)


def test_every_command_has_help() -> None:
    for command in (
        [],
        ["dataset"],
        ["dataset", "info"],
        ["dataset", "check"],
        ["dataset", "example"],
        ["phantom"],
        ["demo"],
        ["evaluate"],
        ["preprocess"],
        ["train"],
        ["predict"],
        ["export-nnunet"],
        ["study"],
        ["study", "plan"],
        ["study", "run"],
        ["study", "fit"],
        ["study", "report"],
    ):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert "Usage" in result.output


def test_info_json(tmp_path: Path, make_case: CaseMaker) -> None:
    mask = np.zeros(SHAPE, np.uint8)
    mask[2:8, 2:8, 2:6] = 1
    make_case(tmp_path, "BDMAP_00000001", SHAPE, {"liver": mask, "liver_lesion": mask})
    make_case(tmp_path, "BDMAP_00000002", SHAPE, {"liver": mask, "liver_lesion": 0 * mask})
    result = runner.invoke(app, ["dataset", "info", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    liver = data["organs"]["liver"]
    assert data["cases"] == 2
    assert (liver["cases_with_organ"], liver["tumor_positive"], liver["controls"]) == (2, 1, 1)
    assert liver["instances_by_size_mm"] == {"<20": 1, "20-50": 0, ">50": 0}
    assert data["organs"]["uterus"]["unknown"] == 2


def test_info_table(tmp_path: Path, make_case: CaseMaker) -> None:
    make_case(tmp_path, masks={"liver": np.ones(SHAPE)}, shape=SHAPE)
    result = runner.invoke(app, ["dataset", "info", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "pancreas" in result.stdout and "total" in result.stdout


def test_info_on_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["dataset", "info", str(tmp_path)])
    assert result.exit_code == 2
    assert "no cases found" in result.output and str(tmp_path) in result.output


def test_check_exit_codes(tmp_path: Path, make_case: CaseMaker) -> None:
    bad = build_broken_tree(tmp_path / "bad", make_case)
    result = runner.invoke(app, ["dataset", "check", str(tmp_path / "bad"), "--quiet"])
    assert result.exit_code == 1
    flat = result.stdout.replace("\n", "")
    for path in bad.values():
        assert str(path) in flat
    mask = np.zeros(SHAPE, np.uint8)
    make_case(tmp_path / "good", masks={"liver": mask, "notes_v2": mask}, shape=SHAPE)
    result = runner.invoke(app, ["dataset", "check", str(tmp_path / "good"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "0 error(s), 1 warning(s)" in result.stdout
    strict = runner.invoke(app, ["dataset", "check", str(tmp_path / "good"), "--quiet", "--strict"])
    assert strict.exit_code == 1
