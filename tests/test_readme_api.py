"""The README's "Python API" example runs as written (in a temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _api_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Python API", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the Python API section holds one python example"
    return blocks[0]


def test_readme_python_api_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(_api_example(), str(README), "exec"), namespace)

    printed = capsys.readouterr().out
    assert "(" in printed and "synthetic cases, 0 failed" in printed
    synthetic = namespace["synthetic"]
    assert synthetic.done and not synthetic.failed  # type: ignore[attr-defined]
    assert namespace["predicted"].ok  # type: ignore[attr-defined]
    assert (tmp_path / "api-example" / "model" / "model.pt").is_file()
    assert (tmp_path / "api-example" / "evaluation" / "per_case.csv").is_file()
    assert "real" in printed  # the fit's headline names its condition
