"""Tumor synthesis for six organs: draw a record from an organ family, apply it in a crop.

    from tumorscale.synth import insert_tumors
    result = insert_tumors(ct, masks, "pancreas", np.random.default_rng(0), count=1)
    result.ct, result.tumor_mask, result.records

Modules: `types` (shared records: parameters, typed geometries, `NoRoom`, `TumorFamily`),
`host` (a scan prepared once for drawing), `families` (which family draws an organ / kind), one
module per family (`parenchymal`, `wall`, `polyp`, `uterus`; `hollow` is the anatomy wall and
polyp share), `profiles` (parenchymal profiles as data, with sources), `phase` and
`phase_contrast` (the scan's contrast phase and each kind's contrast in it), `location` (where a
parenchymal tumor goes), `draws` (random draws), `params` (drawing a record), `shape` (ellipsoid
geometry), `texture` (correlated random fields), `noise` (the scan's own noise), `intensity`
(HU added onto the scan), `mass_effect` (radial push), `reference` (the organ median contrast
is measured against), `apply` (the pure step), `insert` (draw + apply).

`apply_tumor` / `insert_tumors` return new arrays (untouched masks as read-only views);
`copy=False` writes into the caller's arrays instead (the data-loader fast path).
"""

from tumorscale.synth.apply import SynthesisResult, apply_tumor
from tumorscale.synth.batch import synthesize_dataset
from tumorscale.synth.draws import draw_size_class
from tumorscale.synth.families import FAMILIES, family_of, kinds_for, max_reach_mm
from tumorscale.synth.host import Host, organ_mask_names
from tumorscale.synth.insert import insert_tumors
from tumorscale.synth.params import sample_params
from tumorscale.synth.profiles import PROFILES, SYNTH_ORGANS, OrganProfile
from tumorscale.synth.types import (
    DEFAULT_SIZE_MIX,
    Crop,
    CropContext,
    EllipsoidGeometry,
    EndometrialGeometry,
    FibroidGeometry,
    NoRoom,
    PolypGeometry,
    ShapeBuilder,
    TumorFamily,
    TumorParams,
    TumorRecord,
    TumorShape,
    WallGeometry,
)

__all__ = [
    "DEFAULT_SIZE_MIX",
    "FAMILIES",
    "PROFILES",
    "SYNTH_ORGANS",
    "Crop",
    "CropContext",
    "EllipsoidGeometry",
    "EndometrialGeometry",
    "FibroidGeometry",
    "Host",
    "NoRoom",
    "OrganProfile",
    "PolypGeometry",
    "ShapeBuilder",
    "SynthesisResult",
    "TumorFamily",
    "TumorParams",
    "TumorRecord",
    "TumorShape",
    "WallGeometry",
    "apply_tumor",
    "draw_size_class",
    "family_of",
    "insert_tumors",
    "kinds_for",
    "max_reach_mm",
    "organ_mask_names",
    "sample_params",
    "synthesize_dataset",
]
