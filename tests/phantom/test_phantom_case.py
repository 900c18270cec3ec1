"""Generated phantoms in memory: intensities, anatomy, lesions, orientation, noise, styles."""

from __future__ import annotations

import cc3d
import numpy as np
import pytest
from scipy import ndimage

from tumorscale.io import Volume
from tumorscale.organs import ORGANS
from tumorscale.phantom import PhantomCase, PhantomOptions, generate_phantom

COARSE = PhantomOptions(inplane_spacing_mm=(2.0, 2.5), slice_spacing_mm=(3.0, 5.0))
SEED = 11

# Median HU of each organ mask in the portal-venous ("standard") style, partial volume included.
EXPECTED_MEDIAN_HU = {
    "liver": (95, 125), "spleen": (105, 135), "pancreas": (85, 115), "kidney_left": (125, 170),
    "kidney_right": (125, 170), "aorta": (135, 195), "postcava": (130, 180),
    "portal_vein_and_splenic_vein": (125, 190), "hepatic_vessel": (135, 185), "bladder": (-5, 25),
    "uterus": (80, 115), "esophagus": (25, 95),
}
ORGAN_FILES = ("liver", "pancreas", "kidney_left", "kidney_right", "colon", "esophagus", "spleen",
               "stomach", "aorta", "postcava", "portal_vein_and_splenic_vein", "hepatic_vessel",
               "bladder")


def _options(**changes) -> PhantomOptions:
    return PhantomOptions(**{**COARSE.__dict__, **changes})


@pytest.fixture(scope="module")
def tumor_cases() -> list[PhantomCase]:
    """Eight coarse cases, every one with tumors (all six organs allowed)."""
    return [generate_phantom(SEED, index, _options(tumor_fraction=1.0)) for index in range(1, 9)]


@pytest.fixture(scope="module")
def control_cases() -> list[PhantomCase]:
    return [generate_phantom(SEED, index, _options(tumor_fraction=0.0)) for index in range(1, 5)]


def canonical(case: PhantomCase, name: str | None = None) -> np.ndarray:
    """The CT (name None) or a mask in RAS order."""
    array = case.ct.array if name is None else case.masks[name]
    return Volume(array, case.ct.affine).to_canonical().array


def centroid_mm(case: PhantomCase, name: str) -> np.ndarray:
    """World (RAS mm) centroid of a mask, computed from the written orientation's affine."""
    voxels = np.argwhere(case.masks[name] > 0)
    return (voxels @ case.ct.affine[:3, :3].T + case.ct.affine[:3, 3]).mean(axis=0)


def body_mask(case: PhantomCase) -> np.ndarray:
    """Everything inside the skin: the largest air-free component, holes (bowel gas) filled."""
    ct = canonical(case)
    inside = cc3d.largest_k(ct > -500, k=1, connectivity=6) > 0
    return np.stack([ndimage.binary_fill_holes(inside[:, :, k]) for k in range(ct.shape[2])], -1)


def test_every_organ_mask_is_present_and_uterus_only_in_women(control_cases) -> None:
    sexes = set()
    for case in [*control_cases]:
        sexes.add(case.sex)
        expected = set(ORGAN_FILES) | {ORGANS[o].lesion_file for o in ORGANS if o != "uterus"}
        if case.sex == "F":
            expected |= {"uterus", "uterus_lesion"}
        assert set(case.masks) == expected
        for name in ORGAN_FILES + (("uterus",) if case.sex == "F" else ()):
            mask = case.masks[name]
            assert mask.dtype == np.uint8 and mask.shape == case.ct.shape
            assert set(np.unique(mask)) == {0, 1}, name
        assert case.ct.array.dtype == np.int16
    assert sexes == {"F", "M"}, "sex is drawn per case; these seeds give both"


def test_organ_intensities_are_portal_venous(control_cases) -> None:
    for case in control_cases:
        ct = case.ct.array
        for name, (low, high) in EXPECTED_MEDIAN_HU.items():
            if name in case.masks:
                median = float(np.median(ct[case.masks[name] > 0]))
                assert low <= median <= high, f"{case.case_id} {name} median {median}"
        outside = canonical(case)[:3, :3, :]  # corner of the field of view: air
        assert float(np.median(outside)) < -950
        # Hollow organs: a wall of soft tissue around gas (colon, stomach).
        for name in ("colon", "stomach"):
            values = ct[case.masks[name] > 0]
            assert np.mean(values < -800) > 0.05 and np.mean((values > 30) & (values < 120)) > 0.05


