"""Fetchers for public example data: downloaded on demand, checksummed, cached, never committed."""

from tumorscale.datasets.fetch import (
    SourceArchive,
    fetch_source_archive,
    pip_download_command,
    sha256_of,
    verify_sha256,
)
from tumorscale.datasets.totalsegmentator_example import (
    DEFAULT_CASE_ID,
    TOTALSEG_PACKAGE,
    TOTALSEG_SDIST,
    TOTALSEG_SDIST_SHA256,
    TOTALSEG_TO_ATLAS,
    TOTALSEG_VERSION,
    fetch_example_ct,
    parse_class_map,
    write_atlas_case,
)

__all__ = [
    "DEFAULT_CASE_ID",
    "TOTALSEG_PACKAGE",
    "TOTALSEG_SDIST",
    "TOTALSEG_SDIST_SHA256",
    "TOTALSEG_TO_ATLAS",
    "TOTALSEG_VERSION",
    "SourceArchive",
    "fetch_example_ct",
    "fetch_source_archive",
    "parse_class_map",
    "pip_download_command",
    "sha256_of",
    "verify_sha256",
    "write_atlas_case",
]
