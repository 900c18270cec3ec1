"""Inserting tumors into one scan: draw each record, then apply it (the one-call entry point)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tumorscale.io import Volume
from tumorscale.synth.apply import Scene, SynthesisResult, apply_in_scene
from tumorscale.synth.draws import SizeMix
from tumorscale.synth.host import Host
from tumorscale.synth.params import sample_params
from tumorscale.synth.phase import PhaseEstimate
from tumorscale.synth.types import DEFAULT_SIZE_MIX, NoRoom, TumorRecord


def insert_tumors(
    ct: Volume,
    masks: Mapping[str, np.ndarray],
    organ: str,
    rng: np.random.Generator,
    count: int = 1,
    size_mix: SizeMix = DEFAULT_SIZE_MIX,
    kind: str | None = None,
    *,
    copy: bool = True,
    phase: PhaseEstimate | None = None,
) -> SynthesisResult:
    """Insert `count` tumors into `organ` of canonical `ct` (HU) with full-volume `masks`.

    One record per requested tumor, skipped ones carrying their reason. Later tumors see the
    earlier ones (they avoid them and push them). `copy=False` modifies the inputs in place.
    The scan is prepared once (`Host`) for all of them. `phase` is the scan's contrast phase
    when already known (a data loader passes the one estimated on the whole scan for a region).
    """
    if count < 0:
        raise ValueError(f"count must be >= 0; got {count}")
    scene = Scene(ct, masks, copy=copy)
    host = Host(scene.volume, scene.masks, phase)
    records: list[TumorRecord] = []
    for _ in range(count):
        try:
            params = sample_params(
                organ, scene.volume, scene.masks, rng, size_mix=size_mix, kind=kind, host=host
            )
        except NoRoom as why:
            records.append(TumorRecord(None, organ, skipped=why.reason))
        else:
            records.append(apply_in_scene(params, scene))
    return scene.result(records)
