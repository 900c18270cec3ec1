"""Placement of parenchymal tumors (`synth/location.py`): the coarse organ view, depth, scan-border
room, vessel clearance, the pancreatic-head region and the uniform pick, on analytic organs."""

from __future__ import annotations

import edt
import numpy as np
import pytest

from tumorscale.io import Volume
from tumorscale.synth import NoRoom, location, sample_params
from tumorscale.synth.profiles import PROFILES

SPACING = (1.0, 1.0, 2.0)  # anisotropic, like a CT with thick slices


def grid_mm(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> list[np.ndarray]:
    """World mm of every voxel (diagonal affine, origin 0), per axis."""
    return [np.indices(shape, dtype=np.float32)[a] * spacing[a] for a in range(3)]


def ball(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    centre_mm: tuple[float, float, float],
    radius_mm: float,
) -> np.ndarray:
    x, y, z = grid_mm(shape, spacing)
    c = centre_mm
    return (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= radius_mm**2


def volume(array: np.ndarray, spacing: tuple[float, float, float] = SPACING) -> Volume:
    return Volume(np.asarray(array, np.float32), np.diag([*spacing, 1.0]))


def full_res_depth_mm(mask: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    return edt.edt(np.pad(mask, 1).astype(np.uint8), anisotropy=spacing)[1:-1, 1:-1, 1:-1]


def test_organ_view_of_an_empty_mask_is_none():
    shape = (20, 20, 10)
    assert location.organ_view(volume(np.zeros(shape)), np.zeros(shape, bool)) is None


def test_organ_view_volume_stride_and_border():
    shape = (40, 40, 24)
    organ = ball(shape, SPACING, (20.0, 20.0, 24.0), 12.0)
    view = location.organ_view(volume(np.zeros(shape)), organ)
    # a small organ is read at full resolution: the coarse organ is the organ itself
    assert view.stride == (1, 1, 1)
    assert view.spacing_mm == SPACING
    assert view.organ.sum() == organ.sum()
    assert view.organ_volume_mm3 == pytest.approx(organ.sum() * 2.0)
    # the ball's volume (4/3 pi r³ = 7238 mm³) within the voxelisation error
    assert view.organ_volume_mm3 == pytest.approx(4 / 3 * np.pi * 12.0**3, rel=0.05)
    assert not view.touches_border
    at_face = ball(shape, SPACING, (6.0, 20.0, 24.0), 12.0)  # cut by the i = 0 face
    assert location.organ_view(volume(np.zeros(shape)), at_face).touches_border
    # a large organ at 0.7 mm in-plane is strided to about 1.4 mm points (at most ~80k of them)
    big_spacing = (0.7, 0.7, 2.0)
    big_shape = (200, 200, 40)
    big = ball(big_shape, big_spacing, (70.0, 70.0, 40.0), 35.0)
    big_view = location.organ_view(volume(np.zeros(big_shape), big_spacing), big)
    assert big_view.stride == (2, 2, 1)
    assert big_view.spacing_mm == pytest.approx((1.4, 1.4, 2.0))
    assert big_view.organ.size <= 80_000 * 1.2
    # the organ volume is measured at full resolution, not on the coarse grid
    assert big_view.organ_volume_mm3 == pytest.approx(big.sum() * 0.7 * 0.7 * 2.0)


def test_depth_of_a_ball_is_its_radius_at_the_centre_and_falls_linearly():
    shape = (48, 48, 28)
    radius = 18.0
    centre = (24.0, 24.0, 28.0)  # voxel (24, 24, 14)
    view = location.organ_view(volume(np.zeros(shape)), ball(shape, SPACING, centre, radius))
    depth = location.depth_mm(view)
    i0, j0, k0 = (c - b.start for c, b in zip((24, 24, 14), view.box, strict=True))
    # the distance to the nearest outside voxel: the radius, within one (2 mm) slice
    assert depth.max() == pytest.approx(depth[i0, j0, k0])
    assert radius <= depth[i0, j0, k0] <= radius + 2.0
    # along x (1 mm voxels) the depth drops by 1 mm per voxel: R - d, within a voxel
    for d in (4, 8, 12, 16):
        assert depth[i0 + d, j0, k0] == pytest.approx(radius - d, abs=1.0)
    assert np.all(depth[~view.organ] == 0)
    assert np.all(depth[view.organ] >= 1.0)  # at least one voxel (the nearest in-plane step)


def test_border_room_is_the_distance_to_the_nearest_scan_face():
    shape = (30, 40, 20)
    organ = np.zeros(shape, bool)
    organ[2:12, 20:30, 5:10] = True
    view = location.organ_view(volume(np.zeros(shape)), organ)
    room = location.border_room_mm(view)
    assert room.shape == view.organ.shape
    # voxel (2, 25, 7): 2 voxels from the i = 0 face = 2 mm
    assert room[0, 5, 2] == pytest.approx(2.0)
    # voxel (11, 20, 5): i: min(11, 18) = 11 mm, j: min(20, 19) = 19 mm, k: min(5, 14) * 2 = 10 mm
    assert room[9, 0, 0] == pytest.approx(10.0)
    # voxel (11, 29, 9): i 11, j min(29, 10) = 10, k min(9, 10) * 2 = 18: 10 mm
    assert room[9, 9, 4] == pytest.approx(10.0)
    # voxel (6, 25, 9): i 6, j 14, k 18: 6 mm
    assert room[4, 5, 4] == pytest.approx(6.0)


def block_with_vessel(offset_hu: float = 0.0, vessel: bool = True) -> tuple[Volume, np.ndarray]:
    """A 40 x 40 x 10 organ block of ~50 HU with a 3-voxel-wide vessel (+200 HU) along z at
    i, j = 14..16 (axis at 15 mm, 15 mm)."""
    shape = (48, 48, 14)
    organ = np.zeros(shape, bool)
    organ[4:44, 4:44, 2:12] = True
    ct = np.where(organ, 50.0, -100.0) + offset_hu
    if vessel:
        ct[14:17, 14:17, :] += 200.0
    return volume(ct), organ


def test_vessel_clearance_is_the_distance_to_bright_voxels():
    ct, organ = block_with_vessel()
    view = location.organ_view(ct, organ)
    clearance = location.vessel_clearance_mm(view, margin_hu=40.0)
    i, j = np.meshgrid(np.arange(4, 44), np.arange(4, 44), indexing="ij")
    # in-plane distance (mm) from each voxel to the nearest vessel voxel (a 3 x 3 square)
    di = np.maximum(np.maximum(14 - i, i - 16), 0)
    dj = np.maximum(np.maximum(14 - j, j - 16), 0)
    expected = np.hypot(di, dj)
    middle = clearance[:, :, 5]  # a slice away from the block's ends
    inside_vessel = expected == 0
    assert np.all(middle[inside_vessel] == 0)
    # elsewhere: the geometric distance within about a voxel (the 1-voxel smoothing)
    assert np.abs(middle[~inside_vessel] - expected[~inside_vessel]).max() <= 1.5
    far = expected > 10
    assert np.median(middle[far] - expected[far]) == pytest.approx(0.0, abs=1.0)
    # the rule is relative to the organ's median: shifting all HU leaves the clearance unchanged
    shifted, _ = block_with_vessel(offset_hu=300.0)
    again = location.vessel_clearance_mm(location.organ_view(shifted, organ), margin_hu=40.0)
    np.testing.assert_allclose(again, clearance)
    # a margin above the vessel's contrast finds no vessel: infinite clearance
    assert np.all(np.isinf(location.vessel_clearance_mm(view, margin_hu=400.0)))
    flat, _ = block_with_vessel(vessel=False)
    assert np.all(np.isinf(location.vessel_clearance_mm(location.organ_view(flat, organ), 40.0)))


@pytest.mark.parametrize("flip", [False, True])
def test_head_region_is_the_patients_right_third(flip: bool):
    """+x (RAS) is the patient's right: the head is the right-most 35 % of the organ's x extent,
    wherever the array's i axis points."""
    shape = (60, 20, 10)
    organ = np.zeros(shape, bool)
    organ[10:50, 5:15, 2:8] = True  # i = 10..49
    affine = np.diag([-1.0 if flip else 1.0, 1.0, 2.0, 1.0])
    view = location.organ_view(Volume(np.zeros(shape, np.float32), affine), organ)
    head = location.head_region(view)
    columns = np.flatnonzero(head.any(axis=(1, 2))) + view.box[0].start
    # x = ±i: extent 39 mm, cut 13.65 mm in from the right-most column
    expected = np.arange(10, 24) if flip else np.arange(36, 50)
    np.testing.assert_array_equal(columns, expected)
    assert np.all(head <= view.organ)
    first = columns[0] - view.box[0].start  # a head column holds the whole organ section
    assert np.array_equal(head[first], view.organ[first])


def test_world_coordinate_applies_the_affine():
    shape = (12, 10, 8)
    organ = np.zeros(shape, bool)
    organ[2:9, 3:7, 1:6] = True
    angle = 0.3
    affine = np.eye(4)
    affine[:3, :3] = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    ) @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 3] = (-100.0, 40.0, 7.0)
    view = location.organ_view(Volume(np.zeros(shape, np.float32), affine), organ)
    for axis in range(3):
        world = location.world_coordinate(view, axis)
        assert world.shape == view.organ.shape
        i, j, k = 4, 2, 3  # coarse point = voxel (6, 5, 4)
        expected = (affine @ np.array([6.0, 5.0, 4.0, 1.0]))[axis]
        assert world[i, j, k] == pytest.approx(expected, abs=1e-4)


def test_pick_point_at_full_resolution_is_a_candidate_voxel_exactly():
    shape = (20, 20, 10)
    organ = np.zeros(shape, bool)
    organ[5:15, 5:15, 2:8] = True
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 3.0)
    view = location.organ_view(Volume(np.zeros(shape, np.float32), affine), organ)
    one = np.zeros(view.organ.shape, bool)
    one[3, 7, 2] = True  # voxel (8, 12, 4)
    point = location.pick_point(view, one, np.random.default_rng(0))
    np.testing.assert_allclose(point, (-10.0 + 8.0, 5.0 + 12.0, 3.0 + 8.0))
    # two candidates are equally likely: 400 draws, 200 ± 40 (4 SD) each
    two = one.copy()
    two[0, 0, 0] = True
    rng = np.random.default_rng(1)
    hits = sum(
        np.allclose(location.pick_point(view, two, rng), point) for _ in range(400)
    )
    assert 160 <= hits <= 240
    # seeded: the same seed gives the same point, other seeds spread over the candidates
    def seeded(seed: int) -> tuple[float, ...]:
        return tuple(location.pick_point(view, view.organ, np.random.default_rng(seed)))

    assert seeded(7) == seeded(7)
    assert len({seeded(seed) for seed in range(20)}) >= 15  # 600 candidates: few repeats


