"""Scaling-law fits: parameter recovery, n*, extrapolation flags, savings, pooled metrics."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tumorscale.metrics.pooled import pooled_metrics as run_metrics
from tumorscale.metrics.summary import ALL_ORGANS, summarize_rows
from tumorscale.study.claims import sanity as _sanity
from tumorscale.study.estimates import Estimate
from tumorscale.study.fit import fit_study, fit_study_folder, write_fit
from tumorscale.study.headlines import gain_digits, v_ci
from tumorscale.study.law import (
    fit_log_linear,
    fit_saturating_power_law,
    n_at_fraction,
    n_for_value,
    power_law,
)
from tumorscale.study.learning import RunLearning

COUNTS = (60, 120, 278, 500, 1000, 1500, 3159)
# Noise-free rows give zero-width intervals, which the fit refuses as no finding; a trace of
# run noise keeps the exact-law tests about the law.
TRACE = 1e-6
PARAMETER_SETS = [(0.60, 2.0, 0.5), (0.80, 30.0, 1.0), (0.90, 0.5, 0.2)]


def _run_rows(
    run_id: str, n_real: int, ratio: float, seed: int, test_set: str, dsc: np.ndarray
) -> list[dict[str, object]]:
    """One run's rows: a positive case per DSC value (as strings, like the CSV) plus 2 controls."""
    run = {"run_id": run_id, "n_real": str(n_real), "condition": f"r{ratio:g}",
           "synthetic_ratio": str(ratio), "seed": str(seed), "test_set": test_set}  # fmt: skip
    rows = []
    for k, score in enumerate(dsc):
        detected, text = int(score > 0.5), repr(float(score))
        rows.append(run | {"case_id": f"case{k:03d}", "organ": "pancreas", "tumor_status":
                           "positive", "error": "", "dsc": text, "nsd": text,
                           "predicted_positive": str(score > 0.3), "truth_lesions": "1",
                           "detected_lesions": str(detected)})  # fmt: skip
    for k in range(2):
        rows.append(run | {"case_id": f"ctrl{k}", "organ": "pancreas", "tumor_status": "control",
                           "error": "", "dsc": "", "nsd": "", "predicted_positive": "False",
                           "truth_lesions": "0", "detected_lesions": "0"})  # fmt: skip
    return rows


def study_rows(
    laws: dict[float, tuple[float, float, float]],
    rng: np.random.Generator,
    counts: tuple[int, ...] = COUNTS,
    seeds: tuple[int, ...] = (0, 1, 2),
    cases: int = 40,
    case_sd: float = 0.0,
    noise_sd: float = 0.0,
    test_set: str = "id",
) -> list[dict[str, object]]:
    """Per-case rows whose mean DSC per run follows `laws[ratio]` plus case and run noise.

    Each case has a fixed difficulty (shared by every run, as a real test set), each run adds
    independent per-case noise; the seed mean over cases is the law plus sampling error.
    """
    difficulty = rng.normal(0.0, case_sd, cases)
    rows = []
    for ratio, (a, b, c) in laws.items():
        for n in counts:
            for seed in seeds:
                dsc = power_law(n, a, b, c) + difficulty + rng.normal(0.0, noise_sd, cases)
                rows += _run_rows(f"r{ratio:g}-n{n}-s{seed}", n, ratio, seed, test_set, dsc)
    return rows


def _fit_of(study, metric="dsc", ratio=0.0, test_set="id"):
    return next(
        f
        for f in study.fits
        if (f.metric, f.synthetic_ratio, f.test_set) == (metric, ratio, test_set)
    )


@pytest.mark.parametrize(("a", "b", "c"), PARAMETER_SETS)
def test_fit_recovers_exact_parameters(a: float, b: float, c: float) -> None:
    fit = fit_saturating_power_law(COUNTS, power_law(np.array(COUNTS, float), a, b, c))
    assert fit.converged, fit.reason
    assert (fit.a, fit.b, fit.c) == pytest.approx((a, b, c), rel=1e-4)


