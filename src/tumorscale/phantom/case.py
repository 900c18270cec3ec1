"""One phantom case in memory: draw its parameters from (seed, index), render, reorient."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from tumorscale.io import Volume
from tumorscale.organs import ORGANS, TUMOR_ORGANS
from tumorscale.phantom.anatomy import build_anatomy
from tumorscale.phantom.lesions import LESION_INDEX, ReferenceTumor, plan_tumors
from tumorscale.phantom.options import PhantomOptions
from tumorscale.phantom.render import (
    ANATOMY_TO_RAS,
    Canvas,
    Grid,
    add_correlated_noise,
    to_int16_hu,
)
from tumorscale.phantom.tissues import MASK_FILES, STYLES, Tissue
from tumorscale.sizes import equivalent_diameter_mm


def case_id(index: int) -> str:
    """AbdomenAtlas case id of a 1-based index: 1 -> BDMAP_00000001."""
    return f"BDMAP_{index:08d}"


class CaseMasks(Mapping[str, np.ndarray]):
    """The case's masks by file name (without .nii.gz), made on access from the label maps.

    Every value is a uint8 0/1 array on the CT's grid (same orientation). Lesion files exist for
    each tumor organ the case has (all zero for controls); uterus files only for female cases.
    """

    def __init__(self, labels: np.ndarray, lesions: np.ndarray, affine: np.ndarray,
                 orientation: str, names: tuple[str, ...]) -> None:
        self._labels, self._lesions = labels, lesions
        self._affine, self._orientation, self._names = affine, orientation, names

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        if name in MASK_FILES:
            mask = self._labels == int(MASK_FILES[name])
        else:
            organ = name.removesuffix("_lesion")
            mask = self._lesions == LESION_INDEX[organ]
        volume = Volume(mask.view(np.uint8), self._affine).reoriented(self._orientation)
        return volume.array

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


@dataclass(frozen=True)
class PhantomCase:
    """A generated case: CT (int16 HU, in its written orientation), masks, and what went in."""

    case_id: str
    index: int
    seed: int
    sex: str
    style: str
    ct: Volume
    masks: CaseMasks = field(repr=False)
    tumors: tuple[ReferenceTumor, ...]
    noise_sd_hu: float
    hu: dict[str, float] = field(repr=False)

    @property
    def orientation(self) -> str:
        return self.ct.orientation

    def record(self) -> dict:
        """The manifest entry of this case (JSON-ready)."""
        positive = {t.organ for t in self.tumors}
        organs = [o for o in TUMOR_ORGANS if ORGANS[o].lesion_file in self.masks]
        return {
            "case_id": self.case_id,
            "index": self.index,
            "seed": self.seed,
            "sex": self.sex,
            "style": self.style,
            "orientation": self.orientation,
            "shape": list(self.ct.shape),
            "spacing_mm": [round(v, 4) for v in self.ct.spacing],
            "noise_sd_hu": round(self.noise_sd_hu, 2),
            "tumor_status": {o: "positive" if o in positive else "control" for o in organs},
            "tumors": [t.to_json() for t in self.tumors],
        }


def _check_seed_index(seed: int, index: int) -> None:
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    if not isinstance(index, int | np.integer) or index < 1:
        raise ValueError(f"case index is 1-based; got {index!r}")


def generate_phantom(seed: int, index: int, options: PhantomOptions | None = None) -> PhantomCase:
    """Generate case `index` (1-based) of the cohort with `seed`, in memory.

    Case k depends only on (seed, k) and the options, never on how many cases are made.
    Independent random streams for the case draw (sex, HU), anatomy, grid, tumors and noise keep
    e.g. the anatomy unchanged when only the tumor fraction or the spacing changes.
    """
    options = options or PhantomOptions()
    _check_seed_index(seed, index)
    streams = np.random.SeedSequence([int(seed), int(index)]).spawn(5)
    case_rng, anatomy_rng, grid_rng, tumor_rng, noise_rng = (
        np.random.default_rng(s) for s in streams
    )
    style = STYLES[options.style]
    sex = "F" if case_rng.random() < options.female_fraction else "M"
    hu_table = {name: float(case_rng.uniform(*bounds)) for name, bounds in style.hu_ranges.items()}
    noise_range = options.noise_sd_hu or style.noise_sd_hu
    noise_sd = float(case_rng.uniform(*noise_range))
    grain_mm = float(case_rng.uniform(*style.noise_grain_mm))

    anatomy = build_anatomy(anatomy_rng, sex, hu_table)
    margin = np.array([options.fov_margin_mm, options.fov_margin_mm, 0.0])
    low, high = anatomy.field_of_view[0] - margin, anatomy.field_of_view[1] + margin
    if options.shape is not None:
        # Square pixels that fit the body in the fixed matrix; slices cover the z range.
        extent = (high - low) / np.asarray(options.shape)
        inplane = round(float(max(extent[0], extent[1])), 4)
        spacing = (inplane, inplane, round(float(extent[2]), 4))
        grid = Grid.covering(low, high, spacing, options.shape)
    else:
        inplane = round(float(grid_rng.uniform(*options.inplane_spacing_mm)), 3)
        slice_low, slice_high = options.slice_spacing_mm
        if style.thick_slices:
            slice_low, slice_high = slice_high, 1.6 * slice_high
        thickness = round(float(grid_rng.uniform(slice_low, slice_high)), 3)
        grid = Grid.covering(low, high, (inplane, inplane, thickness))

    canvas = Canvas.empty(grid, hu_table["air"])
    for layer in anatomy.layers:
        canvas.paint(layer, hu_table)
    planned = plan_tumors(tumor_rng, anatomy, hu_table, float(options.tumor_fraction),
                          options.tumor_organs)
    tumors = []
    for tumor in planned:
        layer = tumor.layer()
        # The record's size is the lesion as placed here (clipped by neighbours and the field of
        # view), measured finer than the voxel grid.
        step = float(np.clip(tumor.record.diameter_mm / 30.0, 0.3, 1.0))
        placed = equivalent_diameter_mm(canvas.placed_volume_mm3(layer, step))
        if canvas.paint(layer, hu_table):
            center_ras = tuple(float(v) for v in (ANATOMY_TO_RAS[:3, :3] @ tumor.record.center_mm))
            tumors.append(replace(tumor.record, diameter_mm=placed, center_mm=center_ras))
        # A lesion clipped away entirely is not a tumor: no record.
    add_correlated_noise(canvas.ct, noise_rng, noise_sd, grain_mm, grid.spacing)
    ct_ras = Volume(to_int16_hu(canvas.ct), grid.affine)
    orientation = options.orientations[(index - 1) % len(options.orientations)]
    ct = ct_ras.reoriented(orientation)

    names = [name for name, tissue in MASK_FILES.items() if tissue != Tissue.UTERUS or sex == "F"]
    names += [ORGANS[o].lesion_file for o in TUMOR_ORGANS if o != "uterus" or sex == "F"]
    masks = CaseMasks(canvas.labels, canvas.lesions, grid.affine, orientation, tuple(names))
    return PhantomCase(case_id(index), int(index), int(seed), sex, options.style, ct, masks,
                       tuple(tumors), noise_sd, hu_table)
