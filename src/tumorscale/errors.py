"""One exception family for tumorscale; every message names the file (or folder) and the reason."""

from __future__ import annotations

from pathlib import Path


class TumorscaleError(Exception):
    """Base class of every error tumorscale raises on purpose."""


class InputFileError(TumorscaleError):
    """A file (or folder) that cannot be used, with the reason why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class GridMismatchError(InputFileError):
    """An image and a mask (or two masks) that do not share a voxel grid."""


class DatasetError(InputFileError):
    """A dataset folder that cannot be indexed (missing, empty, wrong layout)."""


class FetchError(TumorscaleError):
    """Example data that could not be downloaded or did not match its checksum."""