def test_picks_on_a_strided_view_stay_deep_inside_the_organ():
    spacing = (0.7, 0.7, 2.0)
    shape = (200, 200, 40)
    organ = ball(shape, spacing, (70.0, 70.0, 40.0), 35.0)
    view = location.organ_view(volume(np.zeros(shape), spacing), organ)
    assert view.stride == (2, 2, 1)
    margin_mm = 20.0
    candidates = location.depth_mm(view) >= margin_mm
    truth = full_res_depth_mm(organ, spacing)
    rng = np.random.default_rng(3)
    points = np.array([location.pick_point(view, candidates, rng) for _ in range(300)])
    voxels = np.rint(points / np.asarray(spacing)).astype(int)
    depths = truth[tuple(voxels.T)]
    # within a coarse cell's jitter (half a 1.4 mm cell per in-plane axis) of the margin
    assert depths.min() >= margin_mm - 1.5
    # the in-plane position is jittered within the cell; z (stride 1) stays on voxel centres
    assert np.abs(points[:, 0] / 0.7 - np.rint(points[:, 0] / 0.7)).max() > 0.1
    np.testing.assert_allclose(points[:, 2] / 2.0, np.rint(points[:, 2] / 2.0), atol=1e-9)
    # and they cover the allowed core (a 15 mm ball): both sides of the centre on every axis
    offsets = points - np.array([70.0, 70.0, 40.0])
    assert np.all(offsets.min(axis=0) < -5) and np.all(offsets.max(axis=0) > 5)


