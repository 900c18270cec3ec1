"""Colon / esophagus tumor geometry (wall thickening, polyp) on phantoms: shape, size, lumen."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.synth.phantoms import load_phantom
from tumorscale.io import Volume
from tumorscale.sizes import equivalent_diameter_mm, size_bin
from tumorscale.synth.centerline import signed_distance_mm
from tumorscale.synth.hollow import (
    HOLLOW_KINDS,
    build_hollow_shape,
    hollow_crop_radius_mm,
    sample_hollow_params,
    split_wall_lumen,
    wall_median_hu,
    wall_segment_coordinates,
)
from tumorscale.synth.types import Crop, CropContext, TumorParams

BINS = {"small": "<20", "medium": "20-50", "large": ">50"}


@pytest.fixture(scope="module")
def phantom() -> tuple[Volume, dict[str, np.ndarray]]:
    return load_phantom(1.5, 2.5, boolean=True)


def others(masks: dict[str, np.ndarray], organ: str) -> np.ndarray:
    return np.logical_or.reduce([mask for name, mask in masks.items() if name != organ])


def build(params: TumorParams, ct: Volume, masks: dict[str, np.ndarray]):
    crop = Crop.around(
        np.asarray(params.center_mm), hollow_crop_radius_mm(params), ct.shape, ct.affine
    )
    organ = masks[params.organ]
    ctx = CropContext(
        ct=ct.array[crop.slices].astype(np.float32),
        organ=organ[crop.slices],
        forbidden=others(masks, params.organ)[crop.slices],
        organ_median_hu=float(wall_median_hu(ct.array, organ, ct.spacing)),
    )
    return crop, ctx, build_hollow_shape(params, crop, ctx)


def sample(ct, masks, organ, size_class, kind, seed):
    params = sample_hollow_params(
        organ,
        np.random.default_rng(seed),
        ct,
        masks[organ],
        size_class,
        kind,
        forbidden=others(masks, organ),
    )
    assert isinstance(params, TumorParams), params
    return params


CASES = [
    ("colon", "small", 1),
    ("colon", "medium", 2),
    ("colon", "large", 3),
    ("esophagus", "small", 4),
    ("esophagus", "medium", 5),
]


@pytest.mark.parametrize(("organ", "size_class", "seed"), CASES)
def test_wall_thickening_geometry(phantom, organ, size_class, seed):
    ct, masks = phantom
    params = sample(ct, masks, organ, size_class, "wall_thickening", seed)
    crop, ctx, shape = build(params, ct, masks)
    spacing = np.asarray(crop.spacing_mm)
    tumor = shape.occupancy >= 0.5
    growth = np.zeros_like(tumor) if shape.organ_growth is None else shape.organ_growth
    assert tumor.any()
    assert not (tumor & ~(ctx.organ | growth)).any()  # lesion inside the (grown) organ
    assert not (tumor & ctx.forbidden).any() and not (growth & ctx.forbidden).any()
    diameter = equivalent_diameter_mm(tumor.sum() * spacing.prod())
    assert diameter == pytest.approx(params.diameter_mm, rel=0.3)
    assert size_bin(params.diameter_mm) == BINS[size_class]
    # the tumor ends at soft tissue: colon 40-90, esophagus 40-80 HU absolute (notes §7)
    high = 90.0 if organ == "colon" else 80.0
    assert 40.0 <= params.extra_value("target_hu") <= high
    assert -60.0 < params.contrast_hu < 40.0  # phantom wall 60-85 HU: never the lumen-air median

    s, angle, rho = (a.reshape(crop.shape) for a in wall_segment_coordinates(params, crop))
    length = params.extra_value("length_mm")
    assert np.ptp(s[tumor]) == pytest.approx(length, rel=0.3)
    # wall thickness: inner depth below the organ surface in the middle of the segment
    sd = signed_distance_mm(ctx.organ, spacing)
    middle = tumor & (np.abs(s) < 0.25 * length)
    assert -sd[middle].min() == pytest.approx(
        params.extra_value("inner_depth_mm"), rel=0.3, abs=1.5
    )
    assert sd[middle].max() <= params.extra_value("outward_mm") * 1.3 + 2.0
    # arc: an eccentric tumor stays within its arc (plus the blur)
    arc = np.radians(params.extra_value("arc_deg"))
    if arc < 2 * np.pi:
        assert np.abs(angle[tumor]).max() <= 0.5 * arc + 0.6
    # the lumen narrows: part of the lumen within the segment becomes tumor
    _, lumen = split_wall_lumen(ctx.ct, ctx.organ, crop.spacing_mm)
    segment_lumen = (
        lumen
        & (np.abs(s) < 0.5 * length)
        & (np.abs(angle) < 0.5 * arc)
        & (rho < 1.6 * params.extra_value("organ_radius_mm"))
    )
    covered = (segment_lumen & tumor).sum() / max(segment_lumen.sum(), 1)
    assert covered > 0.1


def test_annular_colon_narrows_air_lumen(phantom):
    ct, masks = phantom
    for seed in range(40):
        params = sample_hollow_params(
            "colon",
            np.random.default_rng(seed),
            ct,
            masks["colon"],
            "large",
            "wall_thickening",
            forbidden=others(masks, "colon"),
        )
        if isinstance(params, TumorParams) and params.extra_value("arc_deg") == 360.0:
            crop, ctx, shape = build(params, ct, masks)
            s = wall_segment_coordinates(params, crop)[0].reshape(crop.shape)
            inside = np.abs(s) < 0.5 * params.extra_value("length_mm") - params.extra_value(
                "taper_mm"
            )
            air = ctx.organ & (ctx.ct < -300) & inside
            if air.sum() < 50:
                continue
            air_after = air & (shape.occupancy < 0.5)
            assert air_after.sum() < 0.8 * air.sum()
            return
    pytest.fail("no annular colon tumor over an air-filled segment in 40 draws")


@pytest.mark.parametrize(("size_class", "seed"), [("small", 11), ("medium", 12)])
def test_polyp_lies_in_the_lumen(phantom, size_class, seed):
    ct, masks = phantom
    params = sample(ct, masks, "colon", size_class, "polyp", seed)
    crop, ctx, shape = build(params, ct, masks)
    tumor = shape.occupancy >= 0.5
    assert shape.organ_growth is None and not (tumor & ~ctx.organ).any()
    _, lumen = split_wall_lumen(ctx.ct, ctx.organ, crop.spacing_mm)
    assert (tumor & lumen).sum() >= 0.6 * tumor.sum()
    diameter = equivalent_diameter_mm(tumor.sum() * np.prod(crop.spacing_mm))
    assert diameter == pytest.approx(params.diameter_mm, rel=0.3)
    assert size_bin(diameter) == BINS[size_class]


def test_same_record_same_arrays(phantom):
    ct, masks = phantom
    first = sample(ct, masks, "colon", "medium", "wall_thickening", 7)
    again = sample(ct, masks, "colon", "medium", "wall_thickening", 7)
    assert first == again
    replayed = TumorParams.from_dict(first.to_dict())
    _, _, a = build(first, ct, masks)
    _, _, b = build(replayed, ct, masks)
    np.testing.assert_array_equal(a.occupancy, b.occupancy)
    np.testing.assert_array_equal(a.organ_growth, b.organ_growth)
    polyp = sample(ct, masks, "colon", "small", "polyp", 8)
    _, _, c = build(polyp, ct, masks)
    _, _, d = build(TumorParams.from_dict(polyp.to_dict()), ct, masks)
    np.testing.assert_array_equal(c.occupancy, d.occupancy)


def test_default_kind_mix(phantom):
    ct, masks = phantom
    kinds = {
        sample_hollow_params("colon", np.random.default_rng(seed), ct, masks["colon"], "small").kind
        for seed in range(8)
    }
    assert kinds == set(HOLLOW_KINDS)


def test_skip_reasons_never_raise(phantom):
    ct, masks = phantom
    rng = np.random.default_rng(0)
    empty = np.zeros(ct.shape, bool)
    assert "too small" in sample_hollow_params("colon", rng, ct, empty, "small")
    tiny = empty.copy()
    tiny[50, 50, 20:25] = True
    assert "too small" in sample_hollow_params("esophagus", rng, ct, tiny, "medium")
    assert "colon only" in sample_hollow_params(
        "esophagus", rng, ct, masks["esophagus"], "small", "polyp"
    )
    assert "unknown" in sample_hollow_params("colon", rng, ct, masks["colon"], "small", "annular")
    assert "not a hollow organ" in sample_hollow_params("liver", rng, ct, masks["liver"], "small")
    assert "does not match" in sample_hollow_params("colon", rng, ct, masks["colon"][:-1], "small")
    all_air = ct.with_array(np.where(masks["colon"], -1000.0, ct.array).astype(np.float32))
    assert "wall" in sample_hollow_params("colon", rng, all_air, masks["colon"], "small")
    # a block of organ that is no tube at all: a record or a reason, never an exception
    block = empty.copy()
    block[100:110, 70:80, 40:44] = True
    result = sample_hollow_params("colon", rng, ct, block, "large", "wall_thickening")
    assert isinstance(result, (str, TumorParams))


def test_collapsed_colon_without_air(phantom):
    ct, masks = phantom
    colon = masks["colon"]
    collapsed = ct.with_array(
        np.where(colon & (ct.array < -300), 15.0, ct.array).astype(np.float32)
    )
    params = sample(collapsed, masks, "colon", "medium", "wall_thickening", 21)
    crop, ctx, shape = build(params, collapsed, masks)
    tumor = shape.occupancy >= 0.5
    _, lumen = split_wall_lumen(ctx.ct, ctx.organ, crop.spacing_mm)
    assert lumen.any() and (tumor & lumen).any()  # central voxels act as the lumen


def test_organ_cut_by_the_volume_border(phantom):
    ct, masks = phantom
    cut = ct.shape[2] // 3
    small_ct = Volume(np.ascontiguousarray(ct.array[:, :, :cut]), ct.affine)
    small_masks = {name: np.ascontiguousarray(mask[:, :, :cut]) for name, mask in masks.items()}
    for seed in range(3):
        result = sample_hollow_params(
            "colon",
            np.random.default_rng(seed),
            small_ct,
            small_masks["colon"],
            "medium",
            forbidden=others(small_masks, "colon"),
        )
        if isinstance(result, TumorParams):
            _, ctx, shape = build(result, small_ct, small_masks)
            assert shape.occupancy.shape == ctx.organ.shape and (shape.occupancy >= 0.5).any()


def test_anisotropic_spacing():
    ct, masks = load_phantom(2.0, 4.0, seed=3, boolean=True)
    assert ct.spacing[2] == pytest.approx(4.0)
    for organ, seed in (("colon", 31), ("esophagus", 32)):
        params = sample(ct, masks, organ, "medium", "wall_thickening", seed)
        crop, _, shape = build(params, ct, masks)
        tumor = shape.occupancy >= 0.5
        diameter = equivalent_diameter_mm(tumor.sum() * np.prod(crop.spacing_mm))
        assert diameter == pytest.approx(params.diameter_mm, rel=0.3)
        s = wall_segment_coordinates(params, crop)[0].reshape(crop.shape)
        assert np.ptp(s[tumor]) == pytest.approx(params.extra_value("length_mm"), rel=0.3)


def _uint8(masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: mask.astype(np.uint8) for name, mask in masks.items()}


@pytest.mark.parametrize(("organ", "seeds"), [("colon", (0, 2, 4, 7)), ("esophagus", (0, 5))])
def test_end_to_end_contrast_and_containment(phantom, organ, seeds):
    insert = pytest.importorskip("tumorscale.synth.insert").insert_tumors
    ct, masks = phantom
    for seed in seeds:
        result = insert(ct, _uint8(masks), organ, np.random.default_rng(seed))
        record = result.records[0]
        assert record.skipped is None, record.skipped
        tumor = result.tumor_mask.astype(bool)
        assert not (
            tumor & ~result.masks[organ].astype(bool)
        ).any()  # lesion inside the grown organ
        assert not (tumor & others(_uint8(result.masks), organ).astype(bool)).any()
        assert record.achieved_diameter_mm >= 10.0
        assert record.achieved_contrast_hu == pytest.approx(record.params.contrast_hu, abs=15.0)
        absolute = record.organ_median_hu + record.achieved_contrast_hu
        assert 40.0 - 15.0 <= absolute <= (90.0 if organ == "colon" else 80.0) + 15.0


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    organ=st.sampled_from(["colon", "esophagus"]),
    size_class=st.sampled_from(["small", "medium", "large"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_contained_and_replayable(phantom, organ, size_class, seed):
    ct, masks = phantom
    params = sample_hollow_params(
        organ,
        np.random.default_rng(seed),
        ct,
        masks[organ],
        size_class,
        forbidden=others(masks, organ),
    )
    if isinstance(params, str):  # a reason, never an exception
        assert organ in params
        return
    _, ctx, shape = build(params, ct, masks)
    tumor = shape.occupancy >= 0.5
    growth = np.zeros_like(tumor) if shape.organ_growth is None else shape.organ_growth
    assert tumor.any() and not (tumor & ~(ctx.organ | growth)).any()
    assert not (tumor & ctx.forbidden).any()
    assert shape.occupancy.min() >= 0.0 and shape.occupancy.max() <= 1.0
    _, _, again = build(TumorParams.from_dict(params.to_dict()), ct, masks)
    np.testing.assert_array_equal(shape.occupancy, again.occupancy)
