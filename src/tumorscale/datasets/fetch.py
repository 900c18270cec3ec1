"""Fetch a package's source archive from PyPI into the cache: pip download, sha256 check, atomic.

The archive is downloaded by `python -m pip download` (so proxies, `PIP_INDEX_URL` and certificates
configured for pip apply), into a temporary folder beside the cache entry, checked against its
pinned sha256 and only then moved into place. A cached archive is re-hashed on every use; a
corrupt one is deleted and downloaded again.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tumorscale.errors import FetchError
from tumorscale.user_cache import user_cache_dir

Log = Callable[[str], None]

# Seconds one pip download may take before it is abandoned.
DOWNLOAD_TIMEOUT_S = 900


@dataclass(frozen=True)
class SourceArchive:
    """A pinned source distribution (sdist) on PyPI."""

    package: str
    version: str
    sha256: str
    size_mb: float

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def archive_name(self) -> str:
        """The file name the archive is cached under."""
        return f"{self.package}-{self.version}.tar.gz"


def default_cache() -> Path:
    """Where downloads are kept: `tumorscale.cache.user_cache_dir("downloads")`."""
    return user_cache_dir("downloads")


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise `FetchError` (with both hashes) and delete `path` when its sha256 is not `expected`."""
    actual = sha256_of(path)
    if actual != expected.lower():
        path.unlink(missing_ok=True)
        raise FetchError(
            f"{path}: sha256 mismatch (expected {expected.lower()}, got {actual}); "
            "the file was deleted"
        )


def pip_download_command(requirement: str, destination: Path) -> list[str]:
    """The command that downloads the sdist of `requirement` (no dependencies) into a folder."""
    return [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        "--retries", "2",
        "--dest", str(destination),
        requirement,
    ]  # fmt: skip


_CONNECTION_PROBLEM = re.compile(
    r"\[Errno -?\d+\] [^'\")]+|Temporary failure in name resolution|Network is unreachable"
    r"|Read timed out|Connection to \S+ timed out|CERTIFICATE_VERIFY_FAILED"
)


def _last_error_line(text: str) -> str:
    """pip's last `ERROR` line (else its last line), plus the connection problem behind it."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    last = errors[-1] if errors else (lines[-1] if lines else "no output")
    problems = [match.group(0).strip() for match in map(_CONNECTION_PROBLEM.search, lines) if match]
    if problems and problems[-1] not in last:
        last = f"{last} (connection failed: {problems[-1]})"
    return last


def _run_pip(command: Sequence[str], source: SourceArchive, target: Path) -> None:
    hint = (
        f"fetching {source.requirement} needs network access to PyPI (or a pip index set with "
        f"PIP_INDEX_URL); offline, place the archive (sha256 {source.sha256}) at {target}"
    )
    try:
        result = subprocess.run(
            list(command), capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S, check=False
        )
    except OSError as error:  # missing or non-executable interpreter
        raise FetchError(f"cannot run pip ({error}); {hint}") from error
    except subprocess.TimeoutExpired as error:
        raise FetchError(
            f"pip download of {source.requirement} took over {DOWNLOAD_TIMEOUT_S} s; {hint}"
        ) from error
    if result.returncode != 0:
        last = _last_error_line(result.stderr or result.stdout or "")
        raise FetchError(
            f"pip could not download {source.requirement} (exit {result.returncode}): {last}; "
            f"{hint}"
        )


def fetch_source_archive(
    source: SourceArchive, cache: Path | None = None, log: Log | None = None
) -> Path:
    """The verified sdist of `source` in the cache, downloaded from PyPI only when missing.

    Raises `FetchError` when pip fails (offline, package gone) or the checksum does not match.
    """
    say = log or (lambda _message: None)
    folder = Path(cache) if cache is not None else default_cache()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.archive_name
    if target.is_file():
        if sha256_of(target) == source.sha256.lower():
            say(f"using cached {target}")
            return target
        say(f"cached {target.name} is corrupt (sha256 mismatch); downloading it again")
        target.unlink(missing_ok=True)

    say(
        f"downloading {source.package} {source.version} source ({source.size_mb:.0f} MB) from PyPI…"
    )
    staging = Path(tempfile.mkdtemp(prefix=f".{source.archive_name}.", dir=folder))
    try:
        _run_pip(pip_download_command(source.requirement, staging), source, target)
        files = sorted(p for p in staging.iterdir() if p.is_file())
        if len(files) != 1:
            names = ", ".join(p.name for p in files) or "nothing"
            raise FetchError(
                f"pip download of {source.requirement} into {staging} gave {names}, "
                "expected exactly one source archive"
            )
        verify_sha256(files[0], source.sha256)
        os.replace(files[0], target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"verified sha256 of {target.name}")
    return target
