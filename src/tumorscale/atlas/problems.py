"""Problems found while indexing or checking a dataset: each names its file and the reason."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path


class Severity(str, Enum):
    ERROR = "error"  # the file (or case) cannot be used as it is
    WARNING = "warning"  # reported and ignored (e.g. an unknown file name)


@dataclass(frozen=True)
class Problem:
    path: Path
    reason: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        return f"{self.severity.value}: {self.path}: {self.reason}"

    def to_json(self) -> dict[str, str]:
        return {"path": str(self.path), "reason": self.reason, "severity": self.severity.value}
