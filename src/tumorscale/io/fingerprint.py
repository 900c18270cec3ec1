"""What a result was made from: the size and modification time of each input file.

Completion records store `input_fingerprint(inputs)`; a rerun compares it with the inputs' current
fingerprint, so a CT replaced by another scan (or a mask edited) is redone rather than reused.
Size + mtime (nanoseconds) is what `make` and rsync trust: a `stat` per file, no reading.
`content_fingerprint` hashes the bytes instead, for records that must be byte-identical
between two runs (a phantom cohort written twice from one seed).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

Fingerprint = list[list[object]]


def _files(path: Path) -> list[Path]:
    """`path`, or every file under it when it is a folder (a DICOM series), sorted."""
    if path.is_dir():
        return sorted(Path(root) / name for root, _, names in os.walk(path) for name in names)
    return [path]


def input_fingerprint(paths: Iterable[str | Path]) -> Fingerprint:
    """[name, bytes, mtime in ns] per input file (folders expanded), in the given order.

    Names, not full paths: moving a dataset folder does not invalidate its results.
    """
    entries: Fingerprint = []
    for path in paths:
        for file in _files(Path(path)):
            stat = file.stat()
            entries.append([file.name, stat.st_size, stat.st_mtime_ns])
    return entries


def content_fingerprint(paths: Iterable[str | Path]) -> Fingerprint:
    """[name, bytes, sha256] per file (folders expanded): the same for the same content."""
    entries: Fingerprint = []
    for path in paths:
        for file in _files(Path(path)):
            digest = hashlib.sha256()
            with file.open("rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
            entries.append([file.name, file.stat().st_size, digest.hexdigest()])
    return entries
