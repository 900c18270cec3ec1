"""The training input stream: sampled, (synthesized,) augmented patches as torch tensors.

    config = PipelineConfig(cache_root="cache", real_case_ids=real, healthy_case_ids=healthy,
                            class_names=("background", "pancreas_lesion"))
    loader = make_loader(config, batch_size=2, num_workers=4)
    for batch in loader:  # {"image": (B, 1, X, Y, Z), "label": (B, X, Y, Z), "index", "synthetic"}
        train_step(batch)

Determinism, resume and workers. Sample k of a rank is a pure function of (seed, rank, k)
(`tumorscale.data.sampling.sample_rng`): case, patch, synthesis and augmentation all draw from
it. A stream yields samples start_index, start_index + 1, ... forever, so resuming after n consumed
samples is `start_index = n` and gives exactly the samples the uninterrupted stream would have.
With DataLoader workers, each worker builds whole batches and the loader takes them round-robin
(worker 0, 1, ..., n-1, 0, ...), so worker w makes the samples of batches b ≡ w (mod n) (blocks
of `batch_size` consecutive indices): the batches are identical for any number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from tumorscale.data.augment import AugmentSettings, augment, build_augmentation
from tumorscale.data.cache import LESION_STRUCTURES, PreprocessedCache
from tumorscale.data.labels import check_class_names, label_map, tumor_classes
from tumorscale.data.sampling import (
    CasePools,
    PatchSampler,
    Shape3,
    choose_case,
    sample_rng,
)
from tumorscale.data.synth_patch import synthesize_patch
from tumorscale.preprocessing import Preprocessing
from tumorscale.synth import DEFAULT_SIZE_MIX
from tumorscale.workers import die_with_parent

Sample = dict[str, object]


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a patch stream is made of (sizes in voxels of the cache grid).

    real_case_ids: annotated cases. healthy_case_ids: hosts for on-the-fly synthesis (with
    `on_the_fly=False` they are sampled as real tumor-free cases). offline_synthetic_case_ids:
    cases from `tumorscale synth` (their lesions are synthetic), counted as synthetic samples.
    synthetic_ratio: synthetic : real samples (3 = the paper's 3x; P(synthetic) = 3/4).
    synth_organs: organs tumors are synthesized in (default: the organs of the lesion classes).
    size_mix: small : medium : large synthetic tumors (the paper's 4:2:1).
    host_organs: healthy case → the organs tumors may be synthesized in (those of `organs()` it
    lists; a case not in it: none), e.g. only its confirmed controls (None: all, every case).
    preprocessing: the HU window and intensity range patches are read through (None: the
    cache's own; training passes its CT normalisation here).
    rank, world_size: this process's DDP rank (each rank draws its own stream).
    start_index: the first sample index (= samples already consumed, to resume).
    """

    cache_root: str | Path
    class_names: tuple[str, ...]
    real_case_ids: tuple[str, ...] = ()
    healthy_case_ids: tuple[str, ...] = ()
    offline_synthetic_case_ids: tuple[str, ...] = ()
    patch_size: Shape3 = (96, 96, 96)
    foreground_fraction: float = 1 / 3
    synthetic_ratio: float = 3.0
    on_the_fly: bool = True
    synth_organs: tuple[str, ...] | None = None
    size_mix: tuple[float, float, float] = DEFAULT_SIZE_MIX
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    preprocessing: Preprocessing | None = None
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    start_index: int = 0
    host_organs: Mapping[str, tuple[str, ...]] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", check_class_names(self.class_names))
        for name in ("real_case_ids", "healthy_case_ids", "offline_synthetic_case_ids"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "patch_size", tuple(int(v) for v in self.patch_size))
        if self.host_organs is not None:  # a plain dict: pickled into the loader workers
            hosts = {str(c): tuple(organs) for c, organs in self.host_organs.items()}
            object.__setattr__(self, "host_organs", hosts)
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be 3 positive voxel counts; got {self.patch_size}")
        if not 0 <= self.rank < self.world_size or self.start_index < 0:
            raise ValueError(f"need 0 <= rank < world_size and start_index >= 0; got rank "
                             f"{self.rank}, world_size {self.world_size}, start {self.start_index}")
        organs = self.organs()
        missing = [o for o in organs if LESION_STRUCTURES.get(o) not in self.class_names]
        if self.on_the_fly and self.healthy_case_ids and (missing or not organs):
            raise ValueError(f"synthesized tumors need their lesion class in class_names: "
                             f"{missing or 'no lesion class'} (classes {list(self.class_names)})")
        self.pools()  # raises on no cases at all

    def organs(self) -> tuple[str, ...]:
        """Organs tumors are synthesized in: `synth_organs`, else those of the lesion classes."""
        if self.synth_organs is not None:
            return tuple(self.synth_organs)
        lesions = tumor_classes(self.class_names)
        return tuple(o for o, lesion in LESION_STRUCTURES.items() if lesion in lesions)

    def case_organs(self, case_id: str) -> tuple[str, ...]:
        """Organs a tumor may be synthesized in for `case_id` (in `organs()` order)."""
        organs = self.organs()
        if self.host_organs is None:
            return organs
        allowed = self.host_organs.get(case_id, ())
        return tuple(o for o in organs if o in allowed)

    def pools(self) -> CasePools:
        """Real and synthetic case pools (see `tumorscale.data.sampling`)."""
        synthesize = self.on_the_fly and self.synthetic_ratio > 0
        real = self.real_case_ids + (() if synthesize else self.healthy_case_ids)
        synthetic = self.offline_synthetic_case_ids + (self.healthy_case_ids if synthesize else ())
        on_the_fly = frozenset(self.healthy_case_ids) if synthesize else frozenset()
        return CasePools(real, synthetic, on_the_fly)