# ----------------------------------------------------------------------------- through the sampler


def liver_scan(vessel_hu: float) -> tuple[Volume, dict[str, np.ndarray], np.ndarray]:
    """A 26 mm-radius liver ball (60 HU, noise SD 10) crossed by a 3 mm-radius vessel along y
    through its centre; returns the scan, the masks and the vessel mask."""
    shape = (64, 64, 40)
    x, _, z = grid_mm(shape, SPACING)
    liver = ball(shape, SPACING, (32.0, 32.0, 40.0), 26.0)
    vessel = liver & ((x - 32) ** 2 + (z - 40) ** 2 <= 3.0**2)
    ct = np.where(liver, 60.0, -100.0) + np.random.default_rng(5).normal(0, 10, shape)
    ct[vessel] = vessel_hu
    return volume(ct), {"liver": liver.astype(np.uint8)}, vessel


def test_sampled_liver_centres_are_inside_deep_enough_and_clear_of_vessels():
    ct, masks, vessel = liver_scan(vessel_hu=200.0)
    liver = masks["liver"].astype(bool)
    depth = full_res_depth_mm(liver, SPACING)
    to_vessel = edt.edt((~vessel).astype(np.uint8), anisotropy=SPACING)
    margin = PROFILES["liver"].interior_margin_mm
    for seed in range(20):
        params = sample_params("liver", ct, masks, np.random.default_rng(seed), size_class="small")
        voxel = tuple(np.rint(np.asarray(params.center_mm) / SPACING).astype(int))
        assert liver[voxel]
        assert depth[voxel] >= margin
        # clear of the vessel by the tumor's radius (within the smoothing of one coarse voxel)
        assert to_vessel[voxel] >= 0.5 * params.diameter_mm - 1.0, seed
    # control: with the vessel at liver HU, centres do land that close to it
    ct, masks, _ = liver_scan(vessel_hu=60.0)
    close = 0
    for seed in range(20):
        params = sample_params("liver", ct, masks, np.random.default_rng(seed), size_class="small")
        voxel = tuple(np.rint(np.asarray(params.center_mm) / SPACING).astype(int))
        close += to_vessel[voxel] < 0.5 * params.diameter_mm - 1.0
    assert close >= 2


