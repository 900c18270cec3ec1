"""A small preprocessed phantom cohort shared by the data-pipeline tests (built once a session)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tumorscale.data import PreprocessedCache, PreprocessSettings, preprocess_dataset
from tumorscale.phantom import PhantomOptions, write_cohort

# Four phantoms of 96 x 80 x 48 voxels, cached at 3 mm (about 110 x 95 x 118 voxels); with this
# seed case 2 has a pancreatic tumor, case 3 a kidney tumor, cases 1 and 4 are controls.
PATCH = (48, 48, 48)
CLASSES = ("background", "pancreas_lesion", "kidney_lesion", "liver_lesion")


@dataclass(frozen=True)
class PhantomCache:
    root: Path
    cache: PreprocessedCache
    real: tuple[str, ...]
    healthy: tuple[str, ...]


@pytest.fixture(scope="session")
def phantom_cache(tmp_path_factory: pytest.TempPathFactory) -> PhantomCache:
    data = tmp_path_factory.mktemp("phantoms")
    options = PhantomOptions(shape=(96, 80, 48), tumor_fraction=0.5, female_fraction=0.0,
                             tumor_organs=("pancreas", "liver", "kidney"), orientations=("RAS",))
    write_cohort(data, cases=4, seed=0, options=options)
    root = tmp_path_factory.mktemp("pipeline_cache")
    settings = PreprocessSettings(spacing_mm=3.0, chunks=(32, 32, 32), blocks=(16, 16, 16),
                                  locations_per_structure=2000)
    report = preprocess_dataset(data, root, settings)
    assert report.ok
    cache = PreprocessedCache.open(root)
    positive = tuple(c for c in cache.case_ids if "positive" in cache.case_meta(c)["tumor_status"]
                     .values())
    healthy = tuple(c for c in cache.case_ids if c not in positive)
    assert len(positive) == 2 and len(healthy) == 2
    return PhantomCache(root, cache, positive, healthy)
