"""What a preprocessed cache is made with: target spacing, intensity window, storage layout.

The settings are written once to `CACHE/settings.json`; a cache never mixes cases made with
different settings (`tumorscale.data.cache.CacheSettingsError`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

# Bump when the on-disk layout or the meaning of a stored value changes.
FORMAT_VERSION = 1
CODECS: tuple[str, ...] = ("ZSTD", "LZ4", "LZ4HC", "BLOSCLZ", "ZLIB")


@dataclass(frozen=True)
class PreprocessSettings:
    """Settings of a preprocessed cache (sizes in mm, intensities in HU, shapes in voxels i, j, k).

    spacing_mm: target voxel size per RAS axis; each case is resized so its field of view keeps
      its extent and centre, so the stored spacing is within half a voxel over the extent of this.
    hu_clip: intensity window applied when patches are read (the cache stores unclipped HU).
    scale_to_unit: map the window to [0, 1] on read (else patches are clipped HU).
    chunks, blocks: blosc2 chunk and block shapes; a patch read decompresses only the blocks
      it touches.
    codec, clevel: blosc2 compression codec and level.
    locations_per_structure, locations_min_fraction: the foreground-location index keeps
      max(min(n, locations_per_structure), ceil(n * locations_min_fraction)) voxels of a
      structure with n voxels (nnU-Net's rule).
    seed: seeds the location sampling (with the case id), so reruns are bit-identical.
    """

    spacing_mm: tuple[float, float, float] = (1.5, 1.5, 1.5)
    hu_clip: tuple[float, float] = (-175.0, 250.0)
    scale_to_unit: bool = True
    chunks: tuple[int, int, int] = (64, 64, 64)
    blocks: tuple[int, int, int] = (16, 16, 16)
    codec: str = "LZ4HC"
    clevel: int = 5
    locations_per_structure: int = 10_000
    locations_min_fraction: float = 0.01
    seed: int = 1234
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        spacing = self.spacing_mm
        if isinstance(spacing, int | float):
            spacing = (spacing, spacing, spacing)
        spacing = tuple(float(v) for v in spacing)
        if len(spacing) != 3 or not all(0 < v <= 50 for v in spacing):
            raise ValueError(
                f"spacing_mm must be three sizes in (0, 50] mm; got {self.spacing_mm!r}"
            )
        object.__setattr__(self, "spacing_mm", spacing)
        low, high = (float(v) for v in self.hu_clip)
        if not low < high:
            raise ValueError(f"hu_clip must be (low, high) with low < high; got {self.hu_clip!r}")
        object.__setattr__(self, "hu_clip", (low, high))
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
        return 0.0 if self.scale_to_unit else self.hu_clip[0]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready values (tuples as lists)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> PreprocessSettings:
        """Settings from `to_dict` output; unknown keys are an error (a newer cache format)."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing settings: {', '.join(unknown)}")
        values = {key: tuple(value) if isinstance(value, list) else value
                  for key, value in data.items()}
        return cls(**values)  # type: ignore[arg-type]

    def differing_keys(self, other: PreprocessSettings) -> list[str]:
        """Names of the settings whose values differ between `self` and `other`."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [key for key in mine if mine[key] != theirs[key]]
