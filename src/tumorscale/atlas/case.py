"""One AbdomenAtlas case in memory: the CT and its masks, for notebooks and scripts.

Batch commands stream cases through their own readers; this is the one-call way to look at a
case: `load_case("BDMAP_00000001")` returns the canonical (RAS) CT in HU, each tumor organ's mask
(the union of its name variants, or left + right), each organ's lesion mask where a lesion file
exists, the other structures, and the tumor status per organ.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tumorscale.atlas.index import CaseEntry, index_dataset
from tumorscale.atlas.lesions import TumorStatus
from tumorscale.errors import DatasetError
from tumorscale.io import Volume, read_mask_union, read_nifti


@dataclass(frozen=True)
class CaseData:
    """A case's CT and masks, all on the CT's canonical (RAS) grid.

    `organ_masks` and `lesion_masks` are boolean arrays keyed by tumor organ; `structures` by
    file stem (aorta, vessels, ...). An organ without a lesion file has no lesion mask and its
    status is unknown: never read as tumor-free.
    """

    case_id: str
    ct: Volume
    organ_masks: dict[str, np.ndarray]
    lesion_masks: dict[str, np.ndarray]
    structures: dict[str, np.ndarray]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return self.ct.spacing

    def status(self, organ: str) -> TumorStatus:
        """Positive (a lesion voxel), control (lesion file present, empty) or unknown (no file)."""
        lesion = self.lesion_masks.get(organ)
        if lesion is None:
            return TumorStatus.UNKNOWN
        return TumorStatus.POSITIVE if lesion.any() else TumorStatus.CONTROL


def _entry(case: str | Path | CaseEntry) -> CaseEntry:
    if isinstance(case, CaseEntry):
        return case
    index = index_dataset(case)
    if len(index.cases) != 1:
        raise DatasetError(
            Path(case), f"expected one case folder, found {len(index.cases)} cases: "
            "pass one BDMAP_* folder (or index the dataset and pass its CaseEntry)"
        )
    return index.cases[0]


def load_case(case: str | Path | CaseEntry) -> CaseData:
    """Read one case folder (or an indexed `CaseEntry`) into memory.

    Every mask must lie on the CT's grid; a file that does not, or cannot be read, raises an
    error naming it.
    """
    entry = _entry(case)
    problem = entry.ct_problem()
    if problem is not None:
        raise problem
    assert entry.ct is not None
    ct = read_nifti(entry.ct, kind="image")
    grid = ct.source

    def union(paths: tuple[Path, ...]) -> np.ndarray:
        return read_mask_union(paths, entry.ct, grid, canonical=True).array

    organ_masks = {name: union(files.masks) for name, files in entry.organs.items() if files.masks}
    lesion_masks = {
        name: union(files.lesions) for name, files in entry.organs.items() if files.lesions
    }
    structures = {stem: union((path,)) for stem, path in sorted(entry.structures.items())}
    return CaseData(entry.case_id, ct, organ_masks, lesion_masks, structures)
