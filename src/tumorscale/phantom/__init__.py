"""Procedural abdominal CT phantoms in AbdomenAtlas layout, with an independent lesion model.

    from tumorscale.phantom import PhantomOptions, generate_phantom, write_cohort
    write_cohort(Path("phantoms"), cases=8, seed=0, options=PhantomOptions(tumor_fraction=0.5))

Modules: `geometry` (implicit shapes in mm), `tissues` (labels, HU per style), `anatomy` (per-case
layout), `render` (partial-volume painting, correlated noise), `lesions` (reference tumors),
`case` (one case in memory), `cohort` (writing a cohort, resumable).
"""

from tumorscale.phantom.case import CaseMasks, PhantomCase, case_id, generate_phantom
from tumorscale.phantom.cohort import COMPLETE_MARKER, MANIFEST_NAME, write_cohort
from tumorscale.phantom.lesions import ReferenceTumor
from tumorscale.phantom.options import DEFAULT_ORIENTATIONS, PhantomOptions
from tumorscale.phantom.tissues import MASK_FILES, STYLES

__all__ = [
    "COMPLETE_MARKER",
    "DEFAULT_ORIENTATIONS",
    "MANIFEST_NAME",
    "MASK_FILES",
    "STYLES",
    "CaseMasks",
    "PhantomCase",
    "PhantomOptions",
    "ReferenceTumor",
    "case_id",
    "generate_phantom",
    "write_cohort",
]
