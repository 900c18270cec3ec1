"""Phase estimation from organ / aorta HU, per-phase contrast tables and the floored draw."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tumorscale.synth.phase import (
    MAX_SAMPLES_PER_MASK,
    Phase,
    _strided_values,
    estimate_phase,
    measure_host_hu,
)
from tumorscale.synth.phase_contrast import (
    TABLE,
    PhaseContrast,
    contrast_for,
    draw_contrast,
    floor_hu_for,
)
from tumorscale.synth.profiles import CYST_MIN_HU, PROFILES, SOLID_TUMOR_MIN_HU
from tumorscale.synth.uterus import UTERUS_KINDS

# ----------------------------------------------------------------------------- estimate_phase

CONFIDENT_CASES = [
    # (organ medians, aorta, expected phase)
    ({"liver": 45.0, "kidney": 35.0, "spleen": 42.0}, 40.0, Phase.UNENHANCED),
    ({"liver": 78.0, "kidney": 170.0, "spleen": 120.0}, 280.0, Phase.ARTERIAL),
    ({"liver": 115.0, "kidney": 180.0, "spleen": 125.0}, 170.0, Phase.PORTAL_VENOUS),
    ({"liver": 120.0, "kidney": 190.0}, 215.0, Phase.PORTAL_VENOUS),  # early PV, high aorta
    ({"liver": 92.0, "kidney": 140.0, "spleen": 95.0}, 110.0, Phase.DELAYED),
    ({"liver": 47.0, "kidney": 33.0}, None, Phase.UNENHANCED),
    ({"liver": 110.0, "spleen": 118.0}, None, Phase.PORTAL_VENOUS),
]


@pytest.mark.parametrize(("organs", "aorta", "expected"), CONFIDENT_CASES)
def test_estimate_phase_confident(
    organs: dict[str, float], aorta: float | None, expected: Phase
) -> None:
    estimate = estimate_phase(organs, aorta)
    assert estimate.phase is expected
    assert estimate.confident, estimate.reason
    assert estimate.aorta_median_hu == aorta
    assert estimate.organ_medians_hu == organs
    assert estimate.reason


@pytest.mark.parametrize("liver", [38.0, 41.5, 44.0, 49.0])
def test_totalsegmentator_like_unenhanced(liver: float) -> None:
    estimate = estimate_phase({"liver": liver, "kidney": 31.0, "spleen": 40.0}, 40.0)
    assert estimate.phase is Phase.UNENHANCED and estimate.confident
    assert estimate_phase({"liver": liver, "kidney": 31.0}).phase is Phase.UNENHANCED


AMBIGUOUS_CASES = [
    ({}, None),  # nothing measured
    ({"liver": 120.0, "kidney": 190.0}, 40.0),  # unenhanced aorta, enhanced organs: conflict
    ({"liver": 60.0}, 160.0),  # PV-range aorta, liver not enhanced (steatosis? early?)
    ({"liver": 60.0, "kidney": 45.0}, 100.0),  # weak aorta, unenhanced organs
    ({"liver": 85.0, "kidney": 150.0}, None),  # enhanced, phase unclear without aorta
    ({"liver": math.nan, "kidney": math.nan}, math.nan),  # nothing finite
]


@pytest.mark.parametrize(("organs", "aorta"), AMBIGUOUS_CASES)
def test_estimate_phase_ambiguous_defaults_to_portal_venous(
    organs: dict[str, float], aorta: float | None
) -> None:
    estimate = estimate_phase(organs, aorta)
    assert estimate.phase is Phase.PORTAL_VENOUS
    assert not estimate.confident and estimate.is_default
    assert estimate.reason


def test_estimate_phase_single_organ_is_not_confident() -> None:
    estimate = estimate_phase({"liver": 50.0})
    assert estimate.phase is Phase.UNENHANCED and not estimate.confident


def test_estimate_phase_arterial_without_liver_is_not_confident() -> None:
    estimate = estimate_phase({"kidney": 170.0}, 300.0)
    assert estimate.phase is Phase.ARTERIAL and not estimate.confident


def test_estimate_phase_reads_aorta_and_kidney_parts_from_the_mapping() -> None:
    organs = {"liver": 44.0, "kidney_left": 30.0, "kidney_right": 36.0, "aorta": 42.0}
    estimate = estimate_phase(organs)
    assert estimate.phase is Phase.UNENHANCED and estimate.confident
    assert estimate.aorta_median_hu == 42.0
    assert estimate.organ_medians_hu == {"liver": 44.0, "kidney": 33.0}


def test_phase_is_a_str_enum() -> None:
    assert Phase("portal_venous") is Phase.PORTAL_VENOUS
    assert [p.value for p in Phase] == ["unenhanced", "arterial", "portal_venous", "delayed"]


# ----------------------------------------------------------------------------- measure_host_hu


def _host_volume() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    ct = rng.normal(-100.0, 5.0, (40, 40, 40)).astype(np.float32)
    masks: dict[str, np.ndarray] = {}
    boxes = {
        "liver": ((0, 20), 45.0),
        "kidney_left": ((20, 26), 30.0),
        "kidney_right": ((26, 32), 40.0),
        "aorta": ((32, 36), 41.0),
        "stomach": ((36, 40), 500.0),  # not a host structure: ignored
    }
    for name, ((start, stop), hu) in boxes.items():
        mask = np.zeros(ct.shape, dtype=np.uint8)
        mask[start:stop, 5:35, 5:35] = 1
        ct[mask.astype(bool)] = hu + rng.normal(0.0, 3.0, int(mask.sum()))
        masks[name] = mask
    masks["spleen"] = np.zeros(ct.shape, dtype=bool)  # empty: left out
    return ct, masks


def test_measure_host_hu_medians_of_available_masks() -> None:
    ct, masks = _host_volume()
    medians = measure_host_hu(ct, masks)
    assert set(medians) == {"liver", "kidney", "aorta"}
    assert medians["liver"] == pytest.approx(45.0, abs=1.0)
    assert medians["aorta"] == pytest.approx(41.0, abs=1.0)
    assert 30.0 < medians["kidney"] < 40.0  # left and right pooled
    assert estimate_phase(medians).phase is Phase.UNENHANCED


def test_measure_host_hu_prefers_whole_kidney_mask() -> None:
    ct, masks = _host_volume()
    masks["kidney"] = masks["kidney_left"]
    assert measure_host_hu(ct, masks)["kidney"] == pytest.approx(30.0, abs=1.0)


def test_measure_host_hu_large_mask_is_subsampled() -> None:
    shape = (400, 400, 400)  # 64 M voxels: stride 8 keeps 125k, thinned to <= 100k
    ct = np.full(shape, 50.0, dtype=np.float32)
    ct[:, :, 200:] = 60.0
    mask = np.ones(shape, dtype=bool)
    values = _strided_values(ct, mask)
    assert 50_000 < values.size <= MAX_SAMPLES_PER_MASK
    assert measure_host_hu(ct, {"liver": mask})["liver"] == pytest.approx(55.0, abs=5.0)


def test_measure_host_hu_small_mask_uses_full_resolution() -> None:
    ct = np.zeros((30, 30, 30), dtype=np.float32)
    mask = np.zeros(ct.shape, dtype=bool)
    mask[1, 1, 1] = mask[1, 2, 1] = mask[2, 1, 1] = True  # missed by strides 8, 4 and 2
    ct[mask] = 77.0
    assert measure_host_hu(ct, {"aorta": mask}) == {"aorta": 77.0}


def test_measure_host_hu_shape_mismatch_raises() -> None:
    ct = np.zeros((10, 10, 10), dtype=np.float32)
    with pytest.raises(ValueError, match="shape"):
        measure_host_hu(ct, {"liver": np.ones((10, 10, 9), dtype=bool)})


# ----------------------------------------------------------------------------- tables


def test_table_covers_every_kind_and_phase() -> None:
    expected = {(organ, kind.name) for organ, profile in PROFILES.items() for kind in profile.kinds}
    expected |= {("colon", "wall_thickening"), ("colon", "polyp")}
    expected |= {("esophagus", "wall_thickening")}
    expected |= {("uterus", kind) for kind in UTERUS_KINDS}
    assert set(TABLE) == expected
    for organ, kind in TABLE:
        for phase in Phase:
            spec = contrast_for(organ, kind, phase)
            assert isinstance(spec, PhaseContrast) and spec.source
            assert contrast_for(organ, kind, phase.value) == spec


@pytest.mark.parametrize(
    ("organ", "kind"),
    [(organ, kind.name) for organ, profile in PROFILES.items() for kind in profile.kinds],
)
def test_portal_venous_equals_todays_parenchymal_profiles(organ: str, kind: str) -> None:
    profile = next(k for k in PROFILES[organ].kinds if k.name == kind)
    spec = contrast_for(organ, kind, Phase.PORTAL_VENOUS)
    assert spec.contrast_hu == profile.contrast_hu
    assert spec.contrast_normal == profile.contrast_normal
    assert spec.absolute_hu == profile.absolute_hu


def test_portal_venous_equals_todays_hollow_and_uterus_values() -> None:
    for organ in ("colon", "esophagus"):
        kinds = ("wall_thickening", "polyp") if organ == "colon" else ("wall_thickening",)
        for kind in kinds:
            spec = contrast_for(organ, kind, Phase.PORTAL_VENOUS)
            assert spec.absolute_hu == {"colon": (40.0, 90.0), "esophagus": (40.0, 80.0)}[organ]
            assert spec.contrast_hu == (-math.inf, math.inf)  # hollow targets are not clipped
    # the portal-venous uterus ranges (synthesis-notes §7 uterus row)
    assert contrast_for("uterus", "endometrial", "portal_venous").contrast_hu == (-60.0, -20.0)
    assert contrast_for("uterus", "fibroid", "portal_venous").contrast_hu == (-10.0, 10.0)


def test_published_phase_ordering() -> None:
    """PDAC contrast: pancreatic > PV > delayed (PubMed 17961951); HCC bright in the arterial
    phase; metastases milder unenhanced than PV."""
    phases = (Phase.ARTERIAL, Phase.PORTAL_VENOUS, Phase.DELAYED)
    means = [contrast_for("pancreas", "pdac", p).contrast_normal[0] for p in phases]  # type: ignore[index]
    assert means == sorted(means)
    assert contrast_for("liver", "hcc", Phase.ARTERIAL).contrast_normal[0] > 0  # type: ignore[index]
    unenhanced = contrast_for("liver", "metastasis", Phase.UNENHANCED).contrast_hu
    portal = contrast_for("liver", "metastasis", Phase.PORTAL_VENOUS).contrast_hu
    assert unenhanced[0] > portal[0] and unenhanced[1] > portal[1]


def test_unknown_kind_and_phase_raise() -> None:
    with pytest.raises(ValueError, match="no phase contrast"):
        contrast_for("liver", "pdac", Phase.PORTAL_VENOUS)
    with pytest.raises(ValueError):
        contrast_for("liver", "hcc", "venous")


def test_floor_constants_are_the_profiles() -> None:
    assert floor_hu_for("pancreas", "cyst") == CYST_MIN_HU
    assert floor_hu_for("liver", "metastasis") == SOLID_TUMOR_MIN_HU


def test_unbounded_spec_needs_absolute_target() -> None:
    with pytest.raises(ValueError):
        PhaseContrast(contrast_hu=(-math.inf, math.inf))
    with pytest.raises(ValueError):
        PhaseContrast(contrast_hu=(10.0, -10.0))


# ----------------------------------------------------------------------------- draws


def _draws(organ: str, kind: str, phase: Phase, median: float, n: int = 200, seed: int = 3):
    rng = np.random.default_rng(seed)
    spec = contrast_for(organ, kind, phase)
    return [draw_contrast(spec, median, floor_hu_for(organ, kind), rng) for _ in range(n)]


@pytest.mark.parametrize("kind", ["metastasis", "hcc"])
def test_unenhanced_liver_contrasts_are_not_clamped(kind: str) -> None:
    draws = _draws("liver", kind, Phase.UNENHANCED, 45.0)
    applied = np.array([d.applied_hu for d in draws])
    assert np.unique(np.round(applied, 6)).size > 100  # the old clamp gave one value (-30 HU)
    assert applied.std() > 3.0
    assert (applied < 0).all()  # still hypodense
    assert (45.0 + applied >= SOLID_TUMOR_MIN_HU).all()
    for d in draws:
        assert d.floor_applied == (d.applied_hu != d.intended_hu)
        assert d.floor_shift_hu == pytest.approx(d.applied_hu - d.intended_hu)


def test_portal_venous_contrast_on_unenhanced_liver_shows_the_clamp() -> None:
    """Today's behaviour, for contrast: PV ranges on a 45 HU liver all hit the 15 HU floor."""
    draws = _draws("liver", "metastasis", Phase.PORTAL_VENOUS, 45.0)
    assert all(d.floor_applied for d in draws)
    assert {round(d.applied_hu, 9) for d in draws} == {-30.0}


