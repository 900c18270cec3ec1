"""Tumor synthesis on phantoms: placement, contrast, size, noise, locality, determinism, skips."""

from __future__ import annotations

from dataclasses import replace

import edt
import numpy as np
import pytest
from scipy import ndimage

from tests.synth.phantoms import load_phantom
from tumorscale.io import Volume
from tumorscale.sizes import SIZE_CLASS_NAMES, equivalent_diameter_mm, size_class_of
from tumorscale.synth import (
    NoRoom,
    SynthesisResult,
    TumorParams,
    apply_tumor,
    draw_size_class,
    insert_tumors,
    organ_mask_names,
    sample_params,
)
from tumorscale.synth.profiles import PROFILES
from tumorscale.synth.shape import EDGE_CUTOFF, ELASTIC_CLIP, radius_mm

ORGAN_CASES = [
    ("liver", "metastasis", "medium", 3),
    ("liver", "hcc", "medium", 4),
    ("liver", "metastasis", "large", 5),
    ("pancreas", "pdac", "medium", 6),
    ("pancreas", "cyst", "small", 7),
    ("kidney", "ccrcc", "medium", 8),
    ("kidney", "prcc", "small", 9),
]


@pytest.fixture(scope="module")
def phantom() -> tuple[Volume, dict[str, np.ndarray]]:
    return load_phantom()


def organ_union(masks: dict[str, np.ndarray], organ: str) -> np.ndarray:
    union = np.zeros(next(iter(masks.values())).shape, dtype=bool)
    for name in organ_mask_names(organ, masks):
        union |= masks[name] > 0
    return union


def others_union(masks: dict[str, np.ndarray], organ: str) -> np.ndarray:
    names = set(organ_mask_names(organ, masks))
    union = np.zeros(next(iter(masks.values())).shape, dtype=bool)
    for name, mask in masks.items():
        if name not in names:
            union |= mask > 0
    return union


def influence_radius_mm(params: TumorParams) -> float:
    """Farthest a tumor (with its mass effect) may change anything, from its centre."""
    r_max = radius_mm(params) * max(params.semi_axis_scale)
    shape = r_max + ELASTIC_CLIP * params.elastic_mm + EDGE_CUTOFF * params.edge_mm
    push = params.mass_effect_extent * (r_max + ELASTIC_CLIP * params.elastic_mm)
    return max(shape, push)


def distance_from_centre_mm(ct: Volume, center_mm: tuple[float, float, float]) -> np.ndarray:
    grid = np.indices(ct.shape, dtype=np.float32).reshape(3, -1)
    world = ct.affine[:3, :3] @ grid + ct.affine[:3, 3:4]
    return np.linalg.norm(world - np.asarray(center_mm)[:, None], axis=0).reshape(ct.shape)