@pytest.mark.parametrize(("a", "b", "c"), PARAMETER_SETS)
@pytest.mark.parametrize("noise", [0.005, 0.02])
def test_fit_recovers_parameters_from_noisy_curves(
    a: float, b: float, c: float, noise: float
) -> None:
    rng = np.random.default_rng(7)
    n = np.array(COUNTS, float)
    truth = power_law(n, a, b, c)
    plateaus, n95, curve_errors = [], [], []
    for _ in range(40):
        fit = fit_saturating_power_law(n, truth + rng.normal(0, noise, n.size))
        plateaus.append(fit.a)
        n95.append(float(n_at_fraction(fit.a, fit.b, fit.c, 0.95)))
        curve_errors.append(np.abs(fit.predict(n) - truth).max())
    # The median plateau and fitted curve are within ~noise of the truth.
    assert abs(np.median(plateaus) - a) < 1.5 * noise
    assert np.median(curve_errors) < noise
    true_n95 = float(n_at_fraction(a, b, c, 0.95))
    if true_n95 < 2 * max(COUNTS):  # n95 far beyond the data (set 3: 169,000) is not identified
        assert 0.5 < np.median(n95) / true_n95 < 2.0


def test_bootstrap_intervals_cover_the_truth_in_most_trials() -> None:
    a, b, c = 0.62, 3.0, 0.6
    covered = {"a": 0, "n95": 0}
    trials = 10
    true_n95 = float(n_at_fraction(a, b, c, 0.95))
    for trial in range(trials):
        rows = study_rows({0.0: (a, b, c)}, np.random.default_rng(100 + trial),
                          case_sd=0.08, noise_sd=0.05)  # fmt: skip
        fit = _fit_of(fit_study(rows, metrics=("dsc",), n_bootstrap=200, seed=trial))
        covered["a"] += fit.a.ci_low <= a <= fit.a.ci_high
        n95 = fit.n_at["0.95"]
        covered["n95"] += n95.ci_low <= true_n95 <= n95.ci_high
    assert covered["a"] >= 7 and covered["n95"] >= 7, covered


def test_n_star_formula_and_inverse() -> None:
    a, b, c, q = 0.6, 2.0, 0.5, 0.95
    expected = (b / ((1 - q) * a)) ** (1 / c)
    assert float(n_at_fraction(a, b, c, q)) == pytest.approx(expected, rel=1e-12)
    assert float(power_law(expected, a, b, c)) == pytest.approx(q * a, rel=1e-12)
    assert float(n_for_value(a, b, c, 0.5)) == pytest.approx((b / 0.1) ** 2, rel=1e-12)
    assert math.isnan(float(n_for_value(a, b, c, 0.7)))  # above the plateau: never reached
    assert float(n_for_value(a, 0.0, c, 0.5)) == 0.0  # flat curve already above the target


def test_extrapolation_flags() -> None:
    # n95 = (2 / (0.05·0.6))^2 ≈ 4,444: beyond 3,159; measured only to 500, n99 far beyond.
    rows = study_rows({0.0: (0.6, 2.0, 0.5)}, np.random.default_rng(0), counts=(60, 120, 278, 500),
                      noise_sd=TRACE)  # fmt: skip
    fit = _fit_of(fit_study(rows, metrics=("dsc",), n_bootstrap=50))
    assert fit.n_at["0.95"].value == pytest.approx(4444.4, rel=1e-3)
    assert fit.n_at["0.95"].extrapolated is True
    assert fit.plateau_extrapolated is True and fit.saturated["value"] is False
    # A fast curve (c = 2): n95 = (27 / 0.03)^(1/2) = 30, below the first count.
    rows = study_rows({0.0: (0.6, 27.0, 2.0)}, np.random.default_rng(0), noise_sd=TRACE)
    fast = _fit_of(fit_study(rows, metrics=("dsc",), n_bootstrap=50))
    assert fast.n_at["0.95"].value == pytest.approx(30.0, rel=1e-3)
    assert fast.n_at["0.95"].extrapolated is True
    # c = 1, b = 10: n95 ≈ 333 and n99 ≈ 1,667, both measured.
    rows = study_rows({0.0: (0.6, 10.0, 1.0)}, np.random.default_rng(0), noise_sd=TRACE)
    inside = _fit_of(fit_study(rows, metrics=("dsc",), n_bootstrap=50))
    assert inside.n_at["0.95"].value == pytest.approx(333.3, rel=1e-3)
    assert inside.n_at["0.95"].extrapolated is False
    assert inside.n_at["0.99"].extrapolated is False
    assert inside.saturated["value"] is True and inside.plateau_extrapolated is False


