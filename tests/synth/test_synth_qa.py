"""synth-qa: features against analytic answers, the Wasserstein summary, the report on phantoms."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.special import erfc

from tumorscale.phantom import PhantomOptions, write_cohort
from tumorscale.synth.batch import CSV_NAME, synthesize_dataset
from tumorscale.synth.qa import summarize_features, synth_qa
from tumorscale.synth.qa_features import FEATURES, sphericity, tumor_features

ORGAN_HU, OUTSIDE_HU, CONTRAST_HU, RADIUS_MM = 100.0, -100.0, -40.0, 10.0


def sphere_case(
    spacing: tuple[float, float, float], blur_mm: float = 0.0, noise_sd: float = 0.0,
    texture_sd: float = 0.0, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ball organ (r 35 mm) holding a ball tumor (r 10 mm, -40 HU), optional blur and noise."""
    shape = tuple(round(80.0 / s) for s in spacing)
    grid = np.indices(shape, dtype=np.float32)
    radius = np.sqrt(sum(((grid[a] - (shape[a] - 1) / 2) * spacing[a]) ** 2 for a in range(3)))
    organ = radius <= 35.0
    if blur_mm:
        occupancy = 0.5 * erfc((radius - RADIUS_MM) / (blur_mm * math.sqrt(2)))
    else:
        occupancy = (radius <= RADIUS_MM).astype(np.float32)
    rng = np.random.default_rng(seed)
    ct = np.where(organ, ORGAN_HU, OUTSIDE_HU) + CONTRAST_HU * occupancy
    if noise_sd:
        ct = ct + rng.normal(0.0, noise_sd, shape)  # the scan's noise, kept inside the tumor
    if texture_sd:
        ct = ct + (occupancy >= 0.5) * rng.normal(0.0, texture_sd, shape)
    return ct.astype(np.float32), organ, occupancy >= 0.5


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.8, 2.5)])
@pytest.mark.parametrize("noise_sd", [0.0, 12.0])
def test_sphere_of_known_contrast(spacing, noise_sd) -> None:
    ct, organ, lesion = sphere_case(spacing, noise_sd=noise_sd)
    (features,) = tumor_features(ct, organ, lesion, spacing)
    assert features.contrast_hu == pytest.approx(CONTRAST_HU, abs=3.0)
    assert features.organ_median_hu == pytest.approx(ORGAN_HU, abs=3.0)
    assert features.diameter_mm == pytest.approx(2 * RADIUS_MM, rel=0.1)
    assert 0.97 < features.sphericity <= 1.0
    assert features.count_in_case == 1
    if noise_sd:
        assert features.noise_ratio == pytest.approx(1.0, abs=0.15)
        assert features.noise_sd_organ_hu > 5.0
    else:
        assert math.isnan(features.noise_ratio)  # no noise anywhere: undefined, not 0 or 1


def test_texture_inside_the_tumor_raises_the_noise_ratio() -> None:
    ct, organ, lesion = sphere_case((1.0, 1.0, 1.0), noise_sd=10.0, texture_sd=10.0)
    (features,) = tumor_features(ct, organ, lesion, (1.0, 1.0, 1.0))
    assert features.noise_ratio == pytest.approx(math.sqrt(2.0), rel=0.15)


def test_edge_rise_follows_the_blur() -> None:
    spacing = (1.0, 1.0, 1.0)
    sharp = tumor_features(*sphere_case(spacing), spacing)[0].edge_rise_mm
    blur_mm = 1.5
    blurred = tumor_features(*sphere_case(spacing, blur_mm=blur_mm, noise_sd=5.0), spacing)[0]
    # The 10-90 % width of an erf edge is 2.563 σ; a sharp edge measures about one voxel.
    assert sharp < 1.5
    assert blurred.edge_rise_mm == pytest.approx(2.563 * blur_mm, rel=0.2)


def test_instances_are_26_connected_and_sorted_by_size() -> None:
    ct = np.full((30, 30, 30), 100.0, np.float32)
    organ = np.ones(ct.shape, bool)
    lesion = np.zeros(ct.shape, bool)
    lesion[5:15, 5:15, 5:15] = True  # 1000 voxels
    lesion[20:24, 20:24, 20:24] = True  # 64 voxels
    lesion[15, 15, 15] = True  # touches the first cube diagonally: same instance
    ct[lesion] = 60.0
    features = tumor_features(ct, organ, lesion, (1.0, 1.0, 1.0))
    assert [f.voxels for f in features] == [1001, 64]
    assert [f.tumor for f in features] == [1, 2]
    assert all(f.count_in_case == 2 for f in features)
    assert features[0].contrast_hu == pytest.approx(-40.0)
    # Flat-faced shapes rank below a ball in the ideal order; the surface is smoothed by one
    # voxel (against the staircase), which rounds edges and corners: up to ~15 % rounder here.
    measured, ideal = [], []
    for sides in ((10, 10, 10), (10, 10, 40), (4, 20, 40)):
        box = np.zeros([n + 2 for n in sides], bool)
        box[1:-1, 1:-1, 1:-1] = True
        area = 2 * (sides[0] * sides[1] + sides[1] * sides[2] + sides[0] * sides[2])
        ideal.append(math.pi ** (1 / 3) * (6 * np.prod(sides)) ** (2 / 3) / area)
        measured.append(sphericity(box, (1.0, 1.0, 1.0)))
    assert measured == sorted(measured, reverse=True)
    assert measured[0] < 0.95
    assert all(i <= m <= 1.17 * i for m, i in zip(measured, ideal, strict=True))