def test_sampling_is_seeded():
    ct, masks, _ = liver_scan(vessel_hu=200.0)
    a = sample_params("liver", ct, masks, np.random.default_rng(11), size_class="small")
    b = sample_params("liver", ct, masks, np.random.default_rng(11), size_class="small")
    c = sample_params("liver", ct, masks, np.random.default_rng(12), size_class="small")
    assert a.center_mm == b.center_mm and a.diameter_mm == b.diameter_mm
    assert a.center_mm != c.center_mm


def test_an_organ_without_room_raises_no_room():
    ct, _, _ = liver_scan(vessel_hu=200.0)
    shape = ct.shape
    tiny = np.zeros(shape, np.uint8)
    tiny[30:34, 30:34, 20:24] = 1  # 64 voxels x 2 mm³ = 128 mm³
    with pytest.raises(NoRoom, match="too small"):
        sample_params("liver", ct, {"liver": tiny}, np.random.default_rng(0), size_class="small")
    # a sheet of three 2 mm slices: 17 cm³, but no point 5 mm deep (the liver's interior margin)
    x, y, z = grid_mm(shape, SPACING)
    sheet = ((z >= 38) & (z <= 42) & (x > 5) & (x < 60) & (y > 5) & (y < 60)).astype(np.uint8)
    assert sheet.sum() * 2.0 > 15_000
    with pytest.raises(NoRoom, match=r"no valid location for a \d+ mm tumor in the liver"):
        sample_params("liver", ct, {"liver": sheet}, np.random.default_rng(0), size_class="small")
