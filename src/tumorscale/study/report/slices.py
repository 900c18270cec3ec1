"""Example slices for the report: CT through the largest truth tumor, truth and predictions.

For each condition, the smallest and largest real-count run (lowest seed) is shown on the same
axial slice, cropped around the tumor. The lesion masks are read leniently (any organ's lesion
files, unioned; 0/255 masks accepted).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure

from tumorscale.errors import InputFileError
from tumorscale.io import read_nifti
from tumorscale.masks import label_components, mask_union
from tumorscale.organs import TUMOR_ORGANS, FileRole, classify_segmentation, nifti_stem
from tumorscale.study.report.document import FigureFiles
from tumorscale.study.report.figures import save_figure
from tumorscale.study.report.format import num, slug
from tumorscale.study.report.load import StudyData, conditions_of, organs_of, plan_list

CT_WINDOW_HU = (-175.0, 250.0)
EXAMPLE_VIEW_MM = 100.0  # smallest crop around the example tumor, so context stays visible
MAX_CASES_SCANNED = 12  # test cases read to find the example tumor (bounded report time)


@dataclass(frozen=True)
class ExampleRun:
    run_id: str
    condition: str
    n_real: int


@dataclass(frozen=True)
class ExampleCase:
    case_dir: Path
    slice_index: int
    ct: np.ndarray
    truth: np.ndarray
    spacing: tuple[float, float, float]
    tumor_voxels: int
    window: tuple[slice, slice]  # (i, j) ranges of the shown crop around the tumor


def example_runs(data: StudyData) -> dict[str, list[ExampleRun]]:
    """Per condition, the smallest and the largest real-count run (lowest seed of each)."""
    runs: dict[str, dict[int, tuple[float, str]]] = defaultdict(dict)
    for row in data.rows:
        run_id, condition, n_real = row.get("run_id"), row.get("condition"), num(row.get("n_real"))
        if not run_id or not condition or n_real is None:
            continue
        seed = num(row.get("seed"))
        candidate = (seed if seed is not None else math.inf, run_id)
        best = runs[condition].get(int(n_real))
        runs[condition][int(n_real)] = min(best, candidate) if best else candidate
    chosen = {}
    for condition in conditions_of(data):
        by_count = runs.get(condition, {})
        counts = sorted({min(by_count), max(by_count)}) if by_count else []
        chosen[condition] = [ExampleRun(by_count[n][1], condition, n) for n in counts]
    return {condition: picks for condition, picks in chosen.items() if picks}


def _lesion_files(folder: Path, organs: set[str]) -> list[Path]:
    """The lesion files of `organs` in a `segmentations/` folder, by name."""
    found = []
    for path in sorted(folder.glob("*.nii*")) if folder.is_dir() else []:
        stem = nifti_stem(path.name)
        meaning = classify_segmentation(stem) if stem else None
        if meaning is not None and meaning.role == FileRole.LESION and meaning.organ in organs:
            found.append(path)
    return found


def _lesion_union(folder: Path, organs: set[str]) -> np.ndarray | None:
    """Union of the lesion masks of `organs` in a `segmentations/` folder (None: none found);
    tolerant: some releases store 0/255, and a stray file on another grid is left out."""
    masks = (read_nifti(path, kind="labels").array > 0 for path in _lesion_files(folder, organs))
    return mask_union(masks, skip_mismatched=True)


def _largest_tumor(truth: np.ndarray) -> tuple[int, int, np.ndarray]:
    """Axial index where the largest tumor is widest, its voxel count, its mask on that slice."""
    labels, voxel_counts = label_components(truth)
    largest = labels == int(np.argmax(voxel_counts)) + 1
    index = int(np.argmax(largest.sum(axis=(0, 1))))
    return index, int(voxel_counts.max()), largest[..., index]


def view_window(
    tumor: np.ndarray, spacing: Sequence[float], min_mm: float = EXAMPLE_VIEW_MM
) -> tuple[slice, slice]:
    """A crop of an axial slice centred on the tumor: at least `min_mm` or twice the tumor wide."""
    window = []
    for axis, index in enumerate(np.nonzero(tumor)):
        centre = (index.min() + index.max()) / 2
        width_mm = max(min_mm, 2.0 * (index.max() - index.min() + 1) * spacing[axis])
        half = width_mm / 2 / spacing[axis]
        low = max(0, int(np.floor(centre - half)))
        window.append(slice(low, min(tumor.shape[axis], int(np.ceil(centre + half)) + 1)))
    return window[0], window[1]


def find_example_case(test_dir: Path, organs: set[str]) -> ExampleCase | None:
    """Among the first test cases, the one with the largest truth tumor (None: no tumor found)."""
    best: ExampleCase | None = None
    case_dirs = sorted(p for p in test_dir.iterdir() if (p / "ct.nii.gz").is_file())
    for case_dir in case_dirs[:MAX_CASES_SCANNED]:
        try:
            truth = _lesion_union(case_dir / "segmentations", organs)
            if truth is None or not truth.any():
                continue
            slice_index, voxels, tumor = _largest_tumor(truth)
            if best is not None and voxels <= best.tumor_voxels:
                continue
            ct = read_nifti(case_dir / "ct.nii.gz")
        except (InputFileError, OSError, ValueError):
            continue  # one unreadable case must not sink the report
        if ct.shape == truth.shape:
            window = view_window(tumor, ct.spacing)
            best = ExampleCase(case_dir, slice_index, ct.array, truth, ct.spacing, voxels, window)
    return best


def _axial(array: np.ndarray, index: int, window: tuple[slice, slice] | None = None) -> np.ndarray:
    # RAS array [i=R, j=A, k=S]: radiological view (patient right on the left), anterior up.
    rows, columns = window or (slice(None), slice(None))
    return array[rows, columns, index][::-1, :].T


def _draw_example(axes: Axes, case: ExampleCase, prediction: np.ndarray | None, title: str) -> None:
    def view(array: np.ndarray) -> np.ndarray:
        return _axial(array, case.slice_index, case.window).astype(float)

    aspect = case.spacing[1] / case.spacing[0]
    low, high = CT_WINDOW_HU
    axes.imshow(view(case.ct), cmap="gray", origin="lower", vmin=low, vmax=high, aspect=aspect)
    axes.contour(view(case.truth), levels=[0.5], colors="#00e000", linewidths=1.2)
    if prediction is None:
        title += "\n(no prediction found)"
    elif (predicted := view(prediction)).any():
        axes.contour(predicted, levels=[0.5], colors="#ff3030", linewidths=1.2)
    else:
        title += "\n(nothing predicted in view)"
    axes.set_title(title, fontsize=8)
    axes.set_xticks([])
    axes.set_yticks([])


def _prediction(
    plan_dir: Path, run: ExampleRun, aliases: Sequence[str], case: ExampleCase, organs: set[str]
) -> np.ndarray | None:
    """The run's predicted lesions (union over organs) for the case; None when absent."""
    for name in aliases:
        folder = plan_dir / "runs" / run.run_id / "predict" / name / case.case_dir.name
        try:
            mask = _lesion_union(folder / "segmentations", organs)
        except (InputFileError, OSError, ValueError):
            return None
        if mask is not None:
            return mask if mask.shape == case.truth.shape else None
        if folder.is_dir():  # predicted, but no lesion file at all: nothing found
            return np.zeros_like(case.truth)
    return None


