"""Which preprocessed cases train, host synthetic tumors, or validate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tumorscale.data import PreprocessedCache
from tumorscale.errors import DatasetError
from tumorscale.train.config import TrainConfig

ALLOW_UNKNOWN_KEY = "data.allow_unknown_hosts"


@dataclass(frozen=True)
class CaseRoles:
    """host_organs: healthy case → the selected organs tumors may be synthesized in (None: all)."""

    real: tuple[str, ...]
    healthy: tuple[str, ...]
    validation: tuple[str, ...]
    synthetic: tuple[str, ...] = ()
    host_organs: Mapping[str, tuple[str, ...]] | None = field(default=None, hash=False)


def _status(cache: PreprocessedCache, case_id: str, organ: str) -> str:
    return cache.case_meta(case_id).get("tumor_status", {}).get(organ, "unknown")


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


def host_organs(cache: PreprocessedCache, case_id: str, config: TrainConfig) -> tuple[str, ...]:
    """The selected organs of `case_id` a synthetic tumor may go into: present and a confirmed
    control (lesion file, all zero); also of unknown status with `data.allow_unknown_hosts`."""
    allowed = ("control", "unknown") if config.data.allow_unknown_hosts else ("control",)
    return tuple(
        o
        for o in config.organs
        if cache.holds(case_id, o) and _status(cache, case_id, o) in allowed
    )


def _organ_states(cache: PreprocessedCache, case_id: str, organs: Sequence[str]) -> set[str]:
    return {_status(cache, case_id, o) for o in organs if cache.holds(case_id, o)}


def _unknown_only(cache: PreprocessedCache, ids: Sequence[str], config: TrainConfig) -> list[str]:
    """Cases no host by default that would host with `data.allow_unknown_hosts`."""
    return [c for c in ids if not host_organs(cache, c, config)
            and "unknown" in _organ_states(cache, c, config.organs)]  # fmt: skip


def _check_listed_hosts(cache: PreprocessedCache, ids: Sequence[str], config: TrainConfig) -> None:
    """Listed hosts need a selected organ to host in: refuse those with a tumor in it or (without
    the opt-in) of unknown status, naming them."""
    unknown = _unknown_only(cache, ids, config)
    if unknown and not config.data.allow_unknown_hosts:
        raise DatasetError(cache.root, f"data.healthy_cases: case(s) of unknown tumor status "
                           f"(no lesion file; an unannotated tumor may be there): {unknown[:5]}; "
                           f"set {ALLOW_UNKNOWN_KEY}=true to use them as hosts")  # fmt: skip
    positive = [c for c in ids if not host_organs(cache, c, config)
                and "positive" in _organ_states(cache, c, config.organs)]  # fmt: skip
    if positive:
        raise DatasetError(cache.root, f"data.healthy_cases: case(s) with a tumor in every "
                           f"selected organ they have cannot host one: {positive[:5]}")  # fmt: skip


def _no_cases_message(cache: PreprocessedCache, ids: Sequence[str], config: TrainConfig) -> str:
    message = "no training cases: no annotated case and no healthy host"
    unknown = [] if config.data.allow_unknown_hosts else _unknown_only(cache, ids, config)
    if unknown:
        message += (f"; {len(unknown)} case(s) are of unknown tumor status (no lesion file), "
                    f"hosts only with {ALLOW_UNKNOWN_KEY}=true")  # fmt: skip
    return message


def _healthy(
    cache: PreprocessedCache, config: TrainConfig, all_ids: Sequence[str]
) -> tuple[str, ...]:
    listed = config.data.healthy_cases
    if listed is None:
        return tuple(c for c in all_ids if host_organs(cache, c, config))
    healthy = _checked(cache, listed, "healthy")
    _check_listed_hosts(cache, healthy, config)
    return healthy


def case_roles(cache: PreprocessedCache, config: TrainConfig) -> CaseRoles:
    """Real = annotated (positive or control) for a selected organ; healthy = hosts for synthetic
    tumors: a selected organ that is a confirmed control (`host_organs`); validation = held out
    from both (default: a seeded share of the real cases)."""
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
    real = _checked(cache, real, "real")
    healthy = _healthy(cache, config, all_ids)
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
        raise DatasetError(cache.root, _no_cases_message(cache, all_ids, config))
    hosts = {c: host_organs(cache, c, config) for c in healthy}
    return CaseRoles(real, healthy, validation, synthetic, hosts)
