"""The preprocessed cache: per-case blosc2 arrays, a foreground-location index and metadata.

    CACHE/settings.json                          settings, structure bit table, bits dtype
    CACHE/cases/<case_id>/image.b2nd             int16 HU on the resampled RAS grid (unclipped)
    CACHE/cases/<case_id>/structures.b2nd        uint64, bit k set where structure k is
    CACHE/cases/<case_id>/locations.npz          per organ/lesion: sampled voxel indices (N, 3)
    CACHE/cases/<case_id>/meta.json              geometry, tumor status, lesion voxel counts
    CACHE/cases/<case_id>/.complete              written last: the case is usable

Arrays are chunked and compressed (blosc2 `.b2nd`) and opened memory-mapped, so a patch read
decompresses only the blocks it touches. Intensities stay in HU (integer HU after resampling:
rounding costs at most 0.5 HU, far below CT noise) so tumors can be synthesized on cached cases;
the HU window and intensity range are applied when patches are read, by
`tumorscale.preprocessing.scale_intensity`, the function prediction uses too, so one cache
serves any window and range.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import blosc2
import numpy as np

from tumorscale.data.settings import PreprocessSettings
from tumorscale.errors import InputFileError, TumorscaleError
from tumorscale.io import Volume, atomic_path, write_text_atomic
from tumorscale.organs import ORGANS, OTHER_STRUCTURES, TUMOR_ORGANS
from tumorscale.preprocessing import (  # scale_intensity: the one intensity function
    Preprocessing,
    scale_intensity,
)

SETTINGS_NAME = "settings.json"
CASES_FOLDER = "cases"
IMAGE_NAME = "image.b2nd"
STRUCTURES_NAME = "structures.b2nd"
LOCATIONS_NAME = "locations.npz"
META_NAME = "meta.json"
COMPLETE_MARKER = ".complete"


def _structure_table() -> tuple[str, ...]:
    organs = TUMOR_ORGANS
    lesions = tuple(ORGANS[organ].lesion_file for organ in TUMOR_ORGANS)
    parts = tuple(part for organ in TUMOR_ORGANS for part in ORGANS[organ].mask_part_files)
    # combined_labels is a label map of the others, not one structure.
    others = tuple(sorted(OTHER_STRUCTURES - {"combined_labels"}))
    return organs + lesions + parts + others


# Bit k of the structure volume is STRUCTURES[k]: the six organs (kidney = both sides), their
# lesions (`liver_lesion`, ... every name variant merged), organ parts, then every other
# AbdomenAtlas structure the synthesizer avoids and pushes. 33 names, so 64-bit words.
STRUCTURES: tuple[str, ...] = _structure_table()
STRUCTURE_BITS: dict[str, int] = {name: bit for bit, name in enumerate(STRUCTURES)}
BITS_DTYPE = np.dtype(np.uint64)
AIR_HU = -1024  # what `read_region_hu` returns beyond the scan border
LESION_STRUCTURES: dict[str, str] = {organ: ORGANS[organ].lesion_file for organ in TUMOR_ORGANS}
# Structures the foreground-location index covers (what the sampler centres patches on).
LOCATION_STRUCTURES: tuple[str, ...] = TUMOR_ORGANS + tuple(LESION_STRUCTURES.values())


class CacheError(InputFileError):
    """A cache folder or cached case that cannot be used."""


class CacheSettingsError(TumorscaleError):
    """A cache made with other settings than the ones requested; names the differing keys."""

    def __init__(self, root: str | Path, differences: dict[str, tuple[object, object]]) -> None:
        self.root = Path(root)
        self.differences = differences
        detail = "; ".join(
            f"{key}: cache has {cached!r}, requested {wanted!r}"
            for key, (cached, wanted) in differences.items()
        )
        super().__init__(
            f"{self.root}: the cache was made with different settings ({detail}); "
            "use another cache folder or the cache's own settings"
        )


# ----------------------------------------------------------------------------- helpers


def structure_bit(name: str) -> np.uint64:
    """The bit value (1 << k) of a structure name in the structure volume."""
    try:
        return np.uint64(1 << STRUCTURE_BITS[name])
    except KeyError:
        raise ValueError(f"unknown structure {name!r}; the cache holds {', '.join(STRUCTURES)}") \
            from None


class BitMask:
    """One structure of a region's bits, decoded only where it is read: slicing decodes just
    the slice, `np.asarray` the whole region (once). The synthesizer reads most neighbours
    only in the small crop around the tumor, so decoding every structure over the whole region
    up front cost more than the synthesis itself. `writeable=True` (the caller owns `bits`)
    lets slice assignment write the structure's bit in place: the synthesizer then writes a
    pushed or grown mask in its crop instead of first copying the whole region's mask."""

    def __init__(self, bits: np.ndarray, bit: np.uint64, writeable: bool = False) -> None:
        self._bits, self._bit = bits, np.uint64(bit)
        self._full: np.ndarray | None = None
        self.shape, self.ndim, self.dtype = bits.shape, bits.ndim, np.dtype(np.uint8)
        self.writeable = writeable

    def __getitem__(self, key) -> np.ndarray:
        if self._full is not None:
            return self._full[key]
        return np.asarray((self._bits[key] & self._bit) != 0).view(np.uint8)

    def __setitem__(self, key, value) -> None:
        if not self.writeable:
            raise ValueError("this BitMask is read-only (made without writeable=True)")
        inside = np.asarray(value) != 0
        self._bits[key] = (self._bits[key] & ~self._bit) | inside.astype(np.uint64) * self._bit
        if self._full is not None:
            self._full[key] = inside

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if self._full is None:
            self._full = np.empty(self.shape, dtype=np.uint8)
            for index in range(self.shape[0]):  # plane by plane: no full-size uint64 temporary
                np.not_equal(self._bits[index] & self._bit, 0, out=self._full[index].view(bool))
        return self._full if dtype is None else self._full.astype(dtype)