@pytest.mark.parametrize(
    ("organ", "kind", "phase", "median"),
    [
        ("liver", "metastasis", Phase.UNENHANCED, 30.0),  # fatty liver: floor sometimes
        ("liver", "hcc", Phase.UNENHANCED, 25.0),
        ("pancreas", "pdac", Phase.UNENHANCED, 20.0),
        ("kidney", "prcc", Phase.UNENHANCED, 35.0),  # absolute 14.7.. just below 15
    ],
)
def test_floor_flag_set_exactly_when_the_floor_changed_the_value(
    organ: str, kind: str, phase: Phase, median: float
) -> None:
    floor = floor_hu_for(organ, kind)
    draws = _draws(organ, kind, phase, median, n=400)
    flags = [d.floor_applied for d in draws]
    assert any(flags) and not all(flags)
    for d in draws:
        below = median + d.intended_hu < floor
        assert d.floor_applied == below
        if below:
            assert d.applied_hu == pytest.approx(floor - median)
            assert d.floor_shift_hu > 0
        else:
            assert d.applied_hu == d.intended_hu and d.floor_shift_hu == 0.0


def test_cyst_floor_is_the_fluid_floor() -> None:
    draws = _draws("pancreas", "cyst", Phase.UNENHANCED, 5.0, n=50)  # implausibly dark pancreas
    assert all(d.floor_applied and d.applied_hu == CYST_MIN_HU - 5.0 for d in draws)
    assert all(d.floor_applied is False for d in _draws("pancreas", "cyst", Phase.UNENHANCED, 45.0))


