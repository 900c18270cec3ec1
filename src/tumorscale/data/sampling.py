"""Deterministic patch sampling: which case, and where the patch goes.

Sample k of rank r is a pure function of (seed, r, k): its generator is
`np.random.default_rng([seed, rank, k])`, so any sample can be redrawn without the ones before it
(resume and worker sharding need nothing else). Per sample:

1. the pool: synthetic with probability ratio / (ratio + 1) (the paper's 3 gives 3/4), else real
   (when one pool is empty, the other one always);
2. a case uniformly within the pool;
3. the patch: with probability `foreground_fraction` (nnU-Net's 1/3) centred on a random indexed
   voxel of a tumor class present in the case (classes drawn uniformly, nnU-Net style), else at
   a uniformly random position inside the volume. Patches are clipped into the volume where the
   volume is larger than the patch (the chosen voxel stays inside), as nnU-Net does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tumorscale.data.cache import PreprocessedCache

Shape3 = tuple[int, int, int]


def sample_rng(seed: int, rank: int, index: int) -> np.random.Generator:
    """The generator of sample `index` of `rank`: everything random about a sample comes from it."""
    return np.random.default_rng([int(seed), int(rank), int(index)])


@dataclass(frozen=True)
class CasePools:
    """Case ids to sample from. `real`: annotated cases (incl. offline synthetic ones when those
    are not counted as synthetic); `synthetic`: cases counted against the synthetic share;
    `on_the_fly`: the subset of `synthetic` that gets a tumor synthesized per sample."""

    real: tuple[str, ...]
    synthetic: tuple[str, ...]
    on_the_fly: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.real and not self.synthetic:
            raise ValueError("no cases to sample from: give real and/or synthetic case ids")


@dataclass(frozen=True)
class CaseChoice:
    case_id: str
    synthetic: bool  # drawn from the synthetic pool
    synthesize: bool  # a healthy case: synthesize a tumor into this sample


def synthetic_probability(pools: CasePools, synthetic_ratio: float) -> float:
    """P(a sample comes from the synthetic pool): ratio / (ratio + 1), 0 or 1 with an empty pool."""
    if synthetic_ratio < 0:
        raise ValueError(f"synthetic_ratio must be >= 0; got {synthetic_ratio}")
    if not pools.synthetic:
        return 0.0
    if not pools.real:
        return 1.0
    return synthetic_ratio / (synthetic_ratio + 1.0)


def choose_case(rng: np.random.Generator, pools: CasePools, synthetic_ratio: float) -> CaseChoice:
    """Pick the pool, then a case uniformly within it (two draws, always)."""
    synthetic = bool(rng.random() < synthetic_probability(pools, synthetic_ratio))
    pool = pools.synthetic if synthetic else pools.real
    case_id = pool[int(rng.integers(len(pool)))]
    return CaseChoice(case_id, synthetic, case_id in pools.on_the_fly)


def random_start(rng: np.random.Generator, shape: Sequence[int], patch: Sequence[int]) -> Shape3:
    """Uniform patch start (voxels) with the patch inside the volume; a volume smaller than the
    patch along an axis gets a random position of the volume inside the (padded) patch."""
    start = []
    for n, p in zip(shape, patch, strict=True):
        low, high = min(0, n - p), max(0, n - p)
        start.append(int(rng.integers(low, high + 1)))
    return tuple(start)  # type: ignore[return-value]


def centred_start(centre: Sequence[int], shape: Sequence[int], patch: Sequence[int]) -> Shape3:
    """Start of the patch centred on voxel `centre`, clipped into the volume where it fits (the
    centre voxel always stays inside the patch)."""
    start = []
    for c, n, p in zip(centre, shape, patch, strict=True):
        low, high = min(0, n - p), max(0, n - p)
        start.append(int(np.clip(int(c) - p // 2, low, high)))
    return tuple(start)  # type: ignore[return-value]


class PatchSampler:
    """Chooses the case and the patch box of each sample (reads only the location index).

    tumor_classes: lesion structure names foreground patches are centred on ('pancreas_lesion').
    patch_size: voxels (i, j, k) of the cache grid.
    """

    def __init__(
        self,
        cache: PreprocessedCache,
        tumor_classes: Sequence[str],
        patch_size: Shape3,
        foreground_fraction: float = 1 / 3,
    ) -> None:
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction must be in [0, 1]; got {foreground_fraction}")
        self.cache = cache
        self.tumor_classes = tuple(tumor_classes)
        self.patch_size = tuple(int(v) for v in patch_size)
        self.foreground_fraction = float(foreground_fraction)
        self._present: dict[str, tuple[str, ...]] = {}

    def present_classes(self, case_id: str) -> tuple[str, ...]:
        """Tumor classes with at least one indexed voxel in the case (cached per process)."""
        if case_id not in self._present:
            self._present[case_id] = tuple(
                name for name in self.tumor_classes
                if len(self.cache.foreground_locations(case_id, name))
            )
        return self._present[case_id]

    def patch_start(self, rng: np.random.Generator, case_id: str) -> tuple[Shape3, str | None]:
        """(start voxel, the tumor class the patch is centred on or None for a random patch)."""
        shape = self.cache.image_shape(case_id)
        wants_foreground = rng.random() < self.foreground_fraction
        present = self.present_classes(case_id)
        if wants_foreground and present:
            name = present[int(rng.integers(len(present)))]
            locations = self.cache.foreground_locations(case_id, name)
            centre = locations[int(rng.integers(len(locations)))]
            return centred_start(centre, shape, self.patch_size), name
        return random_start(rng, shape, self.patch_size), None