def _rows(source: str, contrasts: list[float], cases: list[str]) -> list[dict]:
    rows = []
    for value, case in zip(contrasts, cases, strict=True):
        row = dict.fromkeys(FEATURES, 1.0)
        row.update(source=source, organ="liver", case_id=case, contrast_hu=value)
        rows.append(row)
    return rows


def test_wasserstein_is_zero_for_identical_sets_and_the_shift_otherwise() -> None:
    cases = ["a", "b", "c"]
    same = _rows("synth", [-30.0, -40.0, -50.0], cases) + _rows(
        "reference", [-30.0, -40.0, -50.0], cases
    )
    summary = {row["feature"]: row for row in summarize_features(same, ["liver"])}
    assert all(row["wasserstein"] == 0.0 for row in summary.values())
    assert summary["contrast_hu"]["n_synth"] == summary["contrast_hu"]["n_ref"] == 3
    assert summary["count_in_case"]["n_synth"] == 3  # one value per case
    shifted = _rows("synth", [-20.0, -30.0, -40.0], cases) + _rows(
        "reference", [-30.0, -40.0, -50.0], cases
    )
    contrast = next(r for r in summarize_features(shifted, ["liver"]) if r["feature"] ==
                    "contrast_hu")
    assert contrast["wasserstein"] == pytest.approx(10.0)
    assert contrast["median_synth"] - contrast["median_ref"] == pytest.approx(10.0)


@pytest.fixture(scope="module")
def reference_cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reference")
    options = PhantomOptions(inplane_spacing_mm=(3.0, 3.0), slice_spacing_mm=(4.0, 4.0),
                             tumor_fraction=1.0, female_fraction=1.0)
    write_cohort(root, 2, 15, options)  # colon; kidney + liver
    return root


@pytest.fixture(scope="module")
def synthetic_cohort(tmp_path_factory) -> tuple[Path, list[dict]]:
    controls = tmp_path_factory.mktemp("controls")
    options = PhantomOptions(inplane_spacing_mm=(3.0, 3.0), slice_spacing_mm=(4.0, 4.0),
                             tumor_fraction=0.0)
    write_cohort(controls, 2, 3, options)
    out = tmp_path_factory.mktemp("synthetic") / "out"
    synthesize_dataset(controls, out, ["liver", "kidney", "colon"], 1, 0)
    with open(out / CSV_NAME, newline="") as handle:
        return out, list(csv.DictReader(handle))


def test_report_of_a_tree_against_itself(reference_cohort, tmp_path) -> None:
    calls: list[tuple[int, int]] = []
    report = synth_qa(reference_cohort, reference_cohort, tmp_path / "qa",
                      progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (4, 4)
    assert report.organs and not report.failed
    for name in ("qa_features.csv", "qa_summary.csv", "qa_summary.md"):
        assert (tmp_path / "qa" / name).stat().st_size > 100
    for organ in report.organs:
        assert (tmp_path / "qa" / f"qa_{organ}.png").read_bytes()[:4] == b"\x89PNG"
        for feature in ("contrast_hu", "diameter_mm", "sphericity", "count_in_case"):
            assert report.wasserstein(organ, feature) == 0.0
    with open(tmp_path / "qa" / "qa_features.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["source"] for row in rows} == {"synth", "reference"}
    assert len(rows) == 2 * len(report.features) // 2
    markdown = (tmp_path / "qa" / "qa_summary.md").read_text(encoding="utf-8")
    assert "resampling each tumor's neighbourhood to 1 mm isotropic" in markdown
    assert "- reference: 4-4 (median 4)" in markdown  # the phantoms' 4 mm slices
    for row in rows:
        assert float(row["coarsest_spacing_mm"]) == 4.0
        assert 3.0 < float(row["diameter_mm"]) < 200.0
        assert 0.2 < float(row["sphericity"]) <= 1.0
        assert -200.0 < float(row["contrast_hu"]) < 200.0


def test_synthetic_against_reference_tumors(reference_cohort, synthetic_cohort, tmp_path) -> None:
    synth, records = synthetic_cohort
    report = synth_qa(synth, reference_cohort, tmp_path / "qa")
    assert report.organs == ["liver", "kidney", "colon"]
    assert not report.failed
    for organ in report.organs:
        assert (tmp_path / "qa" / f"qa_{organ}.png").stat().st_size > 10_000
        for feature in ("contrast_hu", "diameter_mm", "sphericity"):
            distance = report.wasserstein(organ, feature)
            assert np.isfinite(distance) and distance >= 0.0
    markdown = (tmp_path / "qa" / "qa_summary.md").read_text(encoding="utf-8")
    assert "## liver" in markdown and "| contrast_hu (HU) |" in markdown
    with open(tmp_path / "qa" / "qa_summary.csv", newline="") as handle:
        summary = list(csv.DictReader(handle))
    assert len(summary) == 3 * len(FEATURES)
    # Each synthetic tumor is measured as what the synthesizer says it made.
    synthetic: dict[tuple[str, str], dict] = {}
    for row in report.features:  # largest instance first
        if row["source"] == "synth":
            synthetic.setdefault((row["case_id"], row["organ"]), row)
    inserted = [r for r in records if not r["skipped"]]
    assert inserted and len(synthetic) >= len(inserted) - 1  # a tumor may split into pieces
    for record in inserted:
        measured = synthetic[(record["case_id"], record["organ"])]
        assert measured["diameter_mm"] == pytest.approx(
            float(record["achieved_diameter_mm"]), rel=0.15)
        if record["organ"] == "liver":  # uniform parenchyma: local and global medians agree
            assert measured["contrast_hu"] == pytest.approx(
                float(record["achieved_contrast_hu"]), abs=10.0)
