"""Patch sampling: a pure function of (seed, rank, index); foreground share; pool mixing."""

from __future__ import annotations

import numpy as np
import pytest

from tests.data.conftest import PATCH, PhantomCache
from tumorscale.data import structure_mask
from tumorscale.data.sampling import (
    CasePools,
    PatchSampler,
    centred_start,
    choose_case,
    random_start,
    sample_rng,
    synthetic_probability,
)

TUMORS = ("pancreas_lesion", "kidney_lesion", "liver_lesion")


def test_sample_rng_depends_on_seed_rank_and_index_only() -> None:
    assert sample_rng(1, 0, 5).random() == sample_rng(1, 0, 5).random()
    draws = {sample_rng(*key).random() for key in [(1, 0, 5), (2, 0, 5), (1, 1, 5), (1, 0, 6)]}
    assert len(draws) == 4


def test_starts_keep_patch_inside_and_centre_voxel_in_patch() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        start = np.array(random_start(rng, (60, 40, 20), (32, 32, 32)))
        assert np.all(start[:2] >= 0) and np.all(start[:2] + 32 <= (60, 40))
        assert -12 <= start[2] <= 0  # a too-small axis: the volume lies inside the patch
    assert centred_start((30, 2, 59), (60, 60, 60), (32, 32, 32)) == (14, 0, 28)


def test_mixing_ratio_three_to_one() -> None:
    pools = CasePools(("r1", "r2"), ("h1", "h2", "h3"), frozenset({"h1", "h2", "h3"}))
    assert synthetic_probability(pools, 3.0) == 0.75
    choices = [choose_case(sample_rng(0, 0, k), pools, 3.0) for k in range(4000)]
    share = np.mean([c.synthetic for c in choices])
    assert abs(share - 0.75) < 0.025  # binomial SD 0.007
    assert all(c.synthesize == c.synthetic for c in choices)
    assert synthetic_probability(CasePools((), ("h1",)), 3.0) == 1.0
    assert synthetic_probability(CasePools(("r1",), ()), 3.0) == 0.0
    with pytest.raises(ValueError, match="no cases"):
        CasePools((), ())


def test_foreground_oversampling_rate(phantom_cache: PhantomCache) -> None:
    cache = phantom_cache.cache
    sampler = PatchSampler(cache, TUMORS, PATCH, foreground_fraction=1 / 3)
    case = phantom_cache.real[0]
    assert len(sampler.present_classes(case)) == 1
    n = 1500
    centred = 0
    for k in range(n):
        start, name = sampler.patch_start(sample_rng(7, 0, k), case)
        if name is not None:
            centred += 1
            _, bits = cache.read_patch(case, start, PATCH)
            assert structure_mask(bits, name).any()  # the tumor is in the patch
    assert abs(centred / n - 1 / 3) < 0.04  # binomial SD 0.012
    # A control case has no tumor class: every patch is random.
    healthy = phantom_cache.healthy[0]
    assert all(sampler.patch_start(sample_rng(7, 0, k), healthy)[1] is None for k in range(50))
