"""The patch stream: shapes, determinism, resume, worker-count independence, no-loading mode."""

from __future__ import annotations

from dataclasses import replace
from itertools import islice

import pytest
import torch

from tests.data.conftest import CLASSES, PATCH, PhantomCache
from tumorscale.data.augment import AugmentSettings
from tumorscale.data.pipeline import PatchStream, PipelineConfig, RandomPatches, make_loader


def _config(phantom_cache: PhantomCache, **changes: object) -> PipelineConfig:
    config = PipelineConfig(
        cache_root=phantom_cache.root, class_names=CLASSES, real_case_ids=phantom_cache.real,
        healthy_case_ids=phantom_cache.healthy, patch_size=PATCH, seed=11,
    )
    return replace(config, **changes)


def _same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
        assert x["index"] == y["index"] and x["synthetic"] == y["synthetic"]


def test_samples_have_the_promised_shapes(phantom_cache: PhantomCache) -> None:
    sample = PatchStream(_config(phantom_cache)).sample(0)
    assert sample["image"].shape == (1, *PATCH) and sample["image"].dtype == torch.float32
    assert sample["label"].shape == PATCH and sample["label"].dtype == torch.int64
    assert sample["index"] == 0 and isinstance(sample["synthetic"], bool)
    assert int(sample["label"].max()) < len(CLASSES)


def test_same_seed_same_stream_and_resume_gives_the_tail(phantom_cache: PhantomCache) -> None:
    config = _config(phantom_cache)
    full = list(islice(iter(PatchStream(config)), 8))
    _same(full, list(islice(iter(PatchStream(config)), 8)))
    resumed = list(islice(iter(PatchStream(replace(config, start_index=5))), 3))
    _same(full[5:], resumed)
    other = PatchStream(replace(config, seed=12)).sample(0)
    assert not torch.equal(other["image"], full[0]["image"])


def test_ranks_draw_different_streams(phantom_cache: PhantomCache) -> None:
    config = _config(phantom_cache, world_size=2)
    first = PatchStream(config).sample(0)
    second = PatchStream(replace(config, rank=1)).sample(0)
    assert not torch.equal(first["image"], second["image"])


def test_synthetic_share_and_synthesized_tumors(phantom_cache: PhantomCache) -> None:
    config = _config(phantom_cache, augment=AugmentSettings.none())
    stream = PatchStream(config)
    samples = [stream.sample(k) for k in range(60)]
    share = sum(s["synthetic"] for s in samples) / len(samples)
    assert 0.6 < share < 0.9  # 3/4 expected; binomial SD 0.056
    with_tumor = [bool((s["label"] > 0).any()) for s in samples if s["synthetic"]]
    assert sum(with_tumor) >= 0.85 * len(with_tumor)  # skips are rare
    assert stream.maker.synth_count == sum(s["synthetic"] for s in samples)


def test_loader_batches_identical_for_0_and_2_workers(phantom_cache: PhantomCache) -> None:
    config = _config(phantom_cache, start_index=3)
    batches = []
    for workers in (0, 2):
        loader = make_loader(config, batch_size=2, num_workers=workers, prefetch_factor=2)
        batches.append(list(islice(iter(loader), 4)))
        del loader
    for a, b in zip(*batches, strict=True):
        assert a["image"].shape == (2, 1, *PATCH) and a["label"].shape == (2, *PATCH)
        assert torch.equal(a["index"], b["index"])
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert torch.cat([b["index"] for b in batches[0]]).tolist() == list(range(3, 11))


def test_random_patches_mode(phantom_cache: PhantomCache) -> None:
    config = _config(phantom_cache)
    batch = next(iter(make_loader(config, batch_size=2, no_data_loading=True)))
    assert batch["image"].shape == (2, 1, *PATCH) and batch["label"].shape == (2, *PATCH)
    assert batch["label"].max() < len(CLASSES) and batch["index"].tolist() == [0, 1]
    assert torch.equal(RandomPatches(config).sample(5)["image"],
                       RandomPatches(config).sample(5)["image"])


def test_config_validation(phantom_cache: PhantomCache) -> None:
    with pytest.raises(ValueError, match="lesion class"):
        _config(phantom_cache, class_names=("background", "pancreas_lesion"),
                synth_organs=("liver",))
    with pytest.raises(ValueError, match="no cases"):
        _config(phantom_cache, real_case_ids=(), healthy_case_ids=())
    with pytest.raises(ValueError, match="rank"):
        _config(phantom_cache, rank=1)


def test_patches_are_read_through_the_given_window(phantom_cache: PhantomCache) -> None:
    """Real and synthesized patches alike: with the default window a patch is HU / 100 clipped
    to [-1.75, 2.5]; through [0, 150] HU -> [-2, 3] it must be that HU's image there."""
    from tumorscale.preprocessing import Preprocessing

    default = _config(phantom_cache, augment=AugmentSettings.none())
    spacing = phantom_cache.cache.settings.preprocessing.spacing_mm
    record = Preprocessing(spacing_mm=spacing, hu_window=(0.0, 150.0), intensity_range=(-2.0, 3.0))
    windowed = replace(default, preprocessing=record)
    kinds = set()
    for index in range(8):
        plain, other = PatchStream(default).sample(index), PatchStream(windowed).sample(index)
        assert torch.equal(plain["label"], other["label"])
        hu = plain["image"].double() * 100.0
        expected = -2.0 + 5.0 * ((hu - 0.0) / 150.0).clamp(0.0, 1.0)
        assert torch.allclose(other["image"].double(), expected, atol=1e-4)
        kinds.add(plain["synthetic"])
    assert kinds == {True, False}  # both kinds of sample were checked


def test_additive_augmentation_scales_with_the_window_span(phantom_cache: PhantomCache) -> None:
    """The intensity shift is drawn for a window scaled to [0, 1]: through the default (HU / 100,
    4.25 units) and through a window spanning 5 units the same sample is shifted by 4.25x and 5x
    the amount."""
    from tumorscale.preprocessing import Preprocessing

    spacing = phantom_cache.cache.settings.preprocessing.spacing_mm
    record = Preprocessing(spacing_mm=spacing, hu_window=(0.0, 150.0), intensity_range=(-2.0, 3.0))
    shift_only = replace(AugmentSettings.none(), shift_p=1.0)
    streams = {
        (window, shifted): PatchStream(_config(
            phantom_cache, preprocessing=window,
            augment=shift_only if shifted else AugmentSettings.none()))
        for window in (None, record) for shifted in (False, True)
    }
    for index in range(4):
        shifts = {}
        for window in (None, record):
            moved = streams[window, True].sample(index)["image"].double()
            still = streams[window, False].sample(index)["image"].double()
            offsets = moved - still
            assert torch.allclose(offsets, offsets.flatten()[0], atol=1e-5)  # one constant
            shifts[window] = float(offsets.flatten()[0])
        assert abs(shifts[None]) <= 0.1 * 4.25
        assert shifts[record] == pytest.approx(5.0 / 4.25 * shifts[None], abs=1e-5)
