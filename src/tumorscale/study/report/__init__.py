"""The scaling-study report: PNG/SVG plots, `report.md` and a self-contained `report.html`.

Reads what `study fit` and `study run` left in the study folder (`results/fit.json`,
`results/runs.csv`, `plan.yaml`, training logs and predictions under `runs/` and the test cases
under `testsets/`) and writes `report/` beside them. Every input is optional: whatever is missing
is named in the report and the rest is still shown. The headlines are computed from fit.json's
content by `study.headlines` (as fit.md's are), never parsed out of fit.md.

Modules: `load` (inputs → StudyData), `figures` (matplotlib), `slices` (NIfTI example slices),
`sections` (the report's blocks), `document` (block model, Markdown and HTML rendering),
`format` (defensive value reading and number formatting).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tumorscale.errors import InputFileError
from tumorscale.io import write_text_atomic
from tumorscale.study.report.document import FigureFiles, markdown_to_html, to_html, to_markdown
from tumorscale.study.report.figures import bootstrap_band
from tumorscale.study.report.format import ZERO_LABEL
from tumorscale.study.report.load import StudyData, load_report_data
from tumorscale.study.report.sections import build_blocks, study_name
from tumorscale.study.report.slices import example_runs

__all__ = [
    "ZERO_LABEL",
    "ReportPaths",
    "StudyData",
    "bootstrap_band",
    "example_runs",
    "load_report_data",
    "markdown_to_html",
    "report_study_folder",
    "write_report",
]


@dataclass(frozen=True)
class ReportPaths:
    """What `write_report` wrote: the HTML, the Markdown and every figure file (PNG and SVG)."""

    html: Path
    markdown: Path
    figures: list[Path]


def write_report(plan_dir: str | Path, out: str | Path | None = None) -> ReportPaths:
    """Write `report.md`, `report.html` and `figures/*.png|svg` (default folder: `plan_dir/report`).

    Every input is optional; what is missing is named in the report. Outputs are written
    atomically, and a rerun rewrites them from the current results.
    """
    plan_dir = Path(plan_dir)
    out_dir = Path(out) if out is not None else plan_dir / "report"
    figure_dir = out_dir / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    data = load_report_data(plan_dir)
    blocks = build_blocks(data, plan_dir, figure_dir)
    markdown, html_path = out_dir / "report.md", out_dir / "report.html"
    write_text_atomic(markdown, to_markdown(blocks, out_dir))
    write_text_atomic(html_path, to_html(blocks, f"tumorscale report: {study_name(data)}"))
    figures = [path for b in blocks if isinstance(b, FigureFiles) for path in (b.png, b.svg)]
    return ReportPaths(html=html_path, markdown=markdown, figures=figures)


def report_study_folder(plan_dir: str | Path) -> ReportPaths:
    """The `tumorscale study report OUT` entry: check the study folder, then write the report."""
    plan_dir = Path(plan_dir)
    if not plan_dir.is_dir():
        raise InputFileError(plan_dir, "study folder not found (run `tumorscale study plan` first)")
    if not (plan_dir / "results").is_dir() and not (plan_dir / "plan.yaml").is_file():
        raise InputFileError(plan_dir, "not a study folder: no plan.yaml and no results/")
    return write_report(plan_dir)
