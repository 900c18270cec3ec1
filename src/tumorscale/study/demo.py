"""The demo (what `make demo` runs): a miniature scaling study on phantoms, end to end.

Phantom cohorts (annotated liver cases with reference tumors and tumor-free controls, plus an
out-of-distribution cohort in a second scanner style) → a study of real-subset sizes × {real only,
real + 3× synthetic, including 0 real scans} with the `tiny` network at 3 mm → fit → HTML report.
Its size is set by what a 2-core laptop trains in about 8 minutes: 3 mm voxels and 48³ patches
(coarser grids left most phantom tumors a few voxels wide), a fixed budget of iterations per run
(what `benchmarks/bench_learning.py` shows the tiny network needs to learn this task), and
parallel single-threaded runs where there is no GPU (the tiny network uses a second thread
poorly). Whatever the curves show is reported as measured.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from tumorscale.phantom import PhantomOptions, write_cohort
from tumorscale.study.config import load_study
from tumorscale.study.executors import StudyProgress, execute_study
from tumorscale.study.plan import load_plan, make_plan

ORGANS = ("liver",)  # the largest organ: a 3 mm demo can learn its tumors in minutes
SPACING_MM = 3.0
PHANTOM_SHAPE = (112, 88, 96)  # about 3 x 3 x 3.5 mm over the phantom's field of view


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: cohort sizes, real-subset counts (all of them for real only; those
    of `synthetic_counts` with synthetic tumors) and training iterations per run."""

    data_cases: int
    ood_cases: int
    id_test_cases: int
    real_counts: tuple[int, ...]
    synthetic_counts: tuple[int, ...]
    iterations: int
    bootstrap: int


# Six runs: three pairs side by side on 2 cores. Synthetic tumors at 0 (label-free), at the
# smallest and at the largest real count, where they matter and where they are compared.
FULL = DemoSize(data_cases=36, ood_cases=6, id_test_cases=12, real_counts=(0, 2, 6, 24),
                synthetic_counts=(0, 2, 24), iterations=650, bootstrap=1000)  # fmt: skip
QUICK = DemoSize(data_cases=10, ood_cases=3, id_test_cases=3, real_counts=(0, 2, 4),
                 synthetic_counts=(0, 4), iterations=40, bootstrap=200)  # fmt: skip


def _phantoms(style: str) -> PhantomOptions:
    # A fixed grid near the training spacing: anatomy, HU and noise as usual.
    return PhantomOptions(shape=PHANTOM_SHAPE, tumor_fraction=0.7, female_fraction=0.0,
                          tumor_organs=ORGANS, style=style)  # fmt: skip


def cpu_processes() -> int:
    """Parallel runs: one per core (up to 4) on a CPU machine, one at a time on a GPU."""
    import torch

    return 1 if torch.cuda.is_available() else max(1, min(4, os.cpu_count() or 1))


def study_description(folder: Path, size: DemoSize) -> dict[str, object]:
    """The demo's study file, as a user would write it (saved next to the study)."""
    return {
        "name": "tumorscale-demo",
        "data": str(folder / "phantoms"),
        "organs": list(ORGANS),
        "real_counts": list(size.real_counts),
        "conditions": [
            {"name": "real-only", "synthetic_ratio": 0},
            {"name": "real+3x-synthetic", "synthetic_ratio": 3,
             "real_counts": list(size.synthetic_counts)},
        ],
        "seeds": [0],
        "study_seed": 0,
        "id_test": {"name": "in_distribution", "count": size.id_test_cases},
        "ood_tests": {"out_of_distribution": str(folder / "phantoms-ood")},
        "compute": {"policy": "fixed", "iterations": size.iterations},
        "train": {
            "model.network": "tiny",
            "patch_size": [48, 48, 48],
            "data.spacing_mm": [SPACING_MM] * 3,
            "foreground_fraction": 0.5,  # bench_learning's setting: tumors in half the patches
            "optim.name": "adamw",  # converges in hundreds of iterations, unlike SGD 0.99
            "optim.lr": 0.003,
            # Intensity transforms only: cheap, and what lets the HU / 100 input transfer to
            # the second scanner style; the spatial ones cost more than 650 iterations repay.
            "augment": True,
            "augment_spatial": False,
            "workers": 0,
            "log_every": 10,
            "checkpoint_every": 100,
        },
        # Organ masks (the phantoms' own; TotalSegmentator's on real CT) keep liver lesions only.
        "predict": {"tta": False, "overlap": 0.25, "window_batch_size": 4, "organ_masks": True},
        "evaluation": {"bootstrap_resamples": min(size.bootstrap, 500)},
    }


@dataclass(frozen=True)
class DemoResult:
    study: Path
    report_html: Path
    headline: list[str]


def _headline(fit_md: Path, limit: int = 8) -> list[str]:
    """The bullets of fit.md's "Headlines" section, without Markdown emphasis."""
    lines = fit_md.read_text("utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "## Headlines"), None)
    if start is None:
        return []
    bullets = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("- "):
            bullets.append(line[2:].replace("**", ""))
    return bullets[:limit]


def make_demo(
    folder: Path,
    quick: bool = False,
    progress: StudyProgress | None = None,
    log: Callable[[str], None] = lambda text: None,
) -> DemoResult:
    """Generate the cohorts, plan and run the study, fit and report; resumable like a study."""
    from tumorscale.study.fit import fit_study_folder
    from tumorscale.study.report import report_study_folder

    size = QUICK if quick else FULL
    # Absolute: the study file's paths are resolved against its own folder, not the caller's.
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    log(f"phantoms: {size.data_cases} annotated cases and {size.ood_cases} out-of-distribution")
    write_cohort(folder / "phantoms", size.data_cases, seed=1, options=_phantoms("standard"))
    write_cohort(folder / "phantoms-ood", size.ood_cases, seed=2, options=_phantoms("ood"))
    study_file = folder / "study.yaml"
    study_file.write_text(
        yaml.safe_dump(study_description(folder, size), sort_keys=False), encoding="utf-8"
    )
    study = folder / "study"
    if not (study / "plan.yaml").exists():
        make_plan(load_study(study_file), study)
    plan = load_plan(study)
    processes = cpu_processes()
    real_only = [n for n in size.real_counts if n > 0]
    log(f"study: {len(plan.runs)} runs (real only at {real_only} real scans, with 3× synthetic "
        f"tumors at {list(size.synthetic_counts)}), {size.iterations} iterations each, "
        f"{processes} at once")
    outcome = execute_study(study, "local", progress=progress, processes=processes)
    if outcome.failed:
        failed = ", ".join(f"{f.run_id} ({f.step}: {f.error})" for f in outcome.failed)
        raise RuntimeError(f"demo runs failed: {failed}; rerun `tumorscale demo` to resume")
    log("fitting the scaling laws and writing the report")
    _, fit_md = fit_study_folder(study, n_bootstrap=size.bootstrap, seed=0)
    paths = report_study_folder(study)
    return DemoResult(study, paths.html, _headline(fit_md))
