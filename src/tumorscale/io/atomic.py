"""Atomic writes: a reader never sees a half-written file, and a crash leaves no partial output."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final_path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `final_path` on success.

    The temporary name keeps the target's suffixes (`.nii.gz`) so writers that infer the format
    from the name keep working. On any exception the temporary file is removed.
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    suffix = (
        "".join(final_path.suffixes[-2:])
        if final_path.name.endswith(".nii.gz")
        else final_path.suffix
    )
    handle, temporary = tempfile.mkstemp(
        prefix=f".{final_path.stem}.", suffix=suffix, dir=final_path.parent
    )
    os.close(handle)
    temporary_path = Path(temporary)
    # mkstemp makes owner-only files; outputs get the usual permissions (0666 minus the umask).
    umask = os.umask(0)
    os.umask(umask)
    temporary_path.chmod(0o666 & ~umask)
    try:
        yield temporary_path
        os.replace(temporary_path, final_path)
    finally:
        temporary_path.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")  # never the locale: outputs hold ≥, ³, ±


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write a binary file atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_csv_atomic(
    path: str | Path,
    columns: Sequence[str],
    rows: Iterable[Mapping[str, object]],
    format_value: Callable[[object], str] = str,
) -> None:
    """Write a CSV atomically: a header of `columns`, then one line per row (missing keys: None)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_value(row.get(name)) for name in columns])
    write_text_atomic(path, buffer.getvalue())
