"""The training input: an endless iterator of batches for this rank, from a given sample on."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from tumorscale.data import PreprocessedCache
from tumorscale.data.augment import AugmentSettings
from tumorscale.data.pipeline import PipelineConfig, make_loader
from tumorscale.models import ModelSpec
from tumorscale.train.cases import CaseRoles
from tumorscale.train.config import TrainConfig
from tumorscale.train.distributed import Distributed


def augment_settings(config: TrainConfig) -> AugmentSettings:
    """nnU-Net's chain, the intensity transforms alone (`augment_spatial=false`), or none."""
    if not config.augment:
        return AugmentSettings.none()
    return AugmentSettings() if config.augment_spatial else AugmentSettings.intensity_only()


def pipeline_config(
    config: TrainConfig,
    cache: PreprocessedCache,
    roles: CaseRoles,
    spec: ModelSpec,
    distributed: Distributed,
    start_sample: int,
) -> PipelineConfig:
    synthesis = config.synthesis
    return PipelineConfig(
        cache_root=str(cache.root),
        real_case_ids=roles.real,
        healthy_case_ids=roles.healthy,
        offline_synthetic_case_ids=roles.synthetic,
        class_names=spec.class_names,
        patch_size=tuple(config.patch_size),
        foreground_fraction=config.foreground_fraction,
        synthetic_ratio=synthesis.ratio,
        on_the_fly=synthesis.on_the_fly,
        synth_organs=tuple(config.organs),
        size_mix=tuple(synthesis.size_mix),
        augment=augment_settings(config),
        preprocessing=cache.settings.preprocessing,  # the window training reads through
        seed=config.seed,
        rank=distributed.rank,
        world_size=distributed.world_size,
        start_index=start_sample,
        host_organs=roles.host_organs,
    )


def training_batches(
    config: TrainConfig,
    cache: PreprocessedCache,
    roles: CaseRoles,
    spec: ModelSpec,
    distributed: Distributed,
    start_sample: int = 0,
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of `config.batch_size` patches; sample k of this rank is fixed by (seed, rank, k),
    so starting at `start_sample` continues exactly where a checkpointed run stopped."""
    stream_config = pipeline_config(config, cache, roles, spec, distributed, start_sample)
    loader = make_loader(
        stream_config,
        config.batch_size,
        num_workers=config.workers,
        no_data_loading=config.benchmark_random_data,
    )
    return iter(loader)
