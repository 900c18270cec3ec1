"""Property tests of the synthesis invariants on small random scenes (hypothesis).

For any spacing, organ shape, neighbour and seed: voxels outside the tumor's reach (tumor +
mass-effect margin) are unchanged; the tumor lies inside its organ (exophytic kidney tumors
excepted) and never inside another organ; HU stay in the scan's range; the same record gives
bit-identical output; bad scenes give skip records, never exceptions.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tumorscale.io import Volume
from tumorscale.synth import NoRoom, TumorParams, apply_tumor, insert_tumors, sample_params
from tumorscale.synth.shape import EDGE_CUTOFF, ELASTIC_CLIP, radius_mm

ORGAN_FILES = {"liver": "liver", "pancreas": "pancreas", "kidney": "kidney_left"}


def scene(
    organ: str, spacing: tuple[float, float, float], radii_mm: tuple[float, float, float],
    neighbour_gap_mm: float, noise_sd: float, seed: int, integer: bool,
) -> tuple[Volume, dict[str, np.ndarray]]:
    """An ellipsoidal organ (HU ~ 100) in fat (-100), a bright neighbour beside it, noise."""
    shape = tuple(int(np.ceil(110.0 / s)) for s in spacing)
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    inside = (x / radii_mm[0]) ** 2 + (y / radii_mm[1]) ** 2 + (z / radii_mm[2]) ** 2 <= 1
    neighbour = (np.hypot(x - radii_mm[0] - neighbour_gap_mm - 8, y) <= 8) & (np.abs(z) < 30)
    rng = np.random.default_rng(seed)
    image = np.where(inside, 100.0, -100.0) + np.where(neighbour, 80.0, 0.0)
    image = image + rng.normal(0, noise_sd, shape)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-55.0, -40.0, 10.0]
    array = np.rint(image).astype(np.int16) if integer else image.astype(np.float32)
    masks = {ORGAN_FILES[organ]: inside.astype(np.uint8), "aorta": neighbour.astype(np.uint8)}
    masks["aorta"][inside] = 0
    return Volume(array, affine), masks


def reach_mm(params: TumorParams) -> float:
    r_max = radius_mm(params) * max(params.semi_axis_scale)
    shape = r_max + ELASTIC_CLIP * params.elastic_mm + EDGE_CUTOFF * params.edge_mm
    push = params.mass_effect_extent * (r_max + ELASTIC_CLIP * params.elastic_mm)
    return max(shape, push)


def distance_mm(ct: Volume, center_mm) -> np.ndarray:
    grid = np.indices(ct.shape, dtype=np.float32).reshape(3, -1)
    world = ct.affine[:3, :3] @ grid + ct.affine[:3, 3:4]
    return np.linalg.norm(world - np.asarray(center_mm)[:, None], axis=0).reshape(ct.shape)


scenes = st.fixed_dictionaries({
    "organ": st.sampled_from(sorted(ORGAN_FILES)),
    "spacing": st.tuples(
        st.sampled_from([0.9, 1.3, 2.0]), st.sampled_from([0.9, 1.3, 2.0]),
        st.sampled_from([1.0, 2.5, 4.0]),
    ),
    "radii_mm": st.tuples(st.floats(18, 38), st.floats(14, 30), st.floats(14, 38)),
    "neighbour_gap_mm": st.floats(0.0, 6.0),
    "noise_sd": st.floats(3.0, 20.0),
    "seed": st.integers(0, 2**16),
    "integer": st.booleans(),
    "size_class": st.sampled_from(["small", "small", "medium", "large"]),
})


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=scenes)
def test_invariants_hold_on_random_scenes(spec) -> None:
    ct, masks = scene(spec["organ"], spec["spacing"], spec["radii_mm"], spec["neighbour_gap_mm"],
                      spec["noise_sd"], spec["seed"], spec["integer"])
    organ_name = ORGAN_FILES[spec["organ"]]
    try:
        params = sample_params(spec["organ"], ct, masks, np.random.default_rng(spec["seed"]),
                               size_class=spec["size_class"])
    except NoRoom as why:  # a clear reason, not a crash
        assert why.reason
        return
    result = apply_tumor(params, ct, masks)
    (record,) = result.records
    if record.skipped:
        assert not result.tumor_mask.any() and np.array_equal(result.ct.array, ct.array)
        return
    tumor = result.tumor_mask > 0
    assert tumor.any()
    changed = (result.ct.array != ct.array) | tumor
    for name in masks:
        changed |= result.masks[name] != masks[name]
    far = distance_mm(ct, params.center_mm) > reach_mm(params) + max(spec["spacing"])
    assert not (changed & far).any()
    assert not (tumor & (result.masks["aorta"] > 0)).any()
    if not params.exophytic:
        assert not (tumor & (result.masks[organ_name] == 0)).any()
    assert result.ct.array.min() >= ct.array.min()
    assert result.ct.array.max() <= ct.array.max()
    assert result.ct.array.dtype == ct.array.dtype
    again = apply_tumor(params, ct, masks)
    assert np.array_equal(again.ct.array, result.ct.array)
    assert np.array_equal(again.tumor_mask, result.tumor_mask)


@settings(max_examples=10, deadline=None)
@given(
    organ=st.sampled_from(["liver", "pancreas", "kidney"]),
    voxels=st.integers(0, 40),
    edge=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_degenerate_masks_never_crash(organ, voxels, edge, seed) -> None:
    shape = (24, 20, 12)
    rng = np.random.default_rng(seed)
    ct = Volume(rng.normal(50, 10, shape).astype(np.float32), np.diag([1.5, 1.5, 3.0, 1.0]))
    mask = np.zeros(shape, np.uint8)
    points = rng.integers(0, shape, size=(voxels, 3))
    if edge:
        points[:, 0] = 0  # on the scan's border
    mask[tuple(points.T)] = 1
    result = insert_tumors(ct, {ORGAN_FILES[organ]: mask}, organ, rng, count=2)
    assert len(result.records) == 2
    for record in result.records:
        assert record.skipped or record.achieved_diameter_mm
    tumor = result.tumor_mask > 0
    assert not (tumor & (result.masks[ORGAN_FILES[organ]] == 0)).any() or any(
        r.params is not None and r.params.exophytic for r in result.records
    )