def test_tissue_classes_outside_the_written_masks(control_cases) -> None:
    case = control_cases[0]
    ct = canonical(case)
    body = body_mask(case)
    labelled = np.zeros_like(body)
    for name in case.masks:
        labelled |= canonical(case, name) > 0
    rest = ct[body & ~labelled]
    # Fat, muscle and bone are all there: peaks near -100 and +50 HU, and cortical bone.
    assert np.mean((rest > -130) & (rest < -70)) > 0.2
    assert np.mean((rest > 30) & (rest < 75)) > 0.08
    assert np.mean(rest > 600) > 0.001


def test_anatomy_sides_and_levels_in_world_coordinates(control_cases) -> None:
    orientations = {case.orientation for case in control_cases}
    assert len(orientations) >= 3, "orientation varies across cases"
    for case in control_cases:
        liver, spleen = centroid_mm(case, "liver"), centroid_mm(case, "spleen")
        # RAS: +x is the patient's right. The liver is on the right, the spleen on the left.
        assert spleen[0] < -20 < 20 < liver[0]
        assert centroid_mm(case, "kidney_left")[0] < 0 < centroid_mm(case, "kidney_right")[0]
        aorta, esophagus = centroid_mm(case, "aorta"), centroid_mm(case, "esophagus")
        assert esophagus[0] < aorta[0], "esophagus left of the aorta"
        assert esophagus[2] > centroid_mm(case, "pancreas")[2], "esophagus in the upper slices"
        assert centroid_mm(case, "bladder")[2] < centroid_mm(case, "kidney_left")[2] - 80
        assert centroid_mm(case, "aorta")[1] < centroid_mm(case, "pancreas")[1], "aorta behind"
        if case.sex == "F":
            assert centroid_mm(case, "uterus")[2] < centroid_mm(case, "colon")[2]


def test_orientation_changes_the_array_not_the_anatomy() -> None:
    ras = generate_phantom(SEED, 2, _options(orientations=("RAS",)))
    lps = generate_phantom(SEED, 2, _options(orientations=("LPS",)))
    assert ras.orientation == "RAS" and lps.orientation == "LPS"
    assert not np.array_equal(ras.ct.array, lps.ct.array)
    canonical_lps = lps.ct.to_canonical()
    assert np.array_equal(canonical_lps.array, ras.ct.array)
    assert np.allclose(canonical_lps.affine, ras.ct.affine)
    assert np.allclose(centroid_mm(ras, "liver"), centroid_mm(lps, "liver"), atol=1e-6)


def test_spacing_follows_the_options_and_shape_overrides_it() -> None:
    for index in range(1, 5):
        case = generate_phantom(SEED, index, _options(inplane_spacing_mm=(2.0, 2.4),
                                                      slice_spacing_mm=(3.0, 4.5)))
        spacing = sorted(Volume(case.ct.array, case.ct.affine).to_canonical().spacing)
        assert 2.0 <= spacing[0] <= spacing[1] <= 2.4 and 3.0 <= spacing[2] <= 4.5
    fixed = generate_phantom(SEED, 1, _options(shape=(64, 48, 40), orientations=("RAS",)))
    assert fixed.ct.shape == (64, 48, 40)
    assert fixed.ct.spacing[0] == pytest.approx(fixed.ct.spacing[1])
    assert fixed.masks["liver"].any()


def test_controls_have_all_zero_lesion_files(control_cases) -> None:
    for case in control_cases:
        assert case.tumors == ()
        lesion_files = [name for name in case.masks if name.endswith("_lesion")]
        assert len(lesion_files) == (6 if case.sex == "F" else 5)
        assert all(not case.masks[name].any() for name in lesion_files)
        assert set(case.record()["tumor_status"].values()) == {"control"}


def test_tumor_cases_label_their_tumors(tumor_cases) -> None:
    organs_seen = set()
    for case in tumor_cases:
        assert case.tumors, "tumor_fraction=1 gives every case a tumor"
        positive = {tumor.organ for tumor in case.tumors}
        organs_seen |= positive
        for organ in ORGANS:
            name = ORGANS[organ].lesion_file
            if name in case.masks:
                assert case.masks[name].any() == (organ in positive), (case.case_id, organ)
    assert len(organs_seen) >= 4