class PatchMaker:
    """Makes sample k of a stream (one per process: holds the open cache and the transforms)."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.cache = PreprocessedCache.open(config.cache_root)
        if config.preprocessing is not None:
            self.cache = self.cache.with_preprocessing(config.preprocessing)
        self.pools = config.pools()
        self.sampler = PatchSampler(self.cache, tumor_classes(config.class_names),
                                    config.patch_size, config.foreground_fraction)
        # additive amounts are set for a window scaled to [0, 1]: rescaled to the one read through
        record = self.cache.settings.preprocessing
        self.transform = build_augmentation(
            config.augment.for_span(record.intensity_span, record.pad_value)
        )
        self.synth_skips = 0  # on-the-fly samples whose tumor the synthesizer could not place
        self.synth_count = 0

    def __call__(self, index: int) -> Sample:
        config = self.config
        rng = sample_rng(config.seed, config.rank, index)
        choice = choose_case(rng, self.pools, config.synthetic_ratio)
        if choice.synthesize:
            made = synthesize_patch(self.cache, choice.case_id, config.patch_size,
                                    config.case_organs(choice.case_id), rng, config.size_mix)
            image, bits = made.image, made.bits
            self.synth_count += 1
            self.synth_skips += made.skipped is not None
        else:
            start, _ = self.sampler.patch_start(rng, choice.case_id)
            image, bits = self.cache.read_patch(choice.case_id, start, config.patch_size)
        label = label_map(bits, config.class_names)
        image_t, label_t = augment(self.transform, image, label, int(rng.integers(2**31)))
        return {"image": image_t, "label": label_t, "index": index,
                "synthetic": choice.synthetic}


def _shard(start: int, block: int) -> Iterator[int]:
    """Sample indices of this DataLoader worker: blocks of `block` consecutive indices, block b
    handled by worker b mod n (the loader's round-robin order), all of them without workers."""
    info = get_worker_info()
    worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
    batch = worker
    while True:
        first = start + batch * block
        yield from range(first, first + block)
        batch += workers


class PatchStream(IterableDataset):
    """Infinite stream of training samples {"image": float32 (1, X, Y, Z), "label": int64
    (X, Y, Z), "index": int, "synthetic": bool} for one rank (see the module docstring).

    block: consecutive indices one worker makes in a row; must equal the DataLoader batch size
    for the worker-count-independent order (`make_loader` sets it).
    """

    def __init__(self, config: PipelineConfig, block: int = 1) -> None:
        super().__init__()
        if block < 1:
            raise ValueError(f"block must be >= 1; got {block}")
        self.config = config
        self.block = block
        self._maker: PatchMaker | None = None

    @property
    def maker(self) -> PatchMaker:
        if self._maker is None:  # built lazily: each worker opens its own cache handles
            self._maker = PatchMaker(self.config)
        return self._maker

    def sample(self, index: int) -> Sample:
        """Sample `index` of this rank's stream (a pure function of seed, rank and index)."""
        return self.maker(index)

    def __iter__(self) -> Iterator[Sample]:
        for index in _shard(self.config.start_index, self.block):
            yield self.maker(index)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_maker"] = None
        return state


class RandomPatches(IterableDataset):
    """No-data-loading stream (model speed without input cost): the same interface and shapes as
    `PatchStream`, cycling through `pool` random samples made once (uniform image in [0, 1],
    labels uniform over the classes)."""

    def __init__(self, config: PipelineConfig, block: int = 1, pool: int = 4) -> None:
        super().__init__()
        self.config = config
        self.block = block
        generator = torch.Generator().manual_seed(int(config.seed) * 1_000_003 + config.rank)
        shape = config.patch_size
        self.images = torch.rand((pool, 1, *shape), generator=generator)
        self.labels = torch.randint(0, len(config.class_names), (pool, *shape),
                                    generator=generator, dtype=torch.int64)

    def sample(self, index: int) -> Sample:
        slot = index % len(self.images)
        return {"image": self.images[slot], "label": self.labels[slot], "index": index,
                "synthetic": False}

    def __iter__(self) -> Iterator[Sample]:
        for index in _shard(self.config.start_index, self.block):
            yield self.sample(index)


def _init_worker(_: int) -> None:
    die_with_parent()  # a killed training run must not leave its loaders running
    # One thread per worker: the workers are the parallelism (no oversubscription).
    torch.set_num_threads(1)
    try:
        import blosc2

        blosc2.set_nthreads(1)
    except ImportError:  # pragma: no cover - blosc2 is a dependency
        pass


def make_loader(
    config: PipelineConfig,
    batch_size: int,
    num_workers: int = 0,
    prefetch_factor: int | None = 2,
    no_data_loading: bool = False,
) -> DataLoader:
    """A DataLoader over `PatchStream(config)` (or `RandomPatches` with `no_data_loading`):
    batches identical for any `num_workers`; pinned memory when CUDA is available; persistent
    workers."""
    dataset: IterableDataset = (RandomPatches(config, block=batch_size) if no_data_loading
                                else PatchStream(config, block=batch_size))
    workers = int(num_workers)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        worker_init_fn=_init_worker if workers > 0 else None,
    )

