"""Preview PNGs of synthetic tumors: axial, coronal and sagittal slices through each tumor's centre.

Slices are shown in radiological convention (patient right on the image left, anterior up on
axial, superior up on coronal/sagittal, anterior left on sagittal) with true mm aspect, an
abdominal window of [-160, 240] HU, and the tumor contour in red. Uses matplotlib's object API
(`Figure`, Agg canvas): no pyplot state, safe in worker processes and without a display.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from tumorscale.io import Volume, atomic_path, read_nifti
from tumorscale.organs import ORGANS

WINDOW_HU: tuple[float, float] = (-160.0, 240.0)


def preview_name(case_id: str, organ: str, tumor: int) -> str:
    """`BDMAP_00000003_syn01_liver_1.png`: case id, organ, tumor number (1-based per organ)."""
    return f"{case_id}_{organ}_{tumor}.png"


def _window_box(center: np.ndarray, half_mm: float, spacing: Sequence[float],
                shape: Sequence[int]) -> list[slice]:
    box = []
    for axis in range(3):
        half = math.ceil(half_mm / spacing[axis])
        low = max(0, int(center[axis]) - half)
        high = min(int(shape[axis]), int(center[axis]) + half + 1)
        box.append(slice(low, high))
    return box


def render_tumor_preview(
    ct: Volume,
    tumor_mask: np.ndarray,
    center_mm: Sequence[float],
    path: Path,
    title: str = "",
    window_hu: tuple[float, float] = WINDOW_HU,
    half_width_mm: float = 60.0,
) -> Path:
    """Write a 3-panel PNG (axial, coronal, sagittal through `center_mm`) atomically.

    ct: a canonical (RAS) volume in HU; tumor_mask: same grid, contoured at 0.5;
    center_mm: RAS world point the slices pass through (clipped into the volume);
    half_width_mm: half the field of view shown around the centre.
    """
    from matplotlib.figure import Figure

    inverse = np.linalg.inv(np.asarray(ct.affine, dtype=float))
    voxel = inverse @ np.append(np.asarray(center_mm, dtype=float), 1.0)
    center = np.clip(np.rint(voxel[:3]), 0, np.asarray(ct.shape) - 1).astype(int)
    spacing = ct.spacing
    box = _window_box(center, half_width_mm, spacing, ct.shape)
    i, j, k = (int(v) for v in center)
    views = (
        # name, 2-D slice indexer, (row axis, column axis) of the slice in array order
        ("axial", (box[0], box[1], k), (0, 1)),
        ("coronal", (box[0], j, box[2]), (0, 2)),
        ("sagittal", (i, box[1], box[2]), (1, 2)),
    )
    figure = Figure(figsize=(12.0, 4.4), dpi=100)
    axes = figure.subplots(1, 3)
    for axis, (name, indexer, (first, second)) in zip(axes, views, strict=True):
        image = np.asarray(ct.array[indexer], dtype=np.float32)
        mask = np.asarray(tumor_mask[indexer], dtype=np.float32)
        # Array (first, second) -> display: second axis up, first axis across.
        # Then flip across: patient right (+x) on the left (radiological) on axial and coronal,
        # anterior (+y) on the left on sagittal.
        image, mask = image.T[::-1, ::-1], mask.T[::-1, ::-1]
        extent = (0.0, image.shape[1] * spacing[first], 0.0, image.shape[0] * spacing[second])
        axis.imshow(image, cmap="gray", vmin=window_hu[0], vmax=window_hu[1], extent=extent,
                    origin="upper", interpolation="nearest")
        if mask.max() >= 0.5 and min(mask.shape) >= 2:
            axis.contour(mask, levels=[0.5], colors="red", linewidths=0.8, extent=extent,
                         origin="upper")
        axis.set_title(name, fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
    if title:
        figure.suptitle(title, fontsize=10)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.86, wspace=0.04)
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", metadata={"Software": None})
    return path


def _row_title(row: dict) -> str:
    parts = [f"{row['case_id']}  {row['organ']} #{row['tumor']}", str(row.get("kind") or "")]
    for key, label, unit in (("diameter_mm", "d", "mm"), ("contrast_hu", "ΔHU", ""),
                             ("achieved_contrast_hu", "achieved", " HU")):
        value = row.get(key)
        if value not in (None, ""):
            parts.append(f"{label} {float(value):.0f}{unit}")
    return "   ".join(part for part in parts if part)


def _tumor_rows(rows: Iterable[dict]) -> list[dict]:
    return [row for row in rows if row.get("tumor") not in (None, "") and not row.get("skipped")]


def write_case_previews(
    ct: Volume, lesions: dict[str, np.ndarray], rows: Iterable[dict], folder: Path,
    only_missing: bool = False,
) -> list[Path]:
    """One PNG per inserted tumor of a case (synthesis.csv rows) into `folder`; returns paths.

    ct: canonical volume in HU; lesions: organ -> lesion mask on the same grid.
    """
    written = []
    for row in _tumor_rows(rows):
        name = preview_name(str(row["case_id"]), str(row["organ"]), int(row["tumor"]))
        path = Path(folder) / name
        if only_missing and path.exists():
            continue
        center = [float(row[f"center_{axis}_mm"]) for axis in "xyz"]
        diameter = float(row.get("diameter_mm") or 20.0)
        render_tumor_preview(ct, lesions[str(row["organ"])], center, path, _row_title(row),
                             half_width_mm=max(50.0, 1.5 * diameter))
        written.append(path)
    return written


def previews_for_written_case(case_folder: Path, rows: list[dict], folder: Path) -> list[Path]:
    """Previews of an already written case that are missing (reads its CT and lesion files)."""
    wanted = _tumor_rows(rows)
    missing = [
        row for row in wanted
        if not (Path(folder) / preview_name(str(row["case_id"]), str(row["organ"]),
                                             int(row["tumor"]))).exists()
    ]
    if not missing:
        return []
    ct = read_nifti(Path(case_folder) / "ct.nii.gz", kind="image")
    lesions = {}
    for organ in {str(row["organ"]) for row in missing}:
        path = Path(case_folder) / "segmentations" / f"{ORGANS[organ].lesion_file}.nii.gz"
        lesions[organ] = read_nifti(path, kind="mask").array
    return write_case_previews(ct, lesions, missing, folder, only_missing=True)