def test_lesions_stay_in_the_body_and_their_organ(tumor_cases) -> None:
    other_organs = ("liver", "spleen", "pancreas", "stomach", "colon", "aorta", "postcava",
                    "portal_vein_and_splenic_vein", "bladder", "esophagus")
    kidney_seen = False
    for case in tumor_cases:
        body = body_mask(case)
        for organ in {tumor.organ for tumor in case.tumors}:
            lesion = canonical(case, ORGANS[organ].lesion_file) > 0
            assert not np.any(lesion & ~body), f"{case.case_id} {organ} lesion outside the body"
            if organ == "kidney":
                kidney_seen = True
                kidneys = (canonical(case, "kidney_left") | canonical(case, "kidney_right")) > 0
                assert np.any(lesion & kidneys)
                for other in other_organs:
                    assert not np.any(lesion & (canonical(case, other) > 0)), other
            else:
                assert not np.any(lesion & ~(canonical(case, organ) > 0)), f"{organ} ⊄ organ"
    assert kidney_seen


def test_exophytic_kidney_lesions_may_leave_the_kidney() -> None:
    options = _options(tumor_fraction=1.0, tumor_organs=("kidney",))
    outside_fraction = []
    for index in range(1, 9):
        case = generate_phantom(SEED, index, options)
        lesion = case.masks["kidney_lesion"] > 0
        kidneys = (case.masks["kidney_left"] | case.masks["kidney_right"]) > 0
        outside_fraction.append(np.mean(~kidneys[lesion]))
        if any(t.kind == "rcc" for t in case.tumors):
            assert outside_fraction[-1] == 0.0
    assert max(outside_fraction) > 0.15, "some kidney tumors are exophytic"


def _components(case: PhantomCase, organ: str) -> list[np.ndarray]:
    labels = cc3d.connected_components(case.masks[ORGANS[organ].lesion_file], connectivity=26)
    return [labels == value for value in range(1, int(labels.max()) + 1)]


def _world(case: PhantomCase, mask: np.ndarray) -> np.ndarray:
    return (np.argwhere(mask) @ case.ct.affine[:3, :3].T + case.ct.affine[:3, 3]).mean(axis=0)


@pytest.fixture(scope="module")
def contrast_cases() -> list[PhantomCase]:
    """Finer cases with pancreas or liver tumors, for contrast and size checks."""
    cases = []
    for organ, indices in (("pancreas", range(1, 6)), ("liver", range(1, 3))):
        options = PhantomOptions(inplane_spacing_mm=(1.4, 1.6), slice_spacing_mm=(2.0, 2.5),
                                 tumor_fraction=1.0, tumor_organs=(organ,))
        cases += [generate_phantom(SEED, index, options) for index in indices]
    return cases


def test_lesion_sizes_and_contrast_match_the_records(contrast_cases) -> None:
    checked = {"pancreas": 0, "liver": 0}
    for case in contrast_cases:
        voxel_mm3 = case.ct.voxel_volume_mm3
        ct = case.ct.array.astype(float)
        for organ in ("pancreas", "liver"):
            records = [t for t in case.tumors if t.organ == organ]
            if not records:
                continue
            components = _components(case, organ)
            assert len(components) == len(records), (case.case_id, organ)
            organ_mask = case.masks[organ] > 0
            lesion_all = case.masks[ORGANS[organ].lesion_file] > 0
            parenchyma = float(np.median(ct[organ_mask & ~lesion_all]))
            for record in records:
                component = min(components, key=lambda c: np.linalg.norm(
                    _world(case, c) - np.asarray(record.center_mm)))
                diameter = (6.0 * component.sum() * voxel_mm3 / np.pi) ** (1.0 / 3.0)
                assert diameter == pytest.approx(record.diameter_mm, rel=0.2), record
                contrast = float(np.median(ct[component])) - parenchyma
                assert contrast < 0, record
                if record.diameter_mm >= 14.0:
                    assert contrast == pytest.approx(record.contrast_hu, abs=12.0), record
                    checked[organ] += 1
    assert min(checked.values()) >= 2


def test_tumor_records_are_organ_appropriate(tumor_cases, contrast_cases) -> None:
    kinds = {"pancreas": {"pdac"}, "liver": {"metastasis"}, "kidney": {"rcc", "rcc_exophytic"},
             "colon": {"wall_thickening"}, "esophagus": {"wall_thickening"},
             "uterus": {"endometrial"}}
    for case in [*tumor_cases, *contrast_cases]:
        for record in case.tumors:
            assert record.kind in kinds[record.organ]
            assert 3.0 < record.diameter_mm < 90.0
            if record.organ in ("pancreas", "liver", "uterus", "kidney"):
                assert record.contrast_hu < -15, "hypodense"
            assert record.to_json()["center_mm"] == [round(v, 2) for v in record.center_mm]


