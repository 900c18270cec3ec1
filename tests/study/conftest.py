"""Phantom cohorts and a tiny study description shared by the study tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tumorscale.phantom import PhantomOptions, write_cohort

ORGANS = ["pancreas", "liver", "kidney"]

# A tiny study: 2 counts x 2 conditions x 1 seed; the tiny network, 32³ patches at 4 mm.
TINY_STUDY = {
    "name": "tiny",
    "organs": ORGANS,
    "real_counts": [2, 4],
    "conditions": [
        {"name": "real", "synthetic_ratio": 0},
        {"name": "synth3", "synthetic_ratio": 3},
    ],
    "seeds": [0],
    "study_seed": 0,
    "id_test": {"name": "id", "count": 2},
    "compute": {"policy": "fixed", "iterations": 20},
    "train": {
        "model.network": "tiny",
        "patch_size": [32, 32, 32],
        "data.spacing_mm": [4, 4, 4],
        "workers": 0,
        "log_every": 5,
        "checkpoint_every": 5,
    },
    "predict": {"tta": False, "overlap": 0.0, "window_batch_size": 4},
    "evaluation": {"bootstrap_resamples": 100},
}


def _options(style: str) -> PhantomOptions:
    return PhantomOptions(shape=(80, 64, 40), tumor_fraction=0.6, female_fraction=0.0,
                          tumor_organs=tuple(ORGANS), style=style)  # fmt: skip


@pytest.fixture(scope="session")
def study_cohorts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{'data': 8 standard phantoms, 'ood': 2 phantoms in the 'ood' scanner style,
    'cache': a preprocessed-cache folder the studies share}."""
    root = tmp_path_factory.mktemp("study_cohorts")
    write_cohort(root / "data", cases=8, seed=11, options=_options("standard"))
    write_cohort(root / "ood", cases=2, seed=12, options=_options("ood"))
    return {"data": root / "data", "ood": root / "ood", "cache": root / "cache"}


def write_study(folder: Path, cohorts: dict[str, Path], **changes: object) -> Path:
    """A study YAML for the tiny study (with `changes` to its keys) in `folder`."""
    values = {**TINY_STUDY, "data": str(cohorts["data"]), "cache": str(cohorts["cache"]),
              "ood_tests": {"ood": str(cohorts["ood"])}, **changes}  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path