def test_savings_ratio_of_a_curve_shifted_by_three_in_n() -> None:
    a, b, c = 0.6, 2.0, 0.5
    # synthetic(n) = real(3n): the same law with b·3^(−c).
    rows = study_rows({0.0: (a, b, c), 3.0: (a, b * 3**-c, c)}, np.random.default_rng(1),
                      counts=(60, 278, 500, 1500, 3159), noise_sd=TRACE)  # fmt: skip
    study = fit_study(rows, metrics=("dsc",), n_bootstrap=50)
    savings = [s for s in study.savings if s.metric == "dsc"]
    assert {s.target_kind for s in savings} == {"real_only_at_n", "plateau"}
    for saving in savings:
        assert saving.ratio.value == pytest.approx(3.0, rel=1e-3)
        assert saving.condition == "r3" and saving.baseline_condition == "r0"
    at_1500 = next(s for s in savings if s.target_parameter == 1500)
    assert at_1500.n_real_only.value == 1500
    assert at_1500.n_with_synthetic.value == pytest.approx(500, rel=1e-3)
    assert not at_1500.extrapolated
    plateau = next(s for s in savings if s.target_kind == "plateau" and s.target_parameter == 0.99)
    assert plateau.n_real_only.extrapolated is True  # n99 ≈ 1.1e5, far past 3,159


def test_paired_resamples_make_identical_conditions_identical() -> None:
    rows = study_rows({0.0: (0.6, 2.0, 0.5)}, np.random.default_rng(2), case_sd=0.1, noise_sd=0.05)
    twin = [r | {"synthetic_ratio": "1", "condition": "twin",
                 "run_id": f"t{r['run_id']}"} for r in rows]  # fmt: skip
    study = fit_study(rows + twin, metrics=("dsc",), n_bootstrap=100)
    for saving in study.savings:
        assert (saving.ratio.value, saving.ratio.ci_low, saving.ratio.ci_high) == pytest.approx(
            (1.0, 1.0, 1.0)
        )


def _hand_rows() -> list[dict[str, object]]:
    def row(case, organ, status, **values):
        base = {"case_id": case, "organ": organ, "tumor_status": status, "error": "", "dsc": "",
                "nsd": "", "hd95_mm": "", "msd_mm": "", "pred_volume_post_mm3": 0.0,
                "predicted_positive": False, "truth_lesions": 0, "detected_lesions": 0,
                "pred_lesions": 0, "matched_pred_lesions": 0, "group": "all"}  # fmt: skip
        return base | values

    return [
        row("c1", "liver", "positive", dsc=0.8, nsd=0.9, pred_volume_post_mm3=500.0,
            predicted_positive=True, truth_lesions=3, detected_lesions=2),
        row("c1", "pancreas", "positive", dsc=0.0, nsd=0.1, truth_lesions=1),
        row("c2", "liver", "control", dsc=1.0, nsd=1.0),
        row("c2", "pancreas", "control", dsc=0.0, nsd=0.0, pred_volume_post_mm3=80.0,
            predicted_positive=True, pred_lesions=1),
        row("c3", "liver", "unknown"),
        row("c3", "pancreas", "positive", dsc=0.5, nsd=0.7, pred_volume_post_mm3=90.0,
            predicted_positive=True, truth_lesions=2, detected_lesions=2),
        row("c4", "liver", "unknown", error="bad file", dsc=0.99, truth_lesions=5),
    ]  # fmt: skip


def test_pooled_metrics_equal_the_evaluate_summary() -> None:
    rows = _hand_rows()
    ours = run_metrics(rows)
    summary = summarize_rows(rows, threshold_mm3=0.0, seed=0, resamples=10)
    assert ours["dsc"] == pytest.approx(summary["dsc"]["mean"])  # (0.8 + 0 + 0.5) / 3
    assert ours["nsd"] == pytest.approx(summary["nsd"]["mean"])
    assert ours["t_sen"] == pytest.approx(summary["lesions"]["t_sen"]["value"])  # 4 / 6
    assert ours["p_sen"] == pytest.approx(summary["patients"]["p_sen"]["value"])  # 2 / 3
    assert ours["spe"] == pytest.approx(summary["patients"]["spe"]["value"])  # 1 / 2
    assert (ours["dsc"], ours["t_sen"], ours["spe"]) == pytest.approx((1.3 / 3, 4 / 6, 0.5))
    liver = [r for r in rows if r["organ"] == "liver"]
    assert run_metrics(liver)["p_sen"] == pytest.approx(1.0)