def _report_organs(data: StudyData) -> set[str]:
    planned = [o for o in plan_list(data.plan, "organs", "organ") if isinstance(o, str)]
    known = set(planned) & set(TUMOR_ORGANS) or set(organs_of(data)) & set(TUMOR_ORGANS)
    return known or set(TUMOR_ORGANS)


def example_figure(
    data: StudyData, plan_dir: Path, test_set: str, folder: Path
) -> FigureFiles | None:
    """CT slices through the largest truth tumor: truth (green) and predictions (red) per run."""
    test_dir, runs = data.test_folder(plan_dir, test_set), example_runs(data)
    organs, aliases = _report_organs(data), data.test_set_aliases(test_set)
    case = find_example_case(test_dir, organs) if test_dir is not None and runs else None
    if case is None:
        return None
    columns = max(len(picks) for picks in runs.values())
    figure = MplFigure(figsize=(2.8 * columns, 2.9 * len(runs)), layout="constrained")
    grid = figure.subplots(len(runs), columns, squeeze=False)
    for row, (condition, picks) in enumerate(runs.items()):
        for column in range(columns):
            axes = grid[row][column]
            if column >= len(picks):
                axes.set_axis_off()
                continue
            run = picks[column]
            title = f"{condition}, n_real = {run.n_real:,}"
            prediction = _prediction(plan_dir, run, aliases, case, organs)
            _draw_example(axes, case, prediction, title)
    caption = (
        f"{data.test_set_label(test_set)}: case {case.case_dir.name}, "
        f"axial slice {case.slice_index} "
        f"through its largest tumor ({case.tumor_voxels:,} voxels), cropped around it; CT window "
        f"[{CT_WINDOW_HU[0]:g}, {CT_WINDOW_HU[1]:g}] HU. Green: truth; red: prediction of the "
        "smallest and largest real-count run of each condition (lowest seed)."
    )
    title = f"example slices, {data.test_set_label(test_set)}"
    return save_figure(figure, folder, f"example_{slug(test_set)}", caption, title)
