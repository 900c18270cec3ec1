"""Aggregation: summaries by hand, bootstrap intervals that are seeded, sane and consistent."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tumorscale.metrics.aggregate import MetricSummary, bootstrap_ci, summarize


def test_summary_by_hand() -> None:
    summary = summarize([1.0, 2.0, 3.0, 4.0], seed=0)
    assert (summary.n, summary.mean, summary.median) == (4, 2.5, 2.5)
    assert summary.ci_low is not None and summary.ci_high is not None
    # Resampled means of four values from {1, 2, 3, 4} lie in [1, 4] and surround 2.5.
    assert 1.0 <= summary.ci_low < 2.5 < summary.ci_high <= 4.0
    assert summary.to_dict() == {
        "n": 4,
        "mean": 2.5,
        "median": 2.5,
        "ci_low": summary.ci_low,
        "ci_high": summary.ci_high,
    }


def test_constant_and_single_values_have_a_zero_width_interval() -> None:
    assert summarize([0.25, 0.25, 0.25], seed=1) == MetricSummary(3, 0.25, 0.25, 0.25, 0.25)
    assert summarize([5.0], seed=1) == MetricSummary(1, 5.0, 5.0, 5.0, 5.0)


def test_no_values_give_none_fields() -> None:
    summary = summarize([], seed=0)
    assert summary == MetricSummary(0, None, None, None, None)
    assert summary.to_dict() == {
        "n": 0,
        "mean": None,
        "median": None,
        "ci_low": None,
        "ci_high": None,
    }


def test_non_finite_values_are_rejected_by_name() -> None:
    with pytest.raises(ValueError, match=r"finite.*nan at index 2"):
        summarize([1.0, 2.0, math.nan], seed=0)
    with pytest.raises(ValueError, match="inf"):
        summarize(np.array([math.inf]), seed=0)


def test_interval_width_matches_the_standard_error() -> None:
    values = np.random.default_rng(11).normal(10.0, 2.0, size=400)
    summary = summarize(values, seed=0, n_resamples=2000)
    assert summary.ci_low is not None and summary.ci_high is not None
    assert summary.ci_low < summary.mean < summary.ci_high
    # 95% interval of a mean: about ±1.96·σ/√n = ±0.196 around the sample mean.
    half_width = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert summary.ci_low == pytest.approx(summary.mean - half_width, abs=0.03)
    assert summary.ci_high == pytest.approx(summary.mean + half_width, abs=0.03)
    narrow = summarize(values, seed=0, n_resamples=2000, level=0.5)
    assert summary.ci_low < narrow.ci_low < narrow.ci_high < summary.ci_high


def test_same_seed_same_output_other_seed_other_output() -> None:
    values = np.random.default_rng(5).random(50)
    assert summarize(values, seed=3) == summarize(values, seed=3)
    assert summarize(values, seed=3) != summarize(values, seed=4)

    def mean(idx: np.ndarray) -> float:
        return float(values[idx].mean())

    assert bootstrap_ci(mean, 50, seed=3) == bootstrap_ci(mean, 50, seed=3)
    assert bootstrap_ci(mean, 50, seed=3) != bootstrap_ci(mean, 50, seed=4)


def test_vectorized_summary_equals_the_callable_bootstrap() -> None:
    values = np.random.default_rng(8).random(37)
    summary = summarize(values, seed=9, n_resamples=500)
    interval = bootstrap_ci(lambda idx: float(values[idx].mean()), 37, seed=9, n_resamples=500)
    assert interval == (summary.ci_low, summary.ci_high)


def test_pooled_lesion_sensitivity_over_resampled_cases() -> None:
    rng = np.random.default_rng(2)
    lesions = rng.integers(0, 4, size=40)  # truth lesions per case, some cases have none
    detected = rng.binomial(lesions, 0.7)
    pooled = detected.sum() / lesions.sum()

    def t_sen(idx: np.ndarray) -> float | None:
        total = lesions[idx].sum()
        return float(detected[idx].sum() / total) if total else None

    interval = bootstrap_ci(t_sen, n_items=40, seed=0)
    assert interval is not None
    assert 0.0 <= interval[0] < pooled < interval[1] <= 1.0


def test_undefined_resamples_are_skipped_and_too_many_give_none() -> None:
    # Undefined when only item 0 was drawn (1/4 of resamples): skipped, the rest give 1.
    assert bootstrap_ci(lambda idx: None if (idx == 0).all() else 1.0, 2, seed=0) == (1.0, 1.0)
    # Undefined whenever item 0 was drawn (3/4 of resamples): no interval.
    assert bootstrap_ci(lambda idx: None if (idx == 0).any() else 1.0, 2, seed=0) is None
    assert bootstrap_ci(lambda idx: math.nan, 3, seed=0) is None
    assert bootstrap_ci(lambda idx: 1.0, 0, seed=0) is None


def test_statistic_receives_item_indices() -> None:
    seen: list[np.ndarray] = []

    def record(idx: np.ndarray) -> float:
        seen.append(idx)
        return 0.0

    assert bootstrap_ci(record, 6, seed=0, n_resamples=25) == (0.0, 0.0)
    assert len(seen) == 25
    assert all(idx.shape == (6,) and idx.min() >= 0 and idx.max() < 6 for idx in seen)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="level"):
        summarize([1.0], seed=0, level=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci(lambda idx: 0.0, 3, seed=0, n_resamples=0)


# Pooled metrics (metrics.pooled): one definition of a study run's P-Sen and Spe.


def _detection_row(status: str, volume: float, flag: object = None) -> dict[str, object]:
    row: dict[str, object] = {
        "tumor_status": status, "error": "", "dsc": "", "nsd": "", "pred_volume_post_mm3": volume,
        "truth_lesions": 0, "detected_lesions": 0, "pred_lesions": 0, "matched_pred_lesions": 0,
    }  # fmt: skip
    if flag is not None:
        row["predicted_positive"] = flag
    return row


def test_a_case_is_called_by_its_flag_else_by_volume() -> None:
    from tumorscale.metrics.detection import patient_detection
    from tumorscale.metrics.pooled import called_positive

    assert called_positive(_detection_row("positive", 0.0, "True"))  # the flag decides
    assert not called_positive(_detection_row("positive", 500.0, "False"))
    for volume in (0.0, 1e-3, 80.0, math.nan):  # older CSVs: the rule of patient_detection at 0
        expected = patient_detection([0.0 if math.isnan(volume) else volume], ["positive"], 0.0)
        assert called_positive(_detection_row("positive", volume)) == bool(expected.true_positives)


def test_pooled_detection_equals_the_summary_at_the_evaluation_threshold() -> None:
    from tumorscale.metrics.pooled import pooled_metrics
    from tumorscale.metrics.summary import summarize_rows

    threshold = 100.0
    volumes = {"positive": [0.0, 50.0, 100.0, 400.0], "control": [0.0, 99.0, 150.0]}
    rows = [
        _detection_row(status, v, str(v > 0 and v >= threshold))  # as metrics.evaluate writes
        for status, values in volumes.items()
        for v in values
    ]
    ours = pooled_metrics(rows)
    summary = summarize_rows(rows, threshold_mm3=threshold, seed=0, resamples=10)["patients"]
    assert ours["p_sen"] == summary["p_sen"]["value"] == 0.5
    assert ours["spe"] == summary["spe"]["value"] == 2 / 3