def test_study_points_are_seed_means_of_pooled_run_metrics() -> None:
    run = {"n_real": 10, "condition": "real", "synthetic_ratio": 0, "test_set": "id"}
    rows = []
    for n in (10, 20, 40):
        for seed in (0, 1):
            rows += [r | run | {"n_real": n, "seed": seed, "run_id": f"{n}-{seed}"}
                     for r in _hand_rows()[: 4 + 3 * seed]]  # fmt: skip
    study = fit_study(rows, n_bootstrap=20)
    expected = {m: (run_metrics(_hand_rows()[:4])[m] + run_metrics(_hand_rows())[m]) / 2
                for m in ("dsc", "t_sen", "p_sen", "spe")}  # fmt: skip
    for metric, value in expected.items():
        assert [p.value for p in _fit_of(study, metric).points] == pytest.approx([value] * 3)
    pancreas = fit_study(rows, organ="pancreas", metrics=("dsc",), n_bootstrap=20)
    # seed 0: c1 0.0; seed 1: c1 0.0 and c3 0.5 → mean of 0.0 and 0.25
    assert _fit_of(pancreas).points[0].value == pytest.approx(0.125)


def test_non_convergence_is_reported_not_raised(tmp_path: Path) -> None:
    few = fit_saturating_power_law([60, 500], [0.4, 0.5])
    assert not few.converged and "at least 3 distinct n" in few.reason
    rising = fit_saturating_power_law([60, 278, 500, 1500], [0.1, 0.2, 0.3, 0.4])
    assert not rising.converged and "upper bound" in rising.reason
    rows = study_rows({0.0: (0.6, 2.0, 0.5), 3.0: (0.6, 1.0, 0.5)}, np.random.default_rng(0),
                      counts=(60, 500))  # fmt: skip
    study = fit_study(rows, metrics=("dsc",), n_bootstrap=20)
    fit = _fit_of(study)
    assert not fit.fit.converged and fit.a.value is None and fit.n_at["0.95"].value is None
    assert fit.saturated["value"] is None and study.savings == []
    json_path, md_path = write_fit(study, tmp_path)
    text = json_path.read_text(encoding="utf-8")
    data = json.loads(text, parse_constant=pytest.fail)  # no NaN in the JSON
    assert data["fits"][0]["power_law"]["converged"] is False
    assert "at least 3 distinct n" in md_path.read_text(encoding="utf-8")


def test_log_linear_fit() -> None:
    n = np.array([10.0, 100.0, 1000.0])
    assert fit_log_linear(n, 0.1 * np.log10(n) + 0.2) == pytest.approx((0.1, 0.2))
    assert all(math.isnan(v) for v in fit_log_linear([10.0], [0.3]))


def test_same_seed_same_output_other_seed_other_intervals() -> None:
    rows = study_rows({0.0: (0.6, 2.0, 0.5), 3.0: (0.6, 1.0, 0.5)}, np.random.default_rng(3),
                      case_sd=0.05, noise_sd=0.05)  # fmt: skip
    first = fit_study(rows, n_bootstrap=60, seed=5).to_dict()
    assert fit_study(list(reversed(rows)), n_bootstrap=60, seed=5).to_dict() == first
    other = fit_study(rows, n_bootstrap=60, seed=6).to_dict()
    assert (
        other["fits"][0]["power_law"]["a"]["value"] == first["fits"][0]["power_law"]["a"]["value"]
    )
    assert (
        other["fits"][0]["power_law"]["a"]["ci_low"] != first["fits"][0]["power_law"]["a"]["ci_low"]
    )


