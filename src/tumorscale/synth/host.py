"""A scan prepared once for synthesis: per organ, what every tumor drawn in it needs.

Drawing a tumor needs the organ's masks, the union of the other structures near it (where a
tumor must not go), the scan's contrast phase and family-specific anatomy (a parenchymal organ's
depth map, a hollow organ's point cloud and centreline, the uterus' axes). A `Host` computes
each of these on first use and keeps it, so the second tumor in a scan costs only its own draw:
`synth` inserts several tumors per scan, and a training worker draws many patches per case.

The preparations describe the scan as it was when they were made; later tumors of the same call
still see the earlier ones, because applying a tumor reads the live arrays (`apply.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import numpy as np

from tumorscale.io import Volume
from tumorscale.synth.phase import PhaseEstimate, estimate_scan_phase

T = TypeVar("T")


def organ_mask_names(organ: str, masks: Mapping[str, np.ndarray]) -> tuple[str, ...]:
    """The mask files that make up `organ` in `masks` (kidney: 'kidney' or left + right)."""
    from tumorscale.organs import ORGANS

    entry = ORGANS[organ]
    whole = tuple(name for name in entry.mask_files if name in masks)
    return whole or tuple(name for name in entry.mask_part_files if name in masks)


class _LazyPhase:
    """A scan's contrast phase, estimated on first use (or given). Shared by a `Host` and its
    `OrganHost`s, and nothing here points back at them: no reference cycles, so a scan's arrays
    are freed as soon as the caller lets go of it (cycles wait for the garbage collector, and a
    data loader or benchmark then holds gigabytes of old scans)."""

    def __init__(self, ct: Volume, masks: Mapping[str, np.ndarray], phase: PhaseEstimate | None):
        self._ct, self._masks, self._phase = ct, masks, phase

    def get(self) -> PhaseEstimate:
        if self._phase is None:
            self._phase = estimate_scan_phase(np.asarray(self._ct.array), self._masks)
            self._ct = self._masks = None  # type: ignore[assignment]
        return self._phase


class OrganHost:
    """One organ of a prepared scan. `prepared(key, make)` memoises family-specific anatomy
    (which must not keep a reference to this object: see `_LazyPhase`)."""

    def __init__(
        self, ct: Volume, masks: Mapping[str, np.ndarray], organ: str, phase: _LazyPhase
    ) -> None:
        self.ct = ct
        self.masks = masks
        self.organ = organ
        self.names = organ_mask_names(organ, masks)
        self._phase = phase
        self._memo: dict[str, object] = {}

    @property
    def phase(self) -> PhaseEstimate:
        return self._phase.get()

    def prepared(self, key: str, make: Callable[[], T]) -> T:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]  # type: ignore[return-value]


class Host:
    """A scan (canonical `ct` in HU, full-volume `masks`) prepared for drawing tumors."""

    def __init__(
        self, ct: Volume, masks: Mapping[str, np.ndarray], phase: PhaseEstimate | None = None
    ) -> None:
        """`phase`: the scan's phase when known (estimated on the whole scan, e.g. at
        preprocessing); by default it is estimated here, on first use, from `ct` and `masks`."""
        self.ct = ct
        self.masks = masks
        self._organs: dict[str, OrganHost] = {}
        self._phase = _LazyPhase(ct, masks, phase)

    def organ(self, organ: str) -> OrganHost:
        if organ not in self._organs:
            self._organs[organ] = OrganHost(self.ct, self.masks, organ, self._phase)
        return self._organs[organ]

    @property
    def phase(self) -> PhaseEstimate:
        """The scan's contrast phase, estimated once from organ (and aorta) HU."""
        return self._phase.get()


def union_of_others(
    masks: Mapping[str, np.ndarray], names: tuple[str, ...], box: tuple[slice, ...],
    offset: tuple[int, ...] = (0, 0, 0),
) -> np.ndarray:
    """Union (bool) of every mask not in `names` on the voxel box `box`, given relative to
    `offset`. Computed per call on small boxes only: a union over a whole organ's box costs
    more than all the crops a tumor is built in."""
    shifted = tuple(slice(b.start + o, b.stop + o) for b, o in zip(box, offset, strict=True))
    shape = tuple(b.stop - b.start for b in shifted)
    union = np.zeros(shape, dtype=bool)
    for name, array in masks.items():
        if name not in names:
            np.logical_or(union, array[shifted], out=union)  # in place: no temporary per mask
    return union