def robust_sd(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def high_pass(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float32)
    return image - ndimage.uniform_filter(image, 3)


def changed_voxels(
    before: Volume, masks: dict[str, np.ndarray], result: SynthesisResult
) -> np.ndarray:
    changed = result.ct.array != before.array
    for name, mask in masks.items():
        changed |= result.masks[name] != mask
    return changed | (result.tumor_mask > 0)


def draw(organ: str, kind: str, size: str, seed: int, ct: Volume, masks) -> TumorParams:
    rng = np.random.default_rng(seed)
    params = sample_params(organ, ct, masks, rng, size_class=size, kind=kind)
    assert isinstance(params, TumorParams), params
    return params


@pytest.mark.parametrize(("organ", "kind", "size", "seed"), ORGAN_CASES)
def test_tumor_lands_in_its_organ_with_intended_contrast_size_and_noise(
    phantom, organ, kind, size, seed
) -> None:
    ct, masks = phantom
    params = draw(organ, kind, size, seed, ct, masks)
    result = apply_tumor(params, ct, masks)
    (record,) = result.records
    assert record.skipped is None
    tumor = result.tumor_mask > 0
    assert tumor.any()
    # Never inside another organ; inside the (grown) organ unless exophytic.
    assert not (tumor & others_union(result.masks, organ)).any()
    if not params.exophytic:
        assert not (tumor & ~organ_union(result.masks, organ)).any()
    # Achieved contrast measured independently, against the record's organ median and against a
    # local organ median of the untouched scan.
    achieved = float(np.median(result.ct.array[tumor])) - record.organ_median_hu
    assert abs(achieved - params.contrast_hu) <= 15.0
    assert abs(achieved - record.achieved_contrast_hu) < 1e-6
    near = (distance_from_centre_mm(ct, params.center_mm) < 40) & organ_union(masks, organ)
    assert abs(float(np.median(ct.array[near])) - record.organ_median_hu) <= 10.0
    # Size: the written mask's equivalent diameter.
    diameter = equivalent_diameter_mm(tumor.sum() * ct.voxel_volume_mm3)
    assert diameter == pytest.approx(record.achieved_diameter_mm)
    assert diameter == pytest.approx(params.diameter_mm, rel=0.25)
    # HU stay in the scan's range.
    assert result.ct.array.min() >= ct.array.min() and result.ct.array.max() <= ct.array.max()
    assert result.ct.array.dtype == ct.array.dtype


@pytest.mark.parametrize(("organ", "kind", "size", "seed"), ORGAN_CASES[:4] + ORGAN_CASES[5:6])
def test_noise_inside_the_tumor_matches_the_background(phantom, organ, kind, size, seed) -> None:
    ct, masks = phantom
    # No core / rim / wide blur: what is left inside is texture + the carried noise.
    params = replace(draw(organ, kind, size, seed, ct, masks), necrosis_hu=0.0, rim_hu=0.0,
                     edge_mm=0.7)
    result = apply_tumor(params, ct, masks)
    tumor = result.tumor_mask > 0
    core = ndimage.binary_erosion(tumor, iterations=2)
    assert core.sum() > 30
    organ_mask = organ_union(masks, organ) & ~ndimage.binary_dilation(tumor, iterations=3)
    background = ndimage.binary_erosion(organ_mask, iterations=2)
    ratio = robust_sd(high_pass(result.ct.array)[core]) / robust_sd(
        high_pass(ct.array)[background]
    )
    assert 0.7 <= ratio <= 1.4


@pytest.mark.parametrize(("organ", "kind", "size", "seed"), ORGAN_CASES)
def test_only_the_tumor_and_its_mass_effect_margin_change(phantom, organ, kind, size, seed) -> None:
    ct, masks = phantom
    before_ct = ct.array.copy()
    before_masks = {name: mask.copy() for name, mask in masks.items()}
    params = draw(organ, kind, size, seed, ct, masks)
    result = apply_tumor(params, ct, masks)
    changed = changed_voxels(ct, masks, result)
    reach = influence_radius_mm(params) + max(ct.spacing)
    assert changed.any()
    assert not (changed & (distance_from_centre_mm(ct, params.center_mm) > reach)).any()
    # The inputs are untouched and the outputs are new arrays.
    assert np.array_equal(ct.array, before_ct)
    assert all(np.array_equal(masks[n], before_masks[n]) for n in masks)
    assert not np.shares_memory(result.ct.array, ct.array)


def test_mass_effect_pushes_neighbours_instead_of_overwriting(phantom) -> None:
    ct, masks = phantom
    params = replace(draw("liver", "metastasis", "large", 5, ct, masks), mass_effect=0.35)
    result = apply_tumor(params, ct, masks)
    flat = apply_tumor(replace(params, mass_effect=0.0), ct, masks)
    distance = distance_from_centre_mm(ct, params.center_mm)
    r = radius_mm(params)
    shell = (distance > 1.05 * r * max(params.semi_axis_scale)) & (distance < 1.25 * r)
    moved = (result.ct.array != flat.ct.array) & shell
    assert moved.sum() > 0.2 * shell.sum()


def test_mass_effect_moves_a_neighbour_outward() -> None:
    """A small neighbour (another organ) just outside the tumor is pushed away from its centre:
    its centroid's distance grows by about what the radial push predicts."""
    shape, centre = (80, 80, 80), np.array([40.0, 40.0, 40.0])
    grid = np.indices(shape).astype(float)
    radius_of = np.sqrt(((grid - centre.reshape(3, 1, 1, 1)) ** 2).sum(axis=0))
    liver = np.ones(shape, np.uint8)
    marker_at = centre + np.array([17.0, 0.0, 0.0])  # 1.13 tumor radii from the centre
    marker = (np.sqrt(((grid - marker_at.reshape(3, 1, 1, 1)) ** 2).sum(axis=0)) <= 2.5)
    ct = Volume(np.full(shape, 100.0, np.float32), np.eye(4))
    masks = {"liver": liver * (~marker), "gallbladder": marker.astype(np.uint8)}
    params = TumorParams(organ="liver", kind="metastasis", seed=1, center_mm=tuple(centre),
                         diameter_mm=30.0, size_class="medium", mass_effect=0.35)

    def marker_distance(mass_effect: float) -> tuple[float, int]:
        moved = apply_tumor(replace(params, mass_effect=mass_effect), ct, masks).masks
        found = moved["gallbladder"] > 0
        return float(radius_of[found].mean()), int(found.sum())

    flat, flat_count = marker_distance(0.0)
    pushed, pushed_count = marker_distance(0.35)
    assert flat == pytest.approx(17.0, abs=0.3)
    # The push samples the source at rho * (0.65 + 0.35 / 1.3**2 * rho**2) (rho in tumor radii):
    # tissue from 1.13 r lands at 1.20 r, 0.9 mm farther out (less after voxelisation).
    assert 0.5 < pushed - flat < 1.5
    # ... and the radial stretch of that map (d source / d out = 1.55 there) squeezes it radially.
    assert 0.5 * flat_count <= pushed_count <= flat_count


def test_same_record_gives_bit_identical_output(phantom) -> None:
    ct, masks = phantom
    first = insert_tumors(ct, masks, "liver", np.random.default_rng(11), count=2)
    second = insert_tumors(ct, masks, "liver", np.random.default_rng(11), count=2)
    assert np.array_equal(first.ct.array, second.ct.array)
    assert np.array_equal(first.tumor_mask, second.tumor_mask)
    assert all(np.array_equal(first.masks[n], second.masks[n]) for n in masks)
    assert [r.params for r in first.records] == [r.params for r in second.records]
    # The first record alone rebuilds the first tumor.
    single = insert_tumors(ct, masks, "liver", np.random.default_rng(11), count=1)
    replay = apply_tumor(single.records[0].params, ct, masks)
    assert np.array_equal(single.ct.array, replay.ct.array)
    assert np.array_equal(single.tumor_mask, replay.tumor_mask)
    # And through a JSON-style dict round trip.
    again = apply_tumor(TumorParams.from_dict(single.records[0].params.to_dict()), ct, masks)
    assert np.array_equal(again.ct.array, replay.ct.array)


def test_several_tumors_do_not_overlap_and_each_has_a_record(phantom) -> None:
    ct, masks = phantom
    result = insert_tumors(ct, masks, "liver", np.random.default_rng(2), count=3,
                           size_mix=(1, 0, 0))
    assert len(result.records) == 3
    assert all(r.skipped is None for r in result.records)
    _, count = ndimage.label(result.tumor_mask)
    assert count >= 2
    total = sum(equivalent_diameter_mm_to_volume(r.achieved_diameter_mm) for r in result.records)
    assert result.tumor_mask.sum() * ct.voxel_volume_mm3 == pytest.approx(total, rel=0.1)


def equivalent_diameter_mm_to_volume(diameter: float) -> float:
    return float(np.pi / 6 * diameter**3)


def test_in_place_mode_writes_into_the_inputs(phantom) -> None:
    ct, masks = phantom
    ct_copy = Volume(ct.array.copy(), ct.affine, ct.source)
    masks_copy = {n: m.copy() for n, m in masks.items()}
    result = insert_tumors(ct_copy, masks_copy, "kidney", np.random.default_rng(5), copy=False)
    assert result.records[0].skipped is None
    assert np.shares_memory(result.ct.array, ct_copy.array)
    assert not np.array_equal(ct_copy.array, ct.array)
    reference = insert_tumors(ct, masks, "kidney", np.random.default_rng(5))
    assert np.array_equal(reference.ct.array, ct_copy.array)


def test_size_mix_is_respected() -> None:
    rng = np.random.default_rng(0)
    counts = {name: 0 for name in SIZE_CLASS_NAMES}
    for _ in range(7000):
        counts[draw_size_class(rng)] += 1
    assert counts["small"] / 7000 == pytest.approx(4 / 7, abs=0.02)
    assert counts["medium"] / 7000 == pytest.approx(2 / 7, abs=0.02)
    assert counts["large"] / 7000 == pytest.approx(1 / 7, abs=0.02)
    assert {draw_size_class(rng, {"large": 1.0}) for _ in range(20)} == {"large"}
    with pytest.raises(ValueError, match="size_mix"):
        draw_size_class(rng, (1.0, -1.0, 1.0))


def test_sampled_sizes_follow_the_mix_and_the_bins(phantom) -> None:
    ct, masks = phantom
    rng = np.random.default_rng(1)
    drawn = [sample_params("liver", ct, masks, rng, size_mix=(4, 2, 1)) for _ in range(140)]
    params = [p for p in drawn if isinstance(p, TumorParams)]
    assert len(params) >= 130
    share = {name: np.mean([p.size_class == name for p in params]) for name in SIZE_CLASS_NAMES}
    assert share["small"] == pytest.approx(4 / 7, abs=0.12)
    assert share["large"] == pytest.approx(1 / 7, abs=0.08)
    for p in params:
        low, high = PROFILES["liver"].diameter_mm[p.size_class]
        assert low <= p.diameter_mm <= high


def test_pancreas_tumors_prefer_the_head_on_the_patients_right(phantom) -> None:
    ct, masks = phantom
    pancreas = np.argwhere(masks["pancreas"] > 0)
    x_mm = (ct.affine[:3, :3] @ pancreas.T + ct.affine[:3, 3:4])[0]
    middle = 0.5 * (x_mm.min() + x_mm.max())
    rng = np.random.default_rng(4)
    centres = [sample_params("pancreas", ct, masks, rng, size_class="small") for _ in range(45)]
    right = np.mean([p.center_mm[0] > middle for p in centres if isinstance(p, TumorParams)])
    assert right > 0.6  # 2/3 in the head (+ part of the rest)


def test_liver_tumors_avoid_bright_vessels() -> None:
    spacing = 1.5
    shape = (64, 64, 64)
    rng = np.random.default_rng(0)
    image = rng.normal(100.0, 8.0, shape).astype(np.float32)
    image[:, 30:34, 30:34] = 180.0  # a bright vessel along x through the middle
    liver = np.zeros(shape, np.uint8)
    liver[4:60, 4:60, 4:60] = 1
    ct = Volume(image, np.diag([spacing, spacing, spacing, 1.0]))
    for seed in range(12):
        params = sample_params("liver", ct, {"liver": liver}, np.random.default_rng(seed),
                               size_class="small")
        assert isinstance(params, TumorParams), params
        voxel = np.asarray(params.center_mm) / spacing
        gap_mm = (np.hypot(voxel[1] - 31.5, voxel[2] - 31.5) - 2.0) * spacing
        assert gap_mm >= 0.5 * params.diameter_mm - 2 * spacing


def test_kidney_tumors_may_be_exophytic_but_never_enter_other_organs(phantom) -> None:
    ct, masks = phantom
    found = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        try:
            params = sample_params("kidney", ct, masks, rng, size_class="medium")
        except NoRoom:
            continue
        if not params.exophytic:
            continue
        result = apply_tumor(params, ct, masks)
        tumor = result.tumor_mask > 0
        kidney = organ_union(result.masks, "kidney")
        assert (tumor & ~kidney).sum() > 0.1 * tumor.sum()  # really outside the kidney
        assert not (tumor & others_union(result.masks, "kidney")).any()
        assert organ_union(result.masks, "kidney").sum() <= organ_union(masks, "kidney").sum() * 1.5
        found += 1
        if found == 2:
            break
    assert found == 2


@pytest.mark.parametrize(
    ("masks_for", "reason"),
    [
        (lambda shape: {}, "no pancreas mask"),
        (lambda shape: {"pancreas": np.zeros(shape, np.uint8)}, "empty pancreas mask"),
        (lambda shape: {"pancreas": tiny(shape)}, "too small"),
        (lambda shape: {"pancreas": at_border(shape)}, "border"),
    ],
)
def test_bad_organ_masks_give_skip_reasons_not_crashes(masks_for, reason) -> None:
    shape = (40, 40, 30)
    ct = Volume(np.full(shape, 40.0, np.float32), np.diag([1.5, 1.5, 2.5, 1.0]))
    result = insert_tumors(ct, masks_for(shape), "pancreas", np.random.default_rng(0), count=2,
                           size_mix=(0, 0, 1))
    assert len(result.records) == 2
    assert all(reason in (r.skipped or "") for r in result.records)
    assert not result.tumor_mask.any()
    assert np.array_equal(result.ct.array, ct.array)


def tiny(shape: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[20:22, 20:22, 15:16] = 1
    return mask


def at_border(shape: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[:6, 5:35, 5:25] = 1  # a slab cut by the scan's edge: no room for a large tumor
    return mask


def test_unknown_organ_or_kind_is_a_caller_error(phantom) -> None:
    ct, masks = phantom
    with pytest.raises(ValueError, match="organ"):
        sample_params("brain", ct, masks, np.random.default_rng(0))
    with pytest.raises(ValueError, match="kind"):
        sample_params("liver", ct, masks, np.random.default_rng(0), kind="pdac")


def test_anisotropic_spacing_and_source_orientation_are_kept() -> None:
    ct, masks = load_phantom(inplane=0.9, slices=4.0, seed=3, orientation="LAS")
    assert ct.source is not None and ct.source.shape != () and ct.orientation == "RAS"
    result = insert_tumors(ct, masks, "liver", np.random.default_rng(3), size_mix=(0, 1, 0))
    (record,) = result.records
    assert record.skipped is None
    assert abs(record.achieved_contrast_hu - record.params.contrast_hu) <= 15.0
    assert record.achieved_diameter_mm == pytest.approx(record.params.diameter_mm, rel=0.25)
    written = result.ct.to_source_geometry()
    assert written.orientation == "LAS"
    assert written.shape == ct.source.shape
    # The tumor is roughly round in mm although the voxels are 0.9 x 0.9 x 4 mm.
    tumor = result.tumor_mask > 0
    extent = [np.ptp(np.nonzero(tumor)[a]) * ct.spacing[a] for a in range(3)]
    assert max(extent) / min(extent) < 2.5


def test_depth_of_centres_keeps_clipped_tumors_inside(phantom) -> None:
    ct, masks = phantom
    depth = edt.edt(masks["liver"] > 0, anisotropy=ct.spacing)
    for seed in range(6):
        params = draw("liver", "hcc", "small", seed, ct, masks)
        voxel = np.rint(np.linalg.solve(ct.affine, [*params.center_mm, 1.0])[:3]).astype(int)
        assert depth[tuple(voxel)] >= 0.5 * params.diameter_mm - 2 * max(ct.spacing)


SIX_ORGANS = [
    ("liver", "medium", 21), ("pancreas", "medium", 22), ("kidney", "small", 23),
    ("colon", "medium", 24), ("esophagus", "small", 25), ("uterus", "medium", 26),
]


@pytest.mark.parametrize(("organ", "size", "seed"), SIX_ORGANS)
def test_every_organ_through_the_same_pipeline(phantom, organ, size, seed) -> None:
    from tumorscale.synth.apply import crop_radius_for

    ct, masks = phantom
    params = sample_params(organ, ct, masks, np.random.default_rng(seed), size_class=size)
    assert isinstance(params, TumorParams), params
    result = apply_tumor(params, ct, masks)
    (record,) = result.records
    assert record.skipped is None, record.skipped
    tumor = result.tumor_mask > 0
    assert tumor.any()
    assert not (tumor & others_union(result.masks, organ)).any()
    if not params.exophytic:
        assert not (tumor & ~organ_union(result.masks, organ)).any()
    if record.achieved_diameter_mm >= 10:
        achieved = float(np.median(result.ct.array[tumor])) - record.organ_median_hu
        assert abs(achieved - params.contrast_hu) <= 15.0
    changed = changed_voxels(ct, masks, result)
    reach = crop_radius_for(params) * np.sqrt(3) + max(ct.spacing)
    assert not (changed & (distance_from_centre_mm(ct, params.center_mm) > reach)).any()
    assert result.ct.array.min() >= ct.array.min() and result.ct.array.max() <= ct.array.max()
    replay = apply_tumor(params, ct, masks)
    assert np.array_equal(replay.ct.array, result.ct.array)


@pytest.mark.parametrize("size", ["medium", "large"])
def test_bulging_pancreatic_tumors_keep_their_size_class(phantom, size) -> None:
    """Neighbours cut a bulging tumor; its ellipsoid is grown so the written tumor still has
    the intended equivalent diameter (and so stays in its size bin)."""
    ct, masks = phantom
    for seed in range(3):
        params = draw("pancreas", "pdac", size, 30 + seed, ct, masks)
        result = apply_tumor(params, ct, masks)
        achieved = result.records[0].achieved_diameter_mm
        assert achieved == pytest.approx(params.diameter_mm, rel=0.15)
        assert size_class_of(achieved) == size_class_of(params.diameter_mm)


def test_non_canonical_arrays_work_too(phantom) -> None:
    """The math is done through the affine, so an LPS array (flipped axes) gives the same tumor
    as its RAS twin, flipped (up to the random lobulation, which lives on the voxel grid)."""
    ct, masks = phantom
    params = replace(draw("kidney", "ccrcc", "medium", 8, ct, masks), elastic_mm=0.0)
    ras = apply_tumor(params, ct, masks)
    lps_ct = ct.reoriented("LPS")
    lps_masks = {n: Volume(m, ct.affine).reoriented("LPS").array for n, m in masks.items()}
    lps = apply_tumor(params, lps_ct, lps_masks)
    back = Volume(lps.tumor_mask, lps_ct.affine).to_canonical().array
    overlap = np.count_nonzero(back & ras.tumor_mask) / np.count_nonzero(ras.tumor_mask)
    assert overlap > 0.95
    assert lps.records[0].achieved_contrast_hu == pytest.approx(params.contrast_hu, abs=1.0)


def test_floors_on_a_dark_liver_are_recorded_not_silent() -> None:
    """On a dark (fatty, unenhanced) liver of 20 HU a hypodense metastasis would fall below soft
    tissue and its necrotic core below fluid: both floors apply, and the record says by how much
    (the applied contrast = the drawn one + the shift)."""
    rng = np.random.default_rng(0)
    image = rng.normal(20.0, 5.0, (70, 70, 70)).astype(np.float32)
    liver = np.zeros(image.shape, np.uint8)
    liver[5:65, 5:65, 5:65] = 1
    ct = Volume(image, np.diag([2.0, 2.0, 2.0, 1.0]))
    cores = 0
    for seed in range(20):
        params = sample_params("liver", ct, {"liver": liver}, np.random.default_rng(seed),
                               size_class="medium", kind="metastasis")
        assert params.phase == "unenhanced"
        assert params.floor_shift_hu > 0
        assert 20.0 + params.contrast_hu == pytest.approx(15.0, abs=1.0)  # the solid floor
        if params.necrosis_hu != 0:
            cores += 1
            assert params.necrosis_floor_shift_hu > 0
            core_hu = 20.0 + params.contrast_hu + params.necrosis_hu
            assert core_hu == pytest.approx(0.0, abs=1.0)  # the fluid floor
    assert cores >= 3