def test_size_classes_are_covered() -> None:
    options = _options(tumor_fraction=1.0, inplane_spacing_mm=(4.0, 4.0),
                       slice_spacing_mm=(5.0, 5.0))
    diameters = [t.diameter_mm for index in range(1, 25)
                 for t in generate_phantom(SEED, index, options).tumors]
    small = sum(d < 20 for d in diameters)
    medium = sum(20 <= d <= 50 for d in diameters)
    large = sum(d > 50 for d in diameters)
    assert min(small, medium, large) >= 1, (small, medium, large)
    assert large <= 0.3 * len(diameters), "mostly small and medium"


def _homogeneous_sd(case: PhantomCase) -> float:
    """SD of the liver interior, away from its edges, vessels and lesions."""
    ct = canonical(case).astype(float)
    liver = canonical(case, "liver") > 0
    vessels = ndimage.binary_dilation(canonical(case, "hepatic_vessel") > 0, iterations=2)
    core = ndimage.binary_erosion(liver, iterations=2) & ~vessels
    return float(ct[core].std())


def test_noise_level_and_ood_style() -> None:
    standard = [generate_phantom(SEED, index, _options()) for index in (1, 2)]
    ood = [generate_phantom(SEED, index, _options(style="ood")) for index in (1, 2)]
    for case in standard + ood:
        assert _homogeneous_sd(case) == pytest.approx(case.noise_sd_hu, rel=0.25)
    for plain, shifted in zip(standard, ood, strict=True):
        assert _homogeneous_sd(shifted) > _homogeneous_sd(plain) + 8
        # Arterial-ish phase: brighter aorta, dimmer liver; thicker slices.
        aorta = np.median(shifted.ct.array[shifted.masks["aorta"] > 0])
        assert aorta > np.median(plain.ct.array[plain.masks["aorta"] > 0]) + 50
        assert np.median(shifted.ct.array[shifted.masks["liver"] > 0]) < 90
        assert sorted(shifted.ct.spacing)[2] >= 5.0 > 0
        assert shifted.record()["style"] == "ood"


def test_same_seed_same_case_different_seed_different_case() -> None:
    first = generate_phantom(SEED, 3, _options(tumor_fraction=1.0))
    again = generate_phantom(SEED, 3, _options(tumor_fraction=1.0))
    other = generate_phantom(SEED + 1, 3, _options(tumor_fraction=1.0))
    assert np.array_equal(first.ct.array, again.ct.array)
    assert first.tumors == again.tumors
    for name in first.masks:
        assert np.array_equal(first.masks[name], again.masks[name])
    assert first.ct.shape != other.ct.shape or not np.array_equal(first.ct.array, other.ct.array)


def test_anatomy_does_not_depend_on_the_tumor_fraction() -> None:
    with_tumors = generate_phantom(SEED, 4, _options(tumor_fraction=1.0))
    without = generate_phantom(SEED, 4, _options(tumor_fraction=0.0))
    assert with_tumors.ct.shape == without.ct.shape
    assert np.array_equal(with_tumors.masks["spleen"], without.masks["spleen"])


def test_bad_seed_or_index_is_refused() -> None:
    with pytest.raises(ValueError, match="seed"):
        generate_phantom(-1, 1, COARSE)
    with pytest.raises(ValueError, match="1-based"):
        generate_phantom(0, 0, COARSE)


def test_wall_thickening_is_soft_tissue_that_narrows_the_lumen() -> None:
    checked = colon_checked = 0
    for index in range(1, 5):
        options = _options(tumor_fraction=1.0, tumor_organs=("colon", "esophagus"))
        case = generate_phantom(SEED, index, options)
        healthy = generate_phantom(SEED, index, _options(tumor_fraction=0.0))
        for record in case.tumors:
            lesion = case.masks[ORGANS[record.organ].lesion_file] > 0
            values = case.ct.array[lesion]
            assert 25 <= np.median(values) <= 110, record
            assert np.mean(values < -500) < 0.05, "the tumor is solid, not gas"
            if record.organ == "colon":  # (the esophagus lumen is thinner than these voxels)
                # Where the healthy twin had gas in the lumen, the tumor now sits.
                was_lumen = (healthy.ct.array < -500) & (healthy.masks["colon"] > 0)
                assert np.count_nonzero(lesion & was_lumen) > 0, record
                colon_checked += 1
            # Wall thickening may push the organ outward: its mask grows with the tumor.
            assert case.masks[record.organ].sum() >= healthy.masks[record.organ].sum()
            checked += 1
    assert checked >= 5 and colon_checked >= 3