def structure_mask(bits: np.ndarray, name: str) -> np.ndarray:
    """Boolean mask of one structure (e.g. 'liver', 'liver_lesion') from bit-packed structures."""
    return (bits & structure_bit(name)) != 0


def case_dir(root: Path, case_id: str) -> Path:
    return Path(root) / CASES_FOLDER / case_id


def write_b2nd_atomic(path: Path, array: np.ndarray, settings: PreprocessSettings) -> None:
    """Write `array` as a chunked, compressed blosc2 file atomically (chunks clipped to shape)."""
    chunks = tuple(min(c, n) for c, n in zip(settings.chunks, array.shape, strict=True))
    blocks = tuple(min(b, c) for b, c in zip(settings.blocks, chunks, strict=True))
    cparams = blosc2.CParams(
        codec=blosc2.Codec[settings.codec], clevel=settings.clevel, filters=[blosc2.Filter.SHUFFLE]
    )
    with atomic_path(path) as temporary:
        written = blosc2.asarray(
            np.ascontiguousarray(array), urlpath=str(temporary), mode="w",
            chunks=chunks, blocks=blocks, cparams=cparams,
        )
        del written  # closes the file before it is renamed into place


def settings_record(settings: PreprocessSettings) -> dict[str, object]:
    """What `settings.json` holds: the settings plus the structure bit table."""
    return {"settings": settings.to_dict(), "structures": list(STRUCTURES),
            "bits_dtype": BITS_DTYPE.name}


def _read_settings_file(root: Path) -> dict | None:
    path = root / SETTINGS_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CacheError(path, f"unreadable cache settings ({error})") from error


def _stored_settings(root: Path, record: dict) -> PreprocessSettings:
    path = root / SETTINGS_NAME
    if record.get("structures") != list(STRUCTURES) or record.get("bits_dtype") != BITS_DTYPE.name:
        raise CacheError(path, "structure table differs from this tumorscale version's")
    try:
        return PreprocessSettings.from_dict(record["settings"])
    except (KeyError, TypeError, ValueError) as error:
        raise CacheError(path, f"invalid cache settings ({error})") from error


def _check_same(root: Path, stored: PreprocessSettings, wanted: PreprocessSettings) -> None:
    keys = stored.differing_keys(wanted)
    if keys:
        mine, theirs = stored.stored_values(), wanted.stored_values()
        raise CacheSettingsError(root, {key: (mine[key], theirs[key]) for key in keys})


def init_cache(root: str | Path, settings: PreprocessSettings) -> Path:
    """Create a cache folder with `settings` or check that an existing one stores cases the same
    way (spacing and storage; the HU window and intensity range may differ, as they are applied
    when patches are read).

    Raises `CacheSettingsError` naming the cache and the differing keys.
    """
    root = Path(root)
    record = _read_settings_file(root)
    if record is None:
        (root / CASES_FOLDER).mkdir(parents=True, exist_ok=True)
        write_text_atomic(root / SETTINGS_NAME,
                          json.dumps(settings_record(settings), indent=1) + "\n")
    else:
        _check_same(root, _stored_settings(root, record), settings)
        (root / CASES_FOLDER).mkdir(parents=True, exist_ok=True)
    return root


# ----------------------------------------------------------------------------- reading