def test_draws_stay_in_their_ranges() -> None:
    for organ, kind in TABLE:
        for phase in Phase:
            spec = contrast_for(organ, kind, phase)
            for d in _draws(organ, kind, phase, 100.0, n=50):
                low, high = spec.contrast_hu
                assert low <= d.intended_hu <= high
                if spec.absolute_hu is not None:
                    assert spec.absolute_hu[0] <= d.target_hu <= spec.absolute_hu[1]
                    assert d.intended_hu == pytest.approx(np.clip(d.target_hu - 100.0, low, high))
                else:
                    assert d.target_hu is None


def test_hcc_arterial_is_mostly_hyperenhancing() -> None:
    draws = _draws("liver", "hcc", Phase.ARTERIAL, 80.0, n=2000)
    share = np.mean([d.applied_hu > 0 for d in draws])
    assert 0.7 < share < 0.9  # 78.2 % arterial hyperenhancement (PMC3487070)


def test_seeded_draws_are_deterministic_and_use_a_fixed_stream() -> None:
    first = _draws("pancreas", "pdac", Phase.ARTERIAL, 110.0, n=20, seed=11)
    second = _draws("pancreas", "pdac", Phase.ARTERIAL, 110.0, n=20, seed=11)
    assert first == second
    # The stream consumed per call does not depend on the spec or organ median: after one draw
    # of any kind, the next value of the generator is the same.
    after = set()
    for organ, kind in TABLE:
        unclipped = not math.isfinite(contrast_for(organ, kind, "portal_venous").contrast_hu[0])
        medians = (45.0,) if unclipped else (45.0, -200.0, math.nan)
        for phase in Phase:
            for median in medians:
                rng = np.random.default_rng(5)
                draw_contrast(contrast_for(organ, kind, phase), median, 15.0, rng)
                after.add(float(rng.random()))
    assert len(after) == 1


def test_absolute_kind_without_median_and_without_clip_raises() -> None:
    spec = contrast_for("colon", "polyp", Phase.PORTAL_VENOUS)
    with pytest.raises(ValueError, match="finite organ median"):
        draw_contrast(spec, math.nan, SOLID_TUMOR_MIN_HU, np.random.default_rng(0))


def test_non_finite_median_skips_the_floor() -> None:
    spec = contrast_for("liver", "metastasis", Phase.PORTAL_VENOUS)
    draw = draw_contrast(spec, math.nan, SOLID_TUMOR_MIN_HU, np.random.default_rng(0))
    assert not draw.floor_applied and draw.applied_hu == draw.intended_hu
