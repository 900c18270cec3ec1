"""A small phantom cohort and its preprocessed cache, shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tumorscale.data import PreprocessSettings, preprocess_dataset
from tumorscale.phantom import PhantomOptions, write_cohort

# Training tests read 32³ patches at 3 mm: about 100 mm of anatomy, enough for an organ and its
# tumor, small enough for a few hundred CPU iterations in a test.
BASE_OVERRIDES = [
    "model.network=tiny",
    "patch_size=[32,32,32]",
    "organs=[pancreas,kidney,liver]",
    "data.spacing_mm=[3,3,3]",
    "data.validation_fraction=0",
    "workers=0",
    "log_every=5",
]


@pytest.fixture(scope="session")
def training_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(raw AbdomenAtlas folder, preprocessed cache) of 6 phantoms: tumors in half of them."""
    data = tmp_path_factory.mktemp("train_phantoms")
    options = PhantomOptions(
        shape=(96, 80, 48),
        tumor_fraction=0.5,
        female_fraction=0.0,
        tumor_organs=("pancreas", "liver", "kidney"),
    )
    write_cohort(data, cases=6, seed=4, options=options)
    cache = tmp_path_factory.mktemp("train_cache") / "cache"
    report = preprocess_dataset(data, cache, PreprocessSettings(spacing_mm=(3.0, 3.0, 3.0)))
    assert report.ok, report.failed
    return data, cache
