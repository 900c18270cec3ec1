"""What a preprocessed cache is made with: the preprocessing record and the storage layout.

The settings are written once to `CACHE/settings.json`; a cache never mixes cases stored with
different spacing or storage settings (`tumorscale.data.cache.CacheSettingsError`). The HU
window and intensity range are applied when patches are read, so one cache serves any of them.
The file keeps its flat keys (`spacing_mm`, `hu_clip`, `scale_to_unit`, ...), so caches made
before the preprocessing record existed open unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from tumorscale.preprocessing import UNIT_RANGE, Preprocessing

# Bump when the on-disk layout or the meaning of a stored value changes.
FORMAT_VERSION = 1
CODECS: tuple[str, ...] = ("ZSTD", "LZ4", "LZ4HC", "BLOSCLZ", "ZLIB")
# settings.json keys of the preprocessing record (the window was called hu_clip there).
_RECORD_KEYS = ("spacing_mm", "hu_clip", "scale_to_unit", "intensity_range")
# Keys applied when patches are read, not when cases are stored (the cache holds unclipped HU).
_READ_KEYS = ("hu_clip", "scale_to_unit", "intensity_range")


@dataclass(frozen=True, init=False)
class PreprocessSettings:
    """Settings of a preprocessed cache (shapes in voxels i, j, k).

    preprocessing: target spacing, HU window and intensity range (`tumorscale.preprocessing`).
      Each case is resized to the spacing so its field of view keeps its extent and centre (the
      stored spacing is within half a voxel over the extent of it); the cache stores unclipped
      HU and the window and range are applied when patches are read.
    chunks, blocks: blosc2 chunk and block shapes; a patch read decompresses only the blocks
      it touches.
    codec, clevel: blosc2 compression codec and level.
    locations_per_structure, locations_min_fraction: the foreground-location index keeps
      max(min(n, locations_per_structure), ceil(n * locations_min_fraction)) voxels of a
      structure with n voxels (nnU-Net's rule).
    seed: seeds the location sampling (with the case id), so reruns are bit-identical.

    The flat names of `settings.json` are accepted as keywords too: `spacing_mm`, `hu_clip`
    (the HU window), `scale_to_unit` (False: no scaling) and `intensity_range`.
    """

    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    chunks: tuple[int, int, int] = (64, 64, 64)
    blocks: tuple[int, int, int] = (16, 16, 16)
    codec: str = "LZ4HC"
    clevel: int = 5
    locations_per_structure: int = 10_000
    locations_min_fraction: float = 0.01
    seed: int = 1234
    format_version: int = FORMAT_VERSION

    def __init__(
        self,
        preprocessing: Preprocessing | None = None,
        *,
        spacing_mm: Any = None,
        hu_clip: Any = None,
        scale_to_unit: bool | None = None,
        intensity_range: Any = None,
        **storage: Any,
    ) -> None:
        record = (preprocessing or Preprocessing()).with_legacy(
            spacing_mm=spacing_mm, hu_clip=hu_clip, intensity_range=intensity_range,
            scale_to_unit=scale_to_unit,
        )  # fmt: skip
        object.__setattr__(self, "preprocessing", record)
        for item in fields(self)[1:]:
            object.__setattr__(self, item.name, storage.pop(item.name, item.default))
        if storage:
            raise TypeError(f"unknown preprocessing settings: {', '.join(sorted(storage))}")
        self.__post_init__()

    def __post_init__(self) -> None:
        if not isinstance(self.preprocessing, Preprocessing):
            raise TypeError(f"preprocessing must be a Preprocessing; got {self.preprocessing!r}")
        for name in ("chunks", "blocks"):
            shape = tuple(int(v) for v in getattr(self, name))
            if len(shape) != 3 or min(shape) < 1:
                raise ValueError(f"{name} must be three positive integers; got {shape!r}")
            object.__setattr__(self, name, shape)
        if any(b > c for b, c in zip(self.blocks, self.chunks, strict=True)):
            raise ValueError(f"blocks {self.blocks} must fit inside chunks {self.chunks}")
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}; got {self.codec!r}")
        if not 0 <= int(self.clevel) <= 9:
            raise ValueError(f"clevel must be in 0..9; got {self.clevel!r}")
        if int(self.locations_per_structure) < 1 or not 0 <= self.locations_min_fraction <= 1:
            raise ValueError(
                "locations_per_structure must be >= 1 and locations_min_fraction in [0, 1]"
            )

    @property
    def pad_value(self) -> float:
        """The read value of air beyond the volume border: the window's low end after scaling."""
        return self.preprocessing.pad_value

    def to_dict(self) -> dict[str, object]:
        """JSON-ready values (tuples as lists): the flat `settings.json` keys."""
        record = self.preprocessing
        values: dict[str, object] = {
            "spacing_mm": list(record.spacing_mm),
            "hu_clip": list(record.hu_window),
            "scale_to_unit": record.intensity_range is not None,
        }
        if record.intensity_range is not None:
            values["intensity_range"] = list(record.intensity_range)
        for item in fields(self)[1:]:
            value = getattr(self, item.name)
            values[item.name] = list(value) if isinstance(value, tuple) else value
        return values

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> PreprocessSettings:
        """Settings from `to_dict` output; unknown keys are an error (a newer cache format)."""
        known = {*_RECORD_KEYS, *(item.name for item in fields(cls)[1:])}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing settings: {', '.join(unknown)}")
        values = {key: tuple(value) if isinstance(value, list) else value
                  for key, value in data.items()}
        if values.get("scale_to_unit") and "intensity_range" not in values:
            values["intensity_range"] = UNIT_RANGE  # such files left the then-default [0, 1] out
        return cls(**values)  # type: ignore[arg-type]

    def stored_values(self) -> dict[str, object]:
        """`to_dict` without the keys applied when patches are read (HU window, intensity
        range): the values that decide what the cache stores."""
        return {key: value for key, value in self.to_dict().items() if key not in _READ_KEYS}

    def differing_keys(self, other: PreprocessSettings) -> list[str]:
        """Names of the stored settings whose values differ between `self` and `other` (two
        settings with none can share a cache)."""
        mine, theirs = self.stored_values(), other.stored_values()
        return [key for key in mine if mine[key] != theirs[key]]
