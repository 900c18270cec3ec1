"""Uterus tumor geometry (endometrial mass, fibroids by depth) on female phantoms."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.synth.phantoms import load_phantom
from tumorscale.io import Volume
from tumorscale.sizes import equivalent_diameter_mm, size_bin
from tumorscale.synth.centerline import depth_mm, principal_axes
from tumorscale.synth.types import Crop, CropContext, TumorParams
from tumorscale.synth.uterus import (
    FIBROID_LOCATIONS,
    UTERUS_KINDS,
    UterusAnatomy,
    build_uterus_shape,
    sample_uterus_params,
    uterus_crop_radius_mm,
)

BINS = {"small": "<20", "medium": "20-50", "large": ">50"}


@pytest.fixture(scope="module")
def phantom() -> tuple[Volume, dict[str, np.ndarray]]:
    return load_phantom(1.5, 2.5, boolean=True)


def others(masks: dict[str, np.ndarray]) -> np.ndarray:
    return np.logical_or.reduce([mask for name, mask in masks.items() if name != "uterus"])


def sample(ct, masks, size_class, kind, seed, location=None) -> TumorParams:
    params = sample_uterus_params(
        np.random.default_rng(seed),
        ct,
        masks["uterus"],
        size_class,
        kind,
        forbidden=others(masks),
        fibroid_location=location,
    )
    assert isinstance(params, TumorParams), params
    return params


def build(params, ct, masks):
    crop = Crop.around(
        np.asarray(params.center_mm), uterus_crop_radius_mm(params), ct.shape, ct.affine
    )
    organ = masks["uterus"]
    ctx = CropContext(
        ct=ct.array[crop.slices].astype(np.float32),
        organ=organ[crop.slices],
        forbidden=others(masks)[crop.slices],
        organ_median_hu=float(np.median(ct.array[organ])),
    )
    return crop, ctx, build_uterus_shape(params, crop, ctx)


def check_common(params, crop, ctx, shape, size_class):
    tumor = shape.occupancy >= 0.5
    growth = np.zeros_like(tumor) if shape.organ_growth is None else shape.organ_growth
    assert tumor.any()
    assert not (tumor & ~(ctx.organ | growth)).any()
    assert not (tumor & ctx.forbidden).any()
    diameter = equivalent_diameter_mm(tumor.sum() * np.prod(crop.spacing_mm))
    assert diameter == pytest.approx(params.diameter_mm, rel=0.3)
    assert size_bin(params.diameter_mm) == BINS[size_class]
    return tumor


def world(crop: Crop, mask: np.ndarray) -> np.ndarray:
    return crop.world_points()[mask]


@pytest.mark.parametrize(("size_class", "seed"), [("small", 1), ("medium", 2), ("large", 3)])
def test_endometrial_mass_on_the_medial_axis(phantom, size_class, seed):
    ct, masks = phantom
    params = sample(ct, masks, size_class, "endometrial", seed)
    assert -60.0 <= params.contrast_hu <= -20.0  # hypodense vs myometrium (notes §7)
    crop, ctx, shape = build(params, ct, masks)
    tumor = check_common(params, crop, ctx, shape, size_class)
    anatomy = UterusAnatomy(masks["uterus"], ct.affine)
    points = world(crop, tumor)
    centroid = points.mean(axis=0)
    assert anatomy.distance_to_medial_axis(centroid[None])[0] < 5.0
    # elongated along the uterus long axis, AP the thinnest (cavity-shaped)
    spread = (points @ anatomy.axes.T).std(axis=0)  # along long, transverse, AP of the uterus
    assert spread[0] > spread[1] > spread[2]
    _, axes, _ = principal_axes(points)
    assert abs(axes[0] @ anatomy.axes[0]) > 0.8
    assert np.ptp(points @ anatomy.axes[2]) >= 6.0  # AP > 6 mm (notes §6)


@pytest.mark.parametrize(
    ("location", "size_class", "seed"),
    [
        ("intramural", "small", 4),
        ("submucosal", "small", 5),
        ("subserosal", "medium", 6),
        ("subserosal", "large", 7),
    ],
)
def test_fibroid_depth_by_type(phantom, location, size_class, seed):
    ct, masks = phantom
    params = sample(ct, masks, size_class, "fibroid", seed, location)
    assert FIBROID_LOCATIONS[int(params.extra_value("location"))] == location
    assert -10.0 <= params.contrast_hu <= 10.0 and params.edge_mm <= 0.8
    crop, ctx, shape = build(params, ct, masks)
    tumor = check_common(params, crop, ctx, shape, size_class)
    radius = params.extra_value("radius_mm")
    depth = depth_mm(np.pad(ctx.organ, 1), np.asarray(crop.spacing_mm))[1:-1, 1:-1, 1:-1]
    centre_voxel = np.rint(
        np.linalg.solve(crop.affine, np.append(params.center_mm, 1.0))[:3]
    ).astype(int)
    centre_depth = depth[tuple(centre_voxel - np.asarray(crop.start))]
    anatomy = UterusAnatomy(masks["uterus"], ct.affine)
    axis_distance = anatomy.distance_to_medial_axis(np.asarray(params.center_mm)[None])[0]
    if location == "intramural":
        assert shape.organ_growth is None and centre_depth >= 0.8 * radius
        assert axis_distance >= 0.6 * radius
    elif location == "submucosal":
        assert shape.organ_growth is None and axis_distance <= max(0.35 * radius, 4.0) + 1.0
        cavity = depth >= 0.75 * anatomy.max_depth
        assert (tumor & cavity).any()  # bulges into the cavity
    else:
        assert centre_depth <= 0.35 * radius + 2.0
        assert shape.organ_growth is not None and shape.organ_growth.sum() > 0.1 * tumor.sum()


def test_same_record_same_arrays(phantom):
    ct, masks = phantom
    for kind in UTERUS_KINDS:
        first = sample(ct, masks, "medium", kind, 9)
        assert first == sample(ct, masks, "medium", kind, 9)
        _, _, a = build(first, ct, masks)
        _, _, b = build(TumorParams.from_dict(first.to_dict()), ct, masks)
        np.testing.assert_array_equal(a.occupancy, b.occupancy)


def test_default_kind_mix(phantom):
    ct, masks = phantom
    kinds = {
        sample_uterus_params(np.random.default_rng(seed), ct, masks["uterus"], "small").kind
        for seed in range(8)
    }
    assert kinds == set(UTERUS_KINDS)


def test_skip_reasons_never_raise(phantom):
    ct, masks = phantom
    rng = np.random.default_rng(0)
    empty = np.zeros(ct.shape, bool)
    assert "too small" in sample_uterus_params(rng, ct, empty, "small")
    tiny = empty.copy()
    tiny[60, 60, 10:15] = True
    assert "too small" in sample_uterus_params(rng, ct, tiny, "medium", "fibroid")
    assert "unknown" in sample_uterus_params(rng, ct, masks["uterus"], "small", "polyp")
    assert "unknown size class" in sample_uterus_params(rng, ct, masks["uterus"], "huge")
    assert "does not match" in sample_uterus_params(rng, ct, masks["uterus"][1:], "small")
    assert "location" in sample_uterus_params(
        rng, ct, masks["uterus"], "small", "fibroid", fibroid_location="pedunculated"
    )
    # a small uterus cannot hold a large intramural fibroid: a reason, not an exception
    result = sample_uterus_params(
        rng, ct, masks["uterus"], "large", "fibroid", fibroid_location="intramural"
    )
    assert isinstance(result, str) and "fibroid" in result


def test_uterus_at_the_volume_border(phantom):
    ct, masks = phantom
    index = np.argwhere(masks["uterus"])
    cut = int(np.median(index[:, 2]))  # the volume ends mid-uterus
    small_ct = Volume(
        np.ascontiguousarray(ct.array[:, :, cut:]),
        ct.affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, cut], [0, 0, 0, 1]], float),
    )
    small_masks = {name: np.ascontiguousarray(mask[:, :, cut:]) for name, mask in masks.items()}
    for kind in UTERUS_KINDS:
        result = sample_uterus_params(
            np.random.default_rng(2), small_ct, small_masks["uterus"], "small", kind
        )
        assert isinstance(result, (str, TumorParams))
        if isinstance(result, TumorParams):
            _, _, shape = build(result, small_ct, small_masks)
            assert (shape.occupancy >= 0.5).any()


def test_anisotropic_spacing():
    ct, masks = load_phantom(2.0, 4.0, seed=3, boolean=True)
    for kind, seed in (("endometrial", 31), ("fibroid", 32)):
        params = sample(ct, masks, "medium", kind, seed)
        crop, ctx, shape = build(params, ct, masks)
        check_common(params, crop, ctx, shape, "medium")


def test_end_to_end_contrast_and_containment(phantom):
    insert = pytest.importorskip("tumorscale.synth.insert").insert_tumors
    ct, masks = phantom
    uint8 = {name: mask.astype(np.uint8) for name, mask in masks.items()}
    kinds = set()
    for seed in (0, 2, 5, 8):
        result = insert(ct, uint8, "uterus", np.random.default_rng(seed))
        record = result.records[0]
        assert record.skipped is None, record.skipped
        kinds.add(record.params.kind)
        tumor = result.tumor_mask.astype(bool)
        assert not (tumor & ~result.masks["uterus"].astype(bool)).any()
        assert record.achieved_diameter_mm >= 10.0
        assert record.achieved_contrast_hu == pytest.approx(record.params.contrast_hu, abs=15.0)
    assert kinds == set(UTERUS_KINDS)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from([None, *UTERUS_KINDS]),
    size_class=st.sampled_from(["small", "medium", "large"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_contained_and_replayable(phantom, kind, size_class, seed):
    ct, masks = phantom
    params = sample_uterus_params(
        np.random.default_rng(seed), ct, masks["uterus"], size_class, kind, forbidden=others(masks)
    )
    if isinstance(params, str):  # a reason, never an exception
        assert "uterus" in params
        return
    crop, ctx, shape = build(params, ct, masks)
    tumor = check_common(params, crop, ctx, shape, size_class)
    assert shape.normalised_radius is not None
    assert shape.normalised_radius[tumor].mean() < 1.0  # the mass effect pushes from inside
    _, _, again = build(TumorParams.from_dict(params.to_dict()), ct, masks)
    np.testing.assert_array_equal(shape.occupancy, again.occupancy)
