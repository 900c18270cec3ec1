"""Small AbdomenAtlas trees with known arrays for the preprocessing tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import save_nifti, sphere
from tumorscale.data import PreprocessSettings
from tumorscale.preprocessing import Preprocessing

# LPS on disk (i and j flipped), 2 x 2 x 5 mm: canonicalisation and anisotropy both matter.
AFFINE = np.array(
    [[-2.0, 0.0, 0.0, 30.0], [0.0, -2.0, 0.0, 20.0], [0.0, 0.0, 5.0, -40.0], [0, 0, 0, 1.0]]
)
SHAPE = (30, 26, 14)
# 3 mm target, small chunks so patches cross several chunks and blocks.
SETTINGS = PreprocessSettings(spacing_mm=(3.0, 3.0, 3.0), chunks=(8, 8, 8), blocks=(4, 4, 4))


def hu_of(image: np.ndarray, record: Preprocessing) -> np.ndarray:
    """The HU a network intensity stands for under `record` (inside its window)."""
    low, high = record.hu_window
    out_low, out_high = record.intensity_range or record.hu_window
    return low + (image - out_low) * ((high - low) / (out_high - out_low))


def case_masks(index: int) -> dict[str, np.ndarray]:
    """Liver with a lesion, two kidney halves, an aorta, an empty pancreas lesion file."""
    shift = index % 3
    return {
        "liver": sphere(SHAPE, (12 + shift, 12, 7), 7.0),
        "liver_lesion": sphere(SHAPE, (13 + shift, 11, 7), 2.5),
        "kidney_left": sphere(SHAPE, (24, 18, 6), 3.0),
        "kidney_right": sphere(SHAPE, (5, 18, 6), 3.0),
        "aorta": sphere(SHAPE, (15, 20, 7), 1.5),
        "pancreas": sphere(SHAPE, (16, 6, 8), 2.5),
        "pancreatic_lesion": np.zeros(SHAPE, dtype=np.uint8),
    }


def write_case(root: Path, index: int) -> Path:
    """Case BDMAP_0000000<index>: an HU ramp with noise (-1000 .. 1000) and `case_masks`."""
    folder = root / f"BDMAP_{index:08d}"
    rng = np.random.default_rng(index)
    ramp = np.linspace(-1000, 1000, SHAPE[0])[:, None, None] + rng.normal(0, 30, SHAPE)
    save_nifti(folder / "ct.nii.gz", np.rint(ramp).astype(np.int16), AFFINE)
    for name, array in case_masks(index).items():
        save_nifti(folder / "segmentations" / f"{name}.nii.gz", array, AFFINE)
    return folder


def write_dataset(root: Path, cases: int = 3) -> Path:
    for index in range(1, cases + 1):
        write_case(root, index)
    return root
