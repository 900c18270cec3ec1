"""Shared fixtures: small AbdomenAtlas trees built from known arrays, and an isolated cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

DEFAULT_AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])


def save_nifti(path: Path, array: np.ndarray, affine: np.ndarray = DEFAULT_AFFINE) -> Path:
    """Write an array as NIfTI with nibabel directly (tests must not depend on our writer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=float)), str(path))
    return path


def sphere(
    shape: tuple[int, int, int], centre: tuple[float, float, float], radius_vox: float
) -> np.ndarray:
    grid = np.indices(shape, dtype=float)
    distance2 = sum((grid[axis] - centre[axis]) ** 2 for axis in range(3))
    return (distance2 <= radius_vox**2).astype(np.uint8)


CaseMaker = Callable[..., Path]


@pytest.fixture
def make_case() -> CaseMaker:
    """Write one merged-layout case: a CT plus named masks; returns the case folder."""

    def _make(
        root: Path,
        case_id: str = "BDMAP_00000001",
        shape: tuple[int, int, int] = (24, 24, 12),
        masks: dict[str, np.ndarray] | None = None,
        affine: np.ndarray = DEFAULT_AFFINE,
        ct: np.ndarray | None = None,
    ) -> Path:
        folder = root / case_id
        rng = np.random.default_rng(0)
        ct_array = ct if ct is not None else rng.normal(40, 10, shape).astype(np.int16)
        save_nifti(folder / "ct.nii.gz", ct_array, affine)
        for name, array in (masks or {}).items():
            save_nifti(folder / "segmentations" / f"{name}.nii.gz", array.astype(np.uint8), affine)
        return folder

    return _make


@pytest.fixture(scope="session")
def example_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One download cache for every test that fetches the real example CT in this session."""
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(autouse=True)
def isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test gets its own tumorscale cache unless a shared one is set for downloads."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("TUMORSCALE_CACHE_DIR", str(cache))
    return cache