class PreprocessedCache:
    """Read access to a preprocessed cache (safe to pickle into DataLoader workers).

    Arrays are indexed [i, j, k] along RAS axes of the resampled grid; `case_meta(...)
    ["preprocessed"]["affine"]` maps indices to world mm. Open arrays are kept per process
    (up to `max_open` cases, least recently used closed first).
    """

    def __init__(self, root: Path, settings: PreprocessSettings, max_open: int = 64) -> None:
        self.root = Path(root)
        self.settings = settings
        self.max_open = max_open
        self.case_ids: list[str] = self._complete_cases()
        self._arrays: OrderedDict[str, tuple[blosc2.NDArray, blosc2.NDArray]] = OrderedDict()
        self._meta: dict[str, dict] = {}
        self._locations: dict[str, dict[str, np.ndarray]] = {}

    @classmethod
    def open(cls, root: str | Path, expected: PreprocessSettings | None = None,
             max_open: int = 64) -> PreprocessedCache:
        """Open the cache at `root`; with `expected`, its spacing and storage settings must equal
        them, and patches are read through `expected`'s HU window and intensity range."""
        root = Path(root)
        record = _read_settings_file(root)
        if record is None:
            raise CacheError(root, f"not a preprocessed cache (no {SETTINGS_NAME})")
        settings = _stored_settings(root, record)
        cache = cls(root, settings, max_open)
        if expected is None:
            return cache
        _check_same(root, settings, expected)
        return cache.with_preprocessing(expected.preprocessing)

    def with_preprocessing(self, record: Preprocessing) -> PreprocessedCache:
        """The same cases read through another HU window and intensity range (the cache holds
        unclipped HU, so only reading changes); the spacing must be the cache's own."""
        if record.spacing_mm != self.settings.preprocessing.spacing_mm:
            raise ValueError(
                f"the cache at {self.root} is resampled to {self.settings.preprocessing.spacing_mm}"
                f" mm; it cannot be read at {record.spacing_mm} mm"
            )
        view = copy.copy(self)
        view.settings = dataclasses.replace(self.settings, preprocessing=record)
        view._arrays = OrderedDict()  # open handles are per object, like in a worker
        return view

    def __getstate__(self) -> dict:
        # Open blosc2 handles do not cross processes; each worker re-opens what it reads.
        state = dict(self.__dict__)
        state["_arrays"] = OrderedDict()
        return state

    def _complete_cases(self) -> list[str]:
        folder = self.root / CASES_FOLDER
        if not folder.is_dir():
            return []
        return sorted(p.parent.name for p in folder.glob(f"*/{COMPLETE_MARKER}"))

    def refresh(self) -> None:
        """Re-list the complete cases (after another process added some)."""
        self.case_ids = self._complete_cases()

    def _folder(self, case_id: str) -> Path:
        folder = case_dir(self.root, case_id)
        if not (folder / COMPLETE_MARKER).exists():
            raise CacheError(folder, f"case {case_id!r} is not (completely) in the cache")
        return folder

    def case_meta(self, case_id: str) -> dict:
        """The case's metadata (see `meta.json`): geometry, tumor status, lesion voxel counts."""
        if case_id not in self._meta:
            path = self._folder(case_id) / META_NAME
            try:
                self._meta[case_id] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise CacheError(path, f"unreadable case metadata ({error})") from error
        return self._meta[case_id]

    def holds(self, case_id: str, structure: str) -> bool:
        """Whether the case may hold voxels of `structure`, from its metadata alone (no array
        read): a lesion only with voxels on the preprocessed grid, anything else with a file."""
        meta = self.case_meta(case_id)
        organ = next((o for o, lesion in LESION_STRUCTURES.items() if lesion == structure), None)
        if organ is not None:
            return meta.get("lesion_voxels", {}).get(organ, 0) > 0
        return structure in meta.get("structures", [])

    def image_shape(self, case_id: str) -> tuple[int, int, int]:
        """Voxel counts (i, j, k) of the case's preprocessed grid."""
        return tuple(self.case_meta(case_id)["preprocessed"]["shape"])  # type: ignore[return-value]

    def affine(self, case_id: str) -> np.ndarray:
        """Voxel-to-RAS (mm) affine of the case's preprocessed grid."""
        return np.asarray(self.case_meta(case_id)["preprocessed"]["affine"], dtype=float)

    def _open(self, case_id: str) -> tuple[blosc2.NDArray, blosc2.NDArray]:
        if case_id in self._arrays:
            self._arrays.move_to_end(case_id)
            return self._arrays[case_id]
        folder = self._folder(case_id)
        arrays = []
        for name in (IMAGE_NAME, STRUCTURES_NAME):
            try:
                arrays.append(blosc2.open(str(folder / name), mode="r", mmap_mode="r"))
            except Exception as error:  # blosc2 raises bare RuntimeError/ValueError types
                raise CacheError(folder / name, f"unreadable cached array ({error})") from error
        self._arrays[case_id] = (arrays[0], arrays[1])
        while len(self._arrays) > self.max_open:
            self._arrays.popitem(last=False)
        return self._arrays[case_id]

    def read_patch(
        self, case_id: str, start: Sequence[int], size: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A patch [start, start + size) of the preprocessed grid (voxels i, j, k; may cross the
        border): float32 windowed/scaled image and uint64 structure bits, both of shape `size`.

        Outside the volume the image reads as air (the window's low end, 0.0 when scaled) and
        the structures as 0. Only the chunks the patch touches are decompressed.
        """
        def scaled(hu: np.ndarray) -> np.ndarray:
            return scale_intensity(hu, self.settings.preprocessing)

        return self._read_box(case_id, start, size, scaled, self.settings.pad_value, np.float32)

    def read_region_hu(
        self, case_id: str, start: Sequence[int], size: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A region [start, start + size) (voxels i, j, k; may cross the border) as int16 HU
        (unclipped) and uint64 structure bits, both of shape `size`; air (AIR_HU) and 0 outside.

        What on-the-fly synthesis reads instead of the whole case (only touched chunks)."""
        def as_int16(hu: np.ndarray) -> np.ndarray:
            return np.asarray(hu, dtype=np.int16)

        return self._read_box(case_id, start, size, as_int16, AIR_HU, np.int16)

    def _read_box(
        self,
        case_id: str,
        start: Sequence[int],
        size: Sequence[int],
        convert: Callable[[np.ndarray], np.ndarray],
        fill: float,
        dtype: type,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The box [start, start + size) of the case's image (through `convert`) and structure
        bits; outside the volume the image is `fill` and the bits 0. A box inside the volume
        is returned without a padded copy."""
        image, bits = self._open(case_id)
        start_ = np.asarray(start, dtype=np.int64)
        size_ = np.asarray(size, dtype=np.int64)
        if start_.shape != (3,) or size_.shape != (3,) or np.any(size_ < 1):
            raise ValueError(f"start and size must be 3 integers, size >= 1; got {start}, {size}")
        low = np.maximum(start_, 0)
        high = np.minimum(start_ + size_, image.shape)
        source = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
        if np.all(low == start_) and np.all(high == start_ + size_):
            return convert(image[source]), bits[source]
        out_image = np.full(tuple(size_), fill, dtype=dtype)
        out_bits = np.zeros(tuple(size_), dtype=BITS_DTYPE)
        if np.all(high > low):
            target = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(low, high, start_,
                                                                           strict=True))
            out_image[target] = convert(image[source])
            out_bits[target] = bits[source]
        return out_image, out_bits

    def read_case_hu(self, case_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The whole case: int16 HU (unclipped) and uint64 structure bits, RAS (i, j, k)."""
        image, bits = self._open(case_id)
        return image[...], bits[...]

    def read_case_for_synthesis(self, case_id: str) -> tuple[Volume, dict[str, np.ndarray]]:
        """The case as `tumorscale.synth.insert_tumors` takes it: a float32 HU `Volume` on the
        preprocessed grid and uint8 masks named like the source files (lesions left out)."""
        hu, bits = self.read_case_hu(case_id)
        meta = self.case_meta(case_id)
        volume = Volume(hu.astype(np.float32), self.affine(case_id))
        masks = {name: structure_mask(bits, name).view(np.uint8)
                 for name in meta["synthesis_masks"]}
        return volume, masks

    def foreground_locations(self, case_id: str, structure: str) -> np.ndarray:
        """Sampled voxel indices (N, 3) int32 of an organ or lesion ('liver', 'liver_lesion');
        (0, 3) when the case has none of it."""
        if structure not in LOCATION_STRUCTURES:
            raise ValueError(
                f"no location index for {structure!r}; choose from {', '.join(LOCATION_STRUCTURES)}"
            )
        if case_id not in self._locations:
            path = self._folder(case_id) / LOCATIONS_NAME
            try:
                with np.load(path) as stored:
                    self._locations[case_id] = {key: stored[key] for key in stored.files}
            except (OSError, ValueError) as error:
                raise CacheError(path, f"unreadable location index ({error})") from error
        found = self._locations[case_id].get(structure)
        if found is None:
            return np.zeros((0, 3), dtype=np.int32)
        return found.astype(np.int32)
