"""Drawing a tumor's parameter record (the random step): size class, seed, family, record.

`sample_params` returns a `TumorParams` (everything `apply_tumor` needs, no arrays) or raises
`NoRoom(reason)` when the organ has no place for it. The family's sampler does the drawing
(`families.py`); a prepared `Host` may be passed so that a scan's anatomy is computed once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tumorscale.io import Volume
from tumorscale.sizes import SIZE_CLASS_NAMES
from tumorscale.synth.draws import SizeMix, draw_size_class
from tumorscale.synth.families import SYNTH_ORGANS, choose_family
from tumorscale.synth.host import Host
from tumorscale.synth.types import DEFAULT_SIZE_MIX, NoRoom, TumorParams


def sample_params(
    organ: str,
    ct: Volume,
    masks: Mapping[str, np.ndarray],
    rng: np.random.Generator,
    size_class: str | None = None,
    size_mix: SizeMix = DEFAULT_SIZE_MIX,
    kind: str | None = None,
    *,
    host: Host | None = None,
) -> TumorParams:
    """Draw one tumor for `organ` on canonical `ct` with full-volume `masks` (or on `host`, the
    same scan prepared earlier). Raises `NoRoom` when it cannot be placed (missing, empty or tiny
    organ, no room, organ at the border), ValueError on a bad argument."""
    if organ not in SYNTH_ORGANS:
        raise ValueError(f"unknown tumor organ {organ!r}; choose from {', '.join(SYNTH_ORGANS)}")
    if size_class is None:
        size_class = draw_size_class(rng, size_mix)
    elif size_class not in SIZE_CLASS_NAMES:
        names = ", ".join(SIZE_CLASS_NAMES)
        raise ValueError(f"size_class must be one of {names}; got {size_class!r}")
    seed = int(rng.integers(2**31))
    host = host if host is not None else Host(ct, masks)
    _check_shapes(host, organ)
    organ_host = host.organ(organ)
    if not organ_host.names:
        raise NoRoom(f"no {organ} mask")
    family = choose_family(organ, size_class, kind, rng)
    return family.sample(organ_host, rng, size_class, kind, seed)


def _check_shapes(host: Host, organ: str) -> None:
    for name, mask in host.masks.items():
        if np.shape(mask) != host.ct.shape:
            raise ValueError(
                f"{organ}: mask {name!r} has shape {np.shape(mask)}, the CT {host.ct.shape}"
            )
