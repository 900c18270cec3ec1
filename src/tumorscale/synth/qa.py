"""Realism report: synthetic tumors against reference (annotated) tumors, per organ (notes §9).

    OUT/qa_features.csv   one row per tumor instance: source (synth|reference), case, organ,
                          features
    OUT/qa_summary.csv    per organ × feature: n_synth, n_ref, medians, Wasserstein distance
    OUT/qa_summary.md     the same as Markdown tables
    OUT/qa_<organ>.png    one histogram panel per feature, both distributions overlaid

Features are defined in `tumorscale.synth.qa_features`. A tumor instance is a 26-connected
component of the union of an organ's lesion files; cases whose lesion files are empty (controls)
add nothing. `count_in_case` is compared over cases (one value per case with tumors), the other
features over tumors. The Wasserstein distance is in the feature's own unit (HU, mm, ratio).

Voxel size: the one voxel-size dependent feature, edge_rise_mm, is measured on a common 1 mm
isotropic grid (qa_features), so sets of different spacings are compared directly rather than
per spacing group; sphericity and diameter are in mm from the true spacing. qa_features.csv
gives each tumor's native `coarsest_spacing_mm`, and qa_summary.md notes the range per source,
since a sharp edge still reads about the native slice spacing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import wasserstein_distance

from tumorscale.atlas import CaseEntry, index_dataset
from tumorscale.errors import InputFileError
from tumorscale.io import (
    atomic_path,
    read_mask_union,
    read_nifti,
    write_csv_atomic,
    write_text_atomic,
)
from tumorscale.organs import TUMOR_ORGANS
from tumorscale.synth.qa_features import (
    COMMON_SPACING_MM,
    FEATURES,
    TumorFeatures,
    tumor_features,
)

SOURCES: tuple[str, str] = ("synth", "reference")
FEATURE_UNITS = {
    "contrast_hu": "HU",
    "noise_ratio": "",
    "edge_rise_mm": "mm",
    "diameter_mm": "mm",
    "sphericity": "",
    "count_in_case": "",
}
FEATURE_COLUMNS: tuple[str, ...] = tuple(TumorFeatures.__dataclass_fields__)
SUMMARY_COLUMNS: tuple[str, ...] = (
    "organ", "feature", "n_synth", "n_ref", "median_synth", "median_ref", "wasserstein",
)

Progress = Callable[[int, int], None]


@dataclass
class QaReport:
    """What `synth_qa` measured and wrote."""

    out: Path
    organs: list[str]
    features: list[dict] = field(default_factory=list)  # qa_features.csv rows
    summary: list[dict] = field(default_factory=list)  # qa_summary.csv rows
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (source, case id, reason)
    files: list[Path] = field(default_factory=list)

    @property
    def gaps(self) -> list[str]:
        """Why the comparison is incomplete (nothing measured, an organ without tumors on one
        side, so no distance); empty when every distance was computed."""
        return comparison_gaps(self.features, self.organs, self.failed)

    @property
    def compared(self) -> bool:
        """Whether at least one organ had tumors on both sides (so some distance exists)."""
        sources = {(row["organ"], row["source"]) for row in self.features}
        return any({(o, "synth"), (o, "reference")} <= sources for o in self.organs)

    def wasserstein(self, organ: str, feature: str) -> float:
        for row in self.summary:
            if row["organ"] == organ and row["feature"] == feature:
                return float(row["wasserstein"])
        raise KeyError((organ, feature))


def case_features(case: CaseEntry, organs: Sequence[str]) -> list[dict]:
    """Feature rows of every tumor of `organs` in one indexed case (reads the CT only if needed)."""
    rows: list[dict] = []
    ct = None
    for organ in organs:
        files = case.organ(organ)
        if not files.lesions or case.ct is None:
            continue
        lesions = read_mask_union(files.lesions, case.ct, case.geometry, canonical=True).array
        if lesions is None or not lesions.any():
            continue
        if not files.masks:
            organ_mask = np.zeros_like(lesions)
        else:
            organ_mask = read_mask_union(files.masks, case.ct, case.geometry, canonical=True).array
        if ct is None:
            ct = read_nifti(case.ct, kind="image")
        for features in tumor_features(ct.array, organ_mask | lesions, lesions, ct.spacing):
            rows.append({"case_id": case.case_id, "organ": organ, **features.to_dict()})
    return rows


def _feature_values(rows: list[dict], source: str, organ: str, feature: str) -> np.ndarray:
    selected = [row for row in rows if row["source"] == source and row["organ"] == organ]
    if feature == "count_in_case":
        per_case = {row["case_id"]: row["count_in_case"] for row in selected}
        values = np.asarray(list(per_case.values()), dtype=float)
    else:
        values = np.asarray([row[feature] for row in selected], dtype=float)
    return values[np.isfinite(values)]


def summarize_features(rows: list[dict], organs: Sequence[str]) -> list[dict]:
    """Per organ × feature: counts, medians and the Wasserstein distance synth vs reference."""
    summary = []
    for organ in organs:
        for feature in FEATURES:
            synth = _feature_values(rows, "synth", organ, feature)
            ref = _feature_values(rows, "reference", organ, feature)
            both = synth.size > 0 and ref.size > 0
            summary.append({
                "organ": organ,
                "feature": feature,
                "n_synth": int(synth.size),
                "n_ref": int(ref.size),
                "median_synth": float(np.median(synth)) if synth.size else math.nan,
                "median_ref": float(np.median(ref)) if ref.size else math.nan,
                "wasserstein": float(wasserstein_distance(synth, ref)) if both else math.nan,
            })
    return summary


def comparison_gaps(
    rows: list[dict], organs: Sequence[str], failed: list[tuple[str, str, str]]
) -> list[str]:
    """Plain-language reasons why some or all Wasserstein distances could not be computed."""
    if not rows:
        unreadable = f" ({len(failed)} case(s) could not be read)" if failed else ""
        return [f"no tumor was measured in either folder{unreadable}"]
    gaps = []
    for organ in organs:
        for source, side in (("synth", "the synthetic folder"), ("reference", "the reference")):
            if not any(row["organ"] == organ and row["source"] == source for row in rows):
                gaps.append(f"{organ}: {side} has no {organ} tumors, so no distance is computed")
    return gaps


def _format(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def spacing_note(rows: list[dict]) -> list[str]:
    """Markdown lines on voxel size: the common grid of edge_rise_mm and the native slice
    spacing of each source (the floor of that feature)."""
    lines = [
        f"Spacing: edge_rise_mm is measured after resampling each tumor's neighbourhood to "
        f"{COMMON_SPACING_MM:g} mm isotropic; a sharp edge still reads about the native slice "
        "spacing. Native coarsest voxel side (mm):",
        "",
    ]
    for source in SOURCES:
        values = np.asarray([row["coarsest_spacing_mm"] for row in rows
                             if row["source"] == source], dtype=float)
        text = (f"{_format(float(values.min()))}-{_format(float(values.max()))} "
                f"(median {_format(float(np.median(values)))})") if values.size else "none"
        lines.append(f"- {source}: {text}")
    return [*lines, ""]


def _markdown(
    summary: list[dict], organs: Sequence[str], failed: list[tuple[str, str, str]],
    gaps: Sequence[str] = (), rows: Sequence[dict] = (),
) -> str:
    lines = [
        "# Synthetic tumor realism (synth-qa)",
        "",
        "Wasserstein distance between synthetic and reference distributions, in each feature's",
        "unit (0 = identical). Features: tumorscale.synth.qa_features.",
        "",
    ]
    if rows:
        lines += spacing_note(list(rows))
    if gaps:
        lines += ["## Incomplete comparison", "", *[f"- {gap}" for gap in gaps], ""]
    for organ in organs:
        lines += [
            f"## {organ}",
            "",
            "| feature | n synth | n ref | median synth | median ref | Wasserstein |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in summary:
            if row["organ"] != organ:
                continue
            unit = FEATURE_UNITS.get(row["feature"], "")
            name = f"{row['feature']} ({unit})" if unit else row["feature"]
            lines.append(
                f"| {name} | {row['n_synth']} | {row['n_ref']} | {_format(row['median_synth'])} "
                f"| {_format(row['median_ref'])} | {_format(row['wasserstein'])} |"
            )
        lines.append("")
    if failed:
        lines += ["## Cases not measured", ""]
        lines += [f"- {source} {case_id}: {reason}" for source, case_id, reason in failed]
        lines.append("")
    return "\n".join(lines)


def plot_organ(rows: list[dict], organ: str, path: Path) -> Path:
    """Overlaid histograms (density) of every feature for one organ, written atomically."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13.0, 7.5), dpi=90)
    axes = figure.subplots(2, 3).ravel()
    for axis, feature in zip(axes, FEATURES, strict=True):
        synth = _feature_values(rows, "synth", organ, feature)
        ref = _feature_values(rows, "reference", organ, feature)
        joined = np.concatenate([synth, ref])
        if joined.size:
            low, high = float(joined.min()), float(joined.max())
            if high <= low:
                low, high = low - 0.5, high + 0.5
            bins = np.linspace(low, high, 21)
            for values, label, colour in ((ref, "reference", "tab:blue"),
                                          (synth, "synthetic", "tab:orange")):
                if values.size:
                    axis.hist(values, bins=bins, density=True, alpha=0.5, color=colour,
                              label=f"{label} (n={values.size})")
            axis.legend(fontsize=8)
        else:
            axis.text(0.5, 0.5, "no values", ha="center", va="center", transform=axis.transAxes)
        unit = FEATURE_UNITS.get(feature, "")
        axis.set_title(f"{feature} ({unit})" if unit else feature, fontsize=10)
    figure.suptitle(f"{organ}: synthetic vs reference tumors")
    figure.subplots_adjust(left=0.05, right=0.98, bottom=0.06, top=0.9, wspace=0.25, hspace=0.3)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", metadata={"Software": None})
    return path


