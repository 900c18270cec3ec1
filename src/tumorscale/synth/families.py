"""The tumor families by organ and kind: which synthesizer draws and builds a record.

parenchymal (liver, pancreas, kidney), wall thickening (colon, esophagus), polyp (colon), uterus.
Each family is a `TumorFamily` record (`types.py`) defined in its own module.
"""

from __future__ import annotations

import numpy as np

from tumorscale.synth import parenchymal, polyp, uterus, wall
from tumorscale.synth.hollow import PROFILES as HOLLOW_PROFILES
from tumorscale.synth.profiles import SYNTH_ORGANS
from tumorscale.synth.types import TumorFamily, TumorParams

FAMILIES: tuple[TumorFamily, ...] = (parenchymal.FAMILY, wall.FAMILY, polyp.FAMILY, uterus.FAMILY)


def families_for(organ: str) -> tuple[TumorFamily, ...]:
    found = tuple(family for family in FAMILIES if organ in family.organs)
    if not found:
        raise ValueError(f"unknown tumor organ {organ!r}; choose from {', '.join(SYNTH_ORGANS)}")
    return found


def kinds_for(organ: str) -> tuple[str, ...]:
    """Every tumor kind the synthesizer knows for `organ`."""
    if organ in parenchymal.PROFILES:
        return tuple(kind.name for kind in parenchymal.PROFILES[organ].kinds)
    if organ == "esophagus":
        return ("wall_thickening",)
    return tuple(kind for family in families_for(organ) for kind in family.kinds)


def family_of(params: TumorParams) -> TumorFamily:
    """The family that builds a record (by its organ and kind)."""
    for family in families_for(params.organ):
        if params.kind in family.kinds:
            return family
    raise ValueError(
        f"no tumor shape for a {params.organ} {params.kind!r}; "
        f"known kinds: {', '.join(kinds_for(params.organ))}"
    )


def choose_family(
    organ: str, size_class: str, kind: str | None, rng: np.random.Generator
) -> TumorFamily:
    """The family to draw from: the one of `kind`, else the organ's (colon: polyp or wall
    thickening by the size class's polyp share; one draw for hollow organs either way)."""
    families = families_for(organ)
    if organ in HOLLOW_PROFILES:
        draw = rng.random()
        if kind is None:
            kind = "polyp" if draw < HOLLOW_PROFILES[organ].polyp[size_class] else "wall_thickening"
    if kind is not None:
        if kind not in kinds_for(organ):
            raise ValueError(
                f"unknown {organ} tumor kind {kind!r}; choose from {', '.join(kinds_for(organ))}"
            )
        return next(family for family in families if kind in family.kinds)
    return families[0]


def max_reach_mm(organ: str, size_class: str) -> float:
    """Upper bound (mm) of any tumor's reach from its centre in `organ` for a size class."""
    return max(family.max_reach_mm(organ, size_class) for family in families_for(organ))
