"""Preprocessing and the preprocessed cache: resampled RAS CT in HU, bit-packed structures,
a foreground-location index, and fast patch reads for training.

    from tumorscale.data import PreprocessSettings, PreprocessedCache, preprocess_dataset
    report = preprocess_dataset("AbdomenAtlas", "cache", PreprocessSettings(), workers=4)
    cache = PreprocessedCache.open("cache")
    image, bits = cache.read_patch(cache.case_ids[0], (0, 0, 0), (96, 96, 96))
    tumor = structure_mask(bits, "liver_lesion")
"""

from tumorscale.data.cache import (
    BITS_DTYPE,
    LESION_STRUCTURES,
    LOCATION_STRUCTURES,
    STRUCTURE_BITS,
    STRUCTURES,
    CacheError,
    CacheSettingsError,
    PreprocessedCache,
    scale_intensity,
    structure_bit,
    structure_mask,
)
from tumorscale.data.preprocess import preprocess_case, preprocess_dataset
from tumorscale.data.resample import (
    resample_image,
    resample_labels,
    resample_labels_to_ras,
    resample_mask_volume,
    resized_affine,
    target_shape,
)
from tumorscale.data.settings import FORMAT_VERSION, PreprocessSettings

__all__ = [
    "BITS_DTYPE",
    "FORMAT_VERSION",
    "LESION_STRUCTURES",
    "LOCATION_STRUCTURES",
    "STRUCTURES",
    "STRUCTURE_BITS",
    "CacheError",
    "CacheSettingsError",
    "PreprocessSettings",
    "PreprocessedCache",
    "preprocess_case",
    "preprocess_dataset",
    "resample_image",
    "resample_labels",
    "resample_labels_to_ras",
    "resample_mask_volume",
    "resized_affine",
    "scale_intensity",
    "structure_bit",
    "structure_mask",
    "target_shape",
]
