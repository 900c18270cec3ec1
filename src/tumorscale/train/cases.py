"""Which preprocessed cases train, host synthetic tumors, or validate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tumorscale.data import PreprocessedCache
from tumorscale.errors import DatasetError
from tumorscale.train.config import TrainConfig


@dataclass(frozen=True)
class CaseRoles:
    real: tuple[str, ...]
    healthy: tuple[str, ...]
    validation: tuple[str, ...]
    synthetic: tuple[str, ...] = ()


def _status(cache: PreprocessedCache, case_id: str, organ: str) -> str:
    return cache.case_meta(case_id).get("tumor_status", {}).get(organ, "unknown")


def _has_organ(cache: PreprocessedCache, case_id: str, organ: str) -> bool:
    return organ in cache.case_meta(case_id).get("structures", [])


def _checked(cache: PreprocessedCache, ids: Sequence[str], role: str) -> tuple[str, ...]:
    missing = sorted(set(ids) - set(cache.case_ids))
    if missing:
        raise DatasetError(cache.root, f"{role} case(s) not in the cache: {missing[:5]}")
    return tuple(ids)


def synthetic_case_ids(config: TrainConfig) -> tuple[str, ...]:
    """Ids of the offline synthetic cases (`data.synthetic`, from `tumorscale synth`)."""
    if not config.data.synthetic:
        return ()
    from tumorscale.atlas import index_dataset

    return tuple(case.case_id for case in index_dataset(config.data.synthetic, False).cases)


def case_roles(cache: PreprocessedCache, config: TrainConfig) -> CaseRoles:
    """Real = annotated (positive or control) for a selected organ; healthy = has a selected
    organ with no known tumor in it; validation = held out from both (default: a seeded share
    of the real cases)."""
    data, organs = config.data, config.organs
    synthetic = _checked(cache, synthetic_case_ids(config), "synthetic")
    all_ids = [c for c in cache.case_ids if c not in set(synthetic)]
    real = (
        data.real_cases
        if data.real_cases is not None
        else tuple(
            c
            for c in all_ids
            if any(_status(cache, c, o) in ("positive", "control") for o in organs)
        )
    )
    healthy = (
        data.healthy_cases
        if data.healthy_cases is not None
        else tuple(
            c
            for c in all_ids
            if any(_has_organ(cache, c, o) and _status(cache, c, o) != "positive" for o in organs)
        )
    )
    real = _checked(cache, real, "real")
    healthy = _checked(cache, healthy, "healthy")
    if data.validation_cases is not None:
        validation = _checked(cache, data.validation_cases, "validation")
    else:
        count = round(len(real) * data.validation_fraction)
        order = np.random.default_rng(config.seed).permutation(len(real))
        validation = tuple(sorted(real[i] for i in order[:count]))
    held_out = set(validation)
    real = tuple(c for c in real if c not in held_out)
    healthy = tuple(c for c in healthy if c not in held_out)
    if not real and not synthetic and not (healthy and config.synthesis.on_the_fly):
        raise DatasetError(cache.root, "no training cases: no annotated case and no healthy host")
    return CaseRoles(real, healthy, validation, synthetic)
