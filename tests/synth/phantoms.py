"""Phantom scans for the synthesizer tests: a canonical CT and its organ masks (no lesions)."""

from __future__ import annotations

import numpy as np

from tumorscale.io import Volume
from tumorscale.phantom import PhantomOptions, generate_phantom


def load_phantom(
    inplane: float = 1.5,
    slices: float = 2.5,
    seed: int = 0,
    orientation: str = "LPS",
    boolean: bool = False,
) -> tuple[Volume, dict[str, np.ndarray]]:
    """A female phantom without tumors as the synthesizer sees it: RAS CT (keeping its on-disk
    geometry as `source`) and masks on the same grid (uint8, or bool with `boolean=True`)."""
    options = PhantomOptions(
        inplane_spacing_mm=(inplane, inplane),
        slice_spacing_mm=(slices, slices),
        tumor_fraction=0.0,
        female_fraction=1.0,
        orientations=(orientation,),
    )
    case = generate_phantom(seed, 1, options)
    ct = Volume(case.ct.array, case.ct.affine, case.ct.geometry).to_canonical()
    masks = {}
    for name, array in case.masks.items():
        if not name.endswith("_lesion"):
            mask = Volume(array, case.ct.affine).to_canonical().array
            masks[name] = mask.astype(bool) if boolean else mask
    return ct, masks
