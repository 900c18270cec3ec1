"""Inserting tumors into one scan: draw each record, then apply it (the one-call entry point)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tumorscale.io import Volume
from tumorscale.synth.apply import Scene, SynthesisResult, apply_in_scene
from tumorscale.synth.params import SizeMix, sample_params
from tumorscale.synth.types import DEFAULT_SIZE_MIX, TumorRecord


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
) -> SynthesisResult:
    """Insert `count` tumors into `organ` of canonical `ct` (HU) with full-volume `masks`.

    One record per requested tumor, skipped ones carrying their reason. Later tumors see the
    earlier ones (they avoid them and push them). `copy=False` modifies the inputs in place.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0; got {count}")
    scene = Scene(ct, masks, copy=copy)
    records: list[TumorRecord] = []
    for _ in range(count):
        params = sample_params(organ, scene.volume, scene.masks, rng, size_mix=size_mix, kind=kind)
        if isinstance(params, str):
            records.append(TumorRecord(None, organ, skipped=params))
        else:
            records.append(apply_in_scene(params, scene))
    return scene.result(records)
