"""Tumor synthesis for six organs: draw a record from an organ profile, apply it in a crop.

    from tumorscale.synth import insert_tumors
    result = insert_tumors(ct, masks, "pancreas", np.random.default_rng(0), count=1)
    result.ct, result.tumor_mask, result.records

Modules: `types` (shared records), `profiles` (organ profiles as data, with sources),
`location` (where a tumor goes), `params` (drawing a record), `shape` (parenchymal shape),
`texture` (correlated random fields), `noise` (the scan's own noise for the tumor),
`intensity` (HU added onto the scan), `mass_effect` (radial push), `apply` (the pure step),
`insert` (draw + apply); `hollow` (colon, esophagus) and `uterus` build their organs' shapes.

`apply_tumor` / `insert_tumors` return new arrays (untouched masks as read-only views);
`copy=False` writes into the caller's arrays instead (the data-loader fast path).
"""

from tumorscale.synth.apply import SynthesisResult, apply_tumor
from tumorscale.synth.insert import insert_tumors
from tumorscale.synth.params import draw_size_class, organ_mask_names, sample_params
from tumorscale.synth.profiles import PROFILES, SYNTH_ORGANS, OrganProfile, kinds_of
from tumorscale.synth.types import (
    DEFAULT_SIZE_MIX,
    SIZE_CLASSES,
    Crop,
    CropContext,
    ShapeBuilder,
    TumorParams,
    TumorRecord,
    TumorShape,
)

__all__ = [
    "DEFAULT_SIZE_MIX",
    "PROFILES",
    "SIZE_CLASSES",
    "SYNTH_ORGANS",
    "Crop",
    "CropContext",
    "OrganProfile",
    "ShapeBuilder",
    "SynthesisResult",
    "TumorParams",
    "TumorRecord",
    "TumorShape",
    "apply_tumor",
    "draw_size_class",
    "insert_tumors",
    "kinds_of",
    "organ_mask_names",
    "sample_params",
]
