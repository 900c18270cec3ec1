"""Mass effect (`synth/mass_effect.py`): a voxel at normalised radius rho < E takes its value from
centre + offset * (1 - s * (1 - rho² / E²)); nothing changes at rho >= E. Checked exactly on a
linear image (trilinear interpolation reproduces it) and as edge displacements in mm."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq

from tumorscale.synth.mass_effect import push_image, push_mask, radial_push

STRENGTH = 0.3
EXTENT = 1.3
RADIUS_MM = 10.0


def offsets_mm(
    shape: tuple[int, int, int], centre: tuple[int, int, int], spacing: tuple[float, float, float]
) -> np.ndarray:
    """(3, *shape) offset of each voxel from `centre`, in mm."""
    index = np.indices(shape, dtype=np.float32)
    return np.stack([(index[a] - centre[a]) * spacing[a] for a in range(3)])


def setup(
    spacing: tuple[float, float, float] = (1.0, 1.0, 2.5),
    shape: tuple[int, int, int] = (36, 36, 16),
    centre: tuple[int, int, int] = (18, 18, 8),
):
    offset = offsets_mm(shape, centre, spacing)
    rho = np.sqrt((offset**2).sum(axis=0)) / RADIUS_MM
    return offset, rho, np.asarray(centre, np.float32)


def expected_output_radius(source_mm: float) -> float:
    """Where a feature at `source_mm` from the centre lands: d with d * factor(d) = source."""

    def law(d: float) -> float:
        rho = d / RADIUS_MM
        return d * (1 - STRENGTH * (1 - rho**2 / EXTENT**2)) - source_mm

    return brentq(law, 0.0, EXTENT * RADIUS_MM)


def test_no_push_is_the_identity():
    offset, rho, centre = setup()
    image = offset[0].copy()
    labels = (rho < 0.5).astype(np.uint8)
    for push in (
        radial_push(rho, centre, 0.0, EXTENT),
        radial_push(rho, centre, -0.2, EXTENT),
        radial_push(rho, centre, STRENGTH, 0.0),
        radial_push(None, centre, STRENGTH, EXTENT),
    ):
        assert push.empty
        out = push_image(image, push)
        assert out is not image  # a copy, equal to the input bit for bit
        np.testing.assert_array_equal(out, image)
        same, changed = push_mask(labels, push)
        assert same is labels and not changed


def test_push_follows_the_law_exactly_on_a_linear_image():
    offset, rho, centre = setup()
    spacing = np.array([1.0, 1.0, 2.5], np.float32)
    push = radial_push(rho, centre, STRENGTH, EXTENT)
    np.testing.assert_array_equal(push.flat_index, np.flatnonzero(rho < EXTENT))
    factor = 1.0 - STRENGTH * (1.0 - rho**2 / EXTENT**2)
    inside = rho < EXTENT
    for axis in range(3):
        image = (offset[axis] / spacing[axis] + centre[axis]).astype(np.float32)  # = the index
        out = push_image(image, push)
        # linear interpolation is exact on a linear image: the source index itself
        expected = np.where(inside, centre[axis] + (image - centre[axis]) * factor, image)
        np.testing.assert_allclose(out, expected, atol=2e-4)
        # nothing changes at rho >= E, bit for bit
        np.testing.assert_array_equal(out[~inside], image[~inside])
    # the push pulls values from nearer the centre (tissue moves out), most at the tumor
    # boundary region: at rho = 0.5 the source is 1 - 0.3 * (1 - 0.25 / 1.69) = 74 % as far
    assert factor[18 + 5, 18, 8] == pytest.approx(1 - 0.3 * (1 - 0.25 / 1.69), abs=1e-6)
    # deterministic: the same push twice gives the same arrays
    again = radial_push(rho, centre, STRENGTH, EXTENT)
    np.testing.assert_array_equal(again.source, push.source)
    np.testing.assert_array_equal(again.nearest, push.nearest)


def crossing_mm(profile: np.ndarray, position_mm: np.ndarray) -> float:
    """Where a decreasing profile crosses 0.5 (linear between samples)."""
    after = int(np.flatnonzero(profile <= 0.5)[0])
    a, b = profile[after - 1], profile[after]
    step = position_mm[after] - position_mm[after - 1]
    return float(position_mm[after - 1] + (a - 0.5) / (a - b) * step)


@pytest.mark.parametrize("axis", [0, 2])  # a 1 mm and a 2.5 mm axis
@pytest.mark.parametrize("edge_mm", [3.0, 6.0, 9.0])
def test_an_edge_moves_outward_by_the_expected_mm(axis: int, edge_mm: float):
    """A soft plane edge `edge_mm` from the centre, crossed along `axis`: after the push the
    edge sits where d * factor(d) = edge_mm, whatever the voxel size along that axis."""
    spacing = (1.0, 1.0, 2.5)
    offset, rho, centre = setup(spacing)
    ramp_mm = 14.0  # wide enough that interpolation near the edge sees a linear ramp
    push = radial_push(rho, centre, STRENGTH, EXTENT)
    line = [18, 18, 8]
    line[axis] = slice(None)
    position_mm = offset[axis][tuple(line)]
    expected = expected_output_radius(edge_mm)
    assert expected - edge_mm > 0.5  # outward, by 0.8-1.9 mm here
    for sign in (1.0, -1.0):  # the edge on either side moves away from the centre
        image = np.clip(0.5 - (sign * offset[axis] - edge_mm) / ramp_mm, 0.0, 1.0)
        out = push_image(image.astype(np.float32), push)
        profile = out[tuple(line)][:: int(sign)]
        before = crossing_mm(image[tuple(line)][:: int(sign)], sign * position_mm[:: int(sign)])
        after = crossing_mm(profile, sign * position_mm[:: int(sign)])
        assert before == pytest.approx(edge_mm, abs=1e-4)
        assert after == pytest.approx(expected, abs=0.15)


def test_push_mask_grows_a_labelled_ball_and_keeps_labels():
    spacing = (1.0, 1.0, 1.0)
    _, rho, centre = setup(spacing, shape=(40, 40, 40), centre=(20, 20, 20))
    distance = rho * RADIUS_MM
    labels = np.where(distance <= 6.0, 2, 1).astype(np.uint8)
    labels[:, :, :2] = 0  # far outside the push: never touched
    push = radial_push(rho, centre, STRENGTH, EXTENT)
    out, changed = push_mask(labels, push)
    assert changed
    assert set(np.unique(out)) == {0, 1, 2}  # nearest neighbour: labels stay labels
    # the 6 mm ball becomes a ball of the pushed radius (voxel count within 10 %)
    radius = expected_output_radius(6.0)
    assert radius == pytest.approx(7.50, abs=0.01)  # 7.5 x 0.8 = 6
    assert np.count_nonzero(out == 2) == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.1)
    assert np.count_nonzero(out == 2) > 1.4 * np.count_nonzero(labels == 2)
    outside = rho >= EXTENT
    np.testing.assert_array_equal(out[outside], labels[outside])
    # a mask the push cannot change is returned as is
    uniform = np.ones_like(labels)
    same, moved = push_mask(uniform, push)
    assert same is uniform and not moved


def test_skipped_voxels_keep_their_value_and_integer_scans_stay_integer():
    offset, rho, centre = setup()
    image = (offset[0] * 3.3 + 40.0).astype(np.float32)
    push = radial_push(rho, centre, STRENGTH, EXTENT)
    core = rho < 0.8
    out = push_image(image, push, skip=core)
    np.testing.assert_array_equal(out[core], image[core])
    ring = (rho >= 0.8) & (rho < EXTENT) & (np.abs(offset[0]) > 2)
    assert np.all(out[ring] != image[ring])
    whole = push_image(image, push, whole_numbers=True)
    moved = rho < EXTENT
    np.testing.assert_array_equal(whole[moved], np.rint(whole[moved]))
    np.testing.assert_allclose(whole[moved], push_image(image, push)[moved], atol=0.5)