def synth_qa(
    synth: Path,
    reference: Path,
    out: Path,
    organs: list[str] | None = None,
    progress: Progress | None = None,
) -> QaReport:
    """Measure every tumor in the two AbdomenAtlas trees and write the realism report to `out`.

    organs: organs to compare (default: every organ with tumors in either tree, registry order).
    `progress(done, total)` counts cases over both trees. Cases that cannot be read are recorded
    in `QaReport.failed` and skipped. Writes only inside `out`.
    """
    if organs is not None:
        unknown = [organ for organ in organs if organ not in TUMOR_ORGANS]
        if unknown:
            raise ValueError(f"organs must be among {', '.join(TUMOR_ORGANS)}; got {unknown}")
    candidates = list(organs) if organs is not None else list(TUMOR_ORGANS)
    trees = {"synth": index_dataset(synth), "reference": index_dataset(reference)}
    total = sum(len(tree.cases) for tree in trees.values())
    rows: list[dict] = []
    failed: list[tuple[str, str, str]] = []
    done = 0
    for source in SOURCES:
        for case in trees[source].cases:
            try:
                found = case_features(case, candidates)
            except (InputFileError, OSError, ValueError) as error:
                failed.append((source, case.case_id, str(error)))
                found = []
            rows.extend({"source": source, **row} for row in found)
            done += 1
            if progress is not None:
                progress(done, total)
    if organs is None:
        present = {row["organ"] for row in rows}
        chosen = [organ for organ in TUMOR_ORGANS if organ in present]
    else:
        chosen = [organ for organ in TUMOR_ORGANS if organ in set(organs)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize_features(rows, chosen)
    report = QaReport(out, chosen, rows, summary, failed)
    columns = ("source", "case_id", "organ", *FEATURE_COLUMNS)
    write_csv_atomic(out / "qa_features.csv", columns, rows, _format)
    write_csv_atomic(out / "qa_summary.csv", SUMMARY_COLUMNS, summary, _format)
    write_text_atomic(out / "qa_summary.md",
                      _markdown(summary, chosen, failed, report.gaps, rows))
    report.files = [out / "qa_features.csv", out / "qa_summary.csv", out / "qa_summary.md"]
    for organ in chosen:
        report.files.append(plot_organ(rows, organ, out / f"qa_{organ}.png"))
    return report
