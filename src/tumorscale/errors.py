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


def describe_os_error(error: OSError) -> str:
    """`path: reason` for a filesystem error (`[Errno 36] File name too long: '/x'` becomes
    `/x: file name too long`); the paths are the ones the operating system names."""
    reason = (error.strerror or type(error).__name__).lower()
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    if not paths:
        return f"{type(error).__name__}: {error}"
    return f"{' -> '.join(paths)}: {reason}"