def write_per_case(study: Path, rows: list[dict[str, object]]) -> None:
    """`rows` as the study's results/per_case.csv (what `study run` collects)."""
    results = study / "results"
    results.mkdir()
    with (results / "per_case.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

def test_run_fit_reads_per_case_csv_and_writes_json_and_markdown(tmp_path: Path) -> None:
    rows = study_rows({0.0: (0.6, 2.0, 0.5), 3.0: (0.6, 2.0 * 3**-0.5, 0.5)},
                      np.random.default_rng(4), case_sd=0.05, noise_sd=0.02)  # fmt: skip
    rows += [r | {"organ": "liver"} for r in rows]
    write_per_case(tmp_path, rows)
    json_path, md_path = fit_study_folder(tmp_path, n_bootstrap=30, seed=0)
    data = json.loads(json_path.read_text(encoding="utf-8"), parse_constant=pytest.fail)
    assert {f["organ"] for f in data["fits"]} == {ALL_ORGANS, "liver", "pancreas"}
    assert len(data["fits"]) == 3 * 5 * 2  # organ selections × metrics × conditions
    dsc = next(f for f in data["fits"] if f["metric"] == "dsc" and f["organ"] == ALL_ORGANS)
    assert set(dsc["n_at"]) == {"0.95", "0.99"} and len(dsc["band"]["n_real"]) == 40
    assert dsc["points"][0]["n_seeds"] == 3
    text = md_path.read_text(encoding="utf-8")
    assert "Real only reaches 95% of its DSC plateau" in text and "(extrapolated)" in text


def test_fit_reads_no_trend_into_noise(tmp_path: Path) -> None:
    """Pure noise around a constant DSC of 0.12 (the old demo's level) has no gain whose interval
    excludes 0: no saving, no saturation claim, a plain no-gain headline."""
    rng = np.random.default_rng(7)
    laws = {0.0: (0.12, 0.0, 0.5), 3.0: (0.12, 0.0, 0.5)}
    rows = study_rows(laws, rng, (2, 4, 8, 16), cases=12, case_sd=0.05, noise_sd=0.15)
    study = fit_study(rows, n_bootstrap=200, seed=0)
    real = _fit_of(study)
    assert not real.has_trend, real.trend
    assert real.saturated["value"] is None
    assert study.savings == []
    write_fit(study, tmp_path)
    text = (tmp_path / "fit.md").read_text(encoding="utf-8")
    headlines = text.split("##")[1] if "##" in text else text
    assert "no measurable gain" in headlines
    assert "fewer" not in headlines and "has saturated" not in headlines


def test_fit_keeps_claims_for_a_real_trend() -> None:
    rng = np.random.default_rng(3)
    laws = {0.0: (0.6, 0.5, 1.0), 3.0: (0.7, 0.5, 1.0)}
    study = fit_study(study_rows(laws, rng, (2, 4, 8, 16), cases=12, noise_sd=0.05),
                      n_bootstrap=200, seed=0)  # fmt: skip
    real = _fit_of(study)
    assert real.has_trend and real.trend["gain"]["ci_low"] > 0
    assert study.savings


def _headline_section(study, folder: Path) -> str:
    """fit.md's Headlines section, as `study fit` writes it."""
    write_fit(study, folder)
    text = (folder / "fit.md").read_text(encoding="utf-8")
    return text.split("## Headlines")[1].split("\n## ")[0]


def _learning(rows, failed) -> dict[str, RunLearning]:
    """A learning record per run: the loss halves, or stays flat where failed(run row)."""
    runs = {row["run_id"]: row for row in rows}
    return {run_id: RunLearning(run_id, (5, 10), (1.0, 1.0) if failed(row) else (1.0, 0.5))
            for run_id, row in runs.items()}  # fmt: skip


CLEAN = {0.0: (0.6, 0.5, 1.0), 3.0: (0.7, 0.5, 1.0)}  # a clear rise: trend, plateau, savings


def _clean_rows(seed: int = 3, **options) -> list[dict[str, object]]:
    return study_rows(CLEAN, np.random.default_rng(seed), (2, 4, 8, 16), cases=12,
                      noise_sd=0.05, **options)  # fmt: skip


def test_fit_reads_no_trend_into_shuffled_results(tmp_path: Path) -> None:
    """A clean rising curve whose per-case values are shuffled across every run and n: the
    trend is gone, and so are the savings, saturation and plateau claims."""
    for shuffle in range(3):
        rows = _clean_rows(case_sd=0.1)
        positive = [row for row in rows if row["tumor_status"] == "positive"]
        values = [row["dsc"] for row in positive]
        np.random.default_rng(shuffle).shuffle(values)
        rows = [row | {"dsc": value} if row["tumor_status"] == "positive" else row
                for row, value in zip(rows, _aligned(rows, values), strict=True)]  # fmt: skip
        study = fit_study(rows, metrics=("dsc",), n_bootstrap=200, seed=0)
        assert not _fit_of(study).has_trend, (shuffle, _fit_of(study).trend)
        assert study.savings == [] and _fit_of(study).saturated["value"] is None
        headlines = _headline_section(study, tmp_path / str(shuffle))
        assert "no measurable gain" in headlines
        assert "fewer" not in headlines and "saturated" not in headlines
        assert "of its DSC plateau" not in headlines


def _aligned(rows: list[dict[str, object]], values: list[object]) -> list[object]:
    """`values` (one per positive row) spread over all rows, None at the controls."""
    found = iter(values)
    return [next(found) if row["tumor_status"] == "positive" else None for row in rows]


def test_runs_that_did_not_learn_get_no_claims(tmp_path: Path) -> None:
    """A clean rising curve read from runs whose logs show no loss fall: no saving, no
    saturation, and the headline says so in plain words."""
    from tests.study.test_learning import write_log

    rows = _clean_rows()
    write_per_case(tmp_path, rows)
    for run_id in {row["run_id"] for row in rows}:
        flat = run_id.startswith("r0-")  # real only: loss flat; with synthetic: falling
        losses = [1.0, 1.01, 0.99, 1.0] if flat else [1.2, 0.9, 0.6, 0.4]
        write_log(tmp_path / "runs" / str(run_id) / "train", losses)
    json_path, md_path = fit_study_folder(tmp_path, n_bootstrap=200, seed=0)
    data = json.loads(json_path.read_text(encoding="utf-8"))
    real = next(f for f in data["fits"] if f["metric"] == "dsc" and f["synthetic_ratio"] == 0)
    synthetic = next(f for f in data["fits"] if f["metric"] == "dsc" and f["synthetic_ratio"] == 3)
    assert real["trend"]["measurable"] is True  # the curve alone would have passed
    assert real["learning"]["learned"] is False and real["learning"]["not_learned"] == 12
    assert real["claims"]["allowed"] is False and real["saturated"]["value"] is None
    assert synthetic["learning"]["learned"] is True and synthetic["claims"]["allowed"] is True
    assert data["savings"] == []
    headlines = md_path.read_text(encoding="utf-8").split("## Headlines")[1].split("\n## ")[0]
    assert "runs did not learn: training loss did not fall in 12 of 12 runs" in headlines
    assert "fewer" not in headlines and "of its DSC plateau" not in headlines


def test_learning_gate_counts_majority_and_largest_n() -> None:
    rows = _clean_rows()
    study = fit_study(rows, metrics=("dsc",), n_bootstrap=200,
                      learning=_learning(rows, lambda row: False))  # fmt: skip
    assert _fit_of(study).learning["learned"] is True and study.savings
    # one seed fails at the largest n: the curve's top is not trusted
    top = _learning(rows, lambda row: row["n_real"] == "16" and row["seed"] == "0")
    study = fit_study(rows, metrics=("dsc",), n_bootstrap=200, learning=top)
    real = _fit_of(study)
    assert real.learning["not_learned_at_largest_n"] == 1 and not real.claims_allowed
    assert study.savings == [] and "1 of them at the largest n (16)" in real.claim_reasons[0]
    # a minority failing below the largest n leaves the claims standing
    few = _learning(rows, lambda row: row["n_real"] == "2" and row["seed"] != "2")
    study = fit_study(rows, metrics=("dsc",), n_bootstrap=200, learning=few)
    assert _fit_of(study).learning["not_learned"] == 2 and _fit_of(study).claims_allowed
    assert study.savings
    # a failing synthetic curve blocks the savings read off it, not the real-only claims
    synthetic = _learning(rows, lambda row: row["synthetic_ratio"] == "3.0")
    study = fit_study(rows, metrics=("dsc",), n_bootstrap=200, learning=synthetic)
    assert _fit_of(study).claims_allowed and not _fit_of(study, ratio=3.0).claims_allowed
    assert study.savings == []


def test_plateau_above_the_maximum_is_not_reported(tmp_path: Path) -> None:
    """A steep curve whose fitted plateau lies above 1: no plateau, saving or saturation."""
    rows = study_rows({0.0: (1.1, 1.5, 0.5), 3.0: (1.1, 1.0, 0.5)}, np.random.default_rng(5),
                      (2, 4, 8, 16), cases=12, noise_sd=0.05)  # fmt: skip
    study = fit_study(rows, metrics=("dsc",), n_bootstrap=200, seed=0)
    real = _fit_of(study)
    assert real.has_trend and real.fit.converged and real.a.value > 1.0
    assert not real.claims_allowed and "above the metric's maximum 1" in real.claim_reasons[0]
    assert study.savings == [] and real.saturated["value"] is None
    headlines = _headline_section(study, tmp_path)
    assert f"no credible DSC fit: plateau {real.a.value:.2f} above the metric's maximum 1" in (
        headlines
    )
    assert "fewer" not in headlines and "of its DSC plateau" not in headlines
    table = (tmp_path / "fit.md").read_text(encoding="utf-8").split("### Fits")[1]
    assert f"{real.a.value:.2f} [" not in table  # the plateau is not shown as a number


def test_zero_width_intervals_are_not_a_finding(tmp_path: Path) -> None:
    """One tumor case and one seed (as the old demo's OOD set): every resample is the same,
    so intervals have zero width; the old demo headlined P-Sen plateau 1.05 [1.05, 1.05]."""
    rows = study_rows(CLEAN, np.random.default_rng(3), (2, 4, 8, 16), seeds=(0,), cases=1,
                      noise_sd=0.05)  # fmt: skip
    study = fit_study(rows, n_bootstrap=200, seed=0)
    real, p_sen = _fit_of(study), _fit_of(study, "p_sen")
    assert real.a.ci_low == real.a.ci_high and real.has_trend  # the trend alone would pass
    assert not real.credible and "zero-width bootstrap intervals" in real.sanity[-1]
    assert p_sen.a.value == pytest.approx(1.05, abs=0.01) and not p_sen.claims_allowed
    assert study.savings == []
    headlines = _headline_section(study, tmp_path)
    assert "no credible DSC fit: zero-width bootstrap intervals (plateau [" in headlines
    assert "1.05 [1.05, 1.05]" not in headlines and "plateau (" not in headlines


def test_a_clean_curve_keeps_its_plateau_and_savings(tmp_path: Path) -> None:
    """The gates fail both ways: runs that learned, a clear trend, a plateau below 1."""
    rows = _clean_rows()
    study = fit_study(rows, metrics=("dsc",), n_bootstrap=200, seed=0,
                      learning=_learning(rows, lambda row: False))  # fmt: skip
    real = _fit_of(study)
    assert real.claims_allowed and real.claim_reasons == [] and real.saturated["value"] is not None
    assert 0.5 < real.a.value < 0.7 and real.a.ci_low < real.a.ci_high
    headlines = _headline_section(study, tmp_path)
    assert f"Real only reaches 95% of its DSC plateau ({real.a.value:.2f} [" in headlines
    assert "fewer" in headlines and "did not learn" not in headlines


def test_label_free_rows_are_reported_apart_not_fitted(tmp_path: Path) -> None:
    """n = 0 (synthetic tumors only) runs of the synthetic condition: the power law and the trend
    use n > 0 only, and the n = 0 DSC is reported on its own."""
    rows = _clean_rows()
    zero_dsc = np.full(12, 0.35) + np.random.default_rng(9).normal(0, 0.05, 12)
    zero = [row for seed in (0, 1, 2)
            for row in _run_rows(f"r3-n0-s{seed}", 0, 3.0, seed, "id", zero_dsc)]  # fmt: skip
    with_zero = fit_study(rows + zero, n_bootstrap=100, seed=0)
    without = fit_study(rows, n_bootstrap=100, seed=0)
    synthetic = _fit_of(with_zero, ratio=3.0)
    assert [p.n_real for p in synthetic.points] == [2, 4, 8, 16]
    label_free = synthetic.label_free
    assert label_free is not None and label_free.n_real == 0 and label_free.n_seeds == 3
    assert label_free.value == pytest.approx(float(np.mean(zero_dsc)))
    assert label_free.ci_low < label_free.value < label_free.ci_high
    assert _fit_of(with_zero).label_free is None  # no real-only run at n = 0
    # the fitted curves are those without the n = 0 rows
    for ratio in (0.0, 3.0):
        ours, plain = _fit_of(with_zero, ratio=ratio).to_dict(), _fit_of(without, ratio=ratio)
        assert ours | {"label_free": None} == plain.to_dict()
    json_path, md_path = write_fit(with_zero, tmp_path)
    data = json.loads(json_path.read_text(encoding="utf-8"), parse_constant=pytest.fail)
    record = next(f for f in data["fits"] if f["metric"] == "dsc" and f["synthetic_ratio"] == 3)
    assert record["label_free"]["n_real"] == 0
    text = md_path.read_text(encoding="utf-8")
    headline = (f"r3: synthetic tumors only (0 real scans): DSC {label_free.value:.2f} "
                f"[{label_free.ci_low:.2f}, {label_free.ci_high:.2f}] (3 seeds)")  # fmt: skip
    assert headline in text.split("## Headlines")[1].split("\n## ")[0]
    assert "| DSC | with 3× synthetic (r3) | 0 (synthetic only) |" in text


def test_headlines_start_with_what_was_measured(tmp_path: Path) -> None:
    rows = study_rows({0.0: (0.6, 0.5, 1.0), 3.0: (0.7, 0.5, 1.0)}, np.random.default_rng(3),
                      (2, 4, 8, 16), cases=12, noise_sd=0.05)  # fmt: skip
    study = fit_study(rows, metrics=("dsc",), n_bootstrap=200, seed=0)
    real = _fit_of(study)
    first = _headline_section(study, tmp_path).strip().splitlines()[0]
    low, high = real.points[0], real.points[-1]
    assert f"DSC {low.value:.2f} [{low.ci_low:.2f}, {low.ci_high:.2f}] at 2 and" in first
    assert f"{high.value:.2f} [{high.ci_low:.2f}, {high.ci_high:.2f}] at 16 real scans" in first
    assert first.endswith("(measurable).")


def test_a_small_measurable_gain_prints_its_nonzero_lower_bound() -> None:
    tiny_gain = {"value": 0.023, "ci_low": 0.0013, "ci_high": 0.063}
    assert v_ci(tiny_gain, gain_digits(tiny_gain)) == "0.023 [0.001, 0.063]"
    for gain in ({"value": 0.5, "ci_low": 0.2, "ci_high": 0.7},
                 {"value": 0.02, "ci_low": 0.0, "ci_high": 0.06},
                 {"value": 0.02, "ci_low": None, "ci_high": None}):
        assert gain_digits(gain) == 2
    assert gain_digits({"ci_low": 1e-9}) == 4


def test_a_plateau_the_data_do_not_bound_is_no_finding(tmp_path: Path) -> None:
    """The demo's situation: 3 sizes, 8 tumor cases, one seed; the gain is clear, but in some
    resamples the curve is still rising (the plateau's interval reaches the fit's bound)."""
    rows = study_rows({0.0: (0.75, 1.425, 0.92), 3.0: (0.7, 0.5, 1.0)},
                      np.random.default_rng(4), (2, 6, 24), seeds=(0,), cases=8, noise_sd=0.2)
    study = fit_study(rows, metrics=("dsc",), n_bootstrap=200, seed=0)
    real = _fit_of(study)
    assert real.has_trend and real.fit.converged and not real.claims_allowed
    assert "plateau not identified" in real.claim_reasons[0]
    assert study.savings == [] and real.saturated["value"] is None
    headlines = _headline_section(study, tmp_path)
    assert "(measurable)" in headlines  # the measured gain is still reported
    assert "fewer" not in headlines and "of its DSC plateau" not in headlines


def test_an_exponent_at_its_bound_is_a_step_not_a_curve() -> None:
    plateau = Estimate(0.5, 0.4, 0.6)
    gain = {"value": 0.1, "ci_low": 0.02, "ci_high": 0.2}
    assert _sanity(plateau, gain, c=1.0) == []
    assert "exponent c at its bound 3" in _sanity(plateau, gain, c=3.0)[0]


def test_a_curve_that_falls_is_called_a_fall(tmp_path: Path) -> None:
    """A gain whose whole interval lies below 0 is no 'interval includes 0': the headlines say
    the metric fell, and still claim no plateau, saturation or saving."""
    rows = study_rows({0.0: (0.4, -0.6, 0.5), 3.0: (0.4, -0.6, 0.5)}, np.random.default_rng(5),
                      (2, 6, 24), cases=12, noise_sd=0.02)  # fmt: skip
    study = fit_study(rows, metrics=("dsc",), n_bootstrap=200, seed=0)
    real = _fit_of(study)
    assert real.trend["gain"]["ci_high"] < 0 and not real.has_trend
    assert any("fell" in reason for reason in real.claim_reasons)
    headlines = _headline_section(study, tmp_path)
    assert "(a fall: its interval lies below 0)" in headlines
    assert "lower with more real scans" in headlines and "the interval lies below 0" in headlines
    assert "includes 0" not in headlines
    assert study.savings == [] and "fewer" not in headlines and "saturated" not in headlines
