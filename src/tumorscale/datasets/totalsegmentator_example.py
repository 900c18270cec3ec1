"""The real example CT of TotalSegmentator, as one AbdomenAtlas 2.0 case.

The `totalsegmentator==2.18.0` source archive on PyPI carries a real abdomen+pelvis CT
(`tests/reference_files/example_ct.nii.gz`, 122×101×112 voxels at 3 mm) and its 'total' task label
map (`example_seg_fast_force_split.nii.gz`). The id→name map is read from the archive's
`totalsegmentator/map_to_binary.py` by literal parsing (`ast`), never by executing it.

Only organ masks are written. The label map says nothing about tumors, so no lesion file is written:
tumor status of every organ stays *unknown* (an empty lesion file would claim a control case).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from tumorscale.datasets.fetch import Log, SourceArchive, fetch_source_archive
from tumorscale.errors import FetchError
from tumorscale.io import check_same_grid, read_nifti, write_nifti
from tumorscale.jobs import MARKER_KEY, completed_marker, write_marker

TOTALSEG_PACKAGE = "totalsegmentator"
TOTALSEG_VERSION = "2.18.0"
TOTALSEG_SDIST_SHA256 = "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03"
TOTALSEG_SDIST = SourceArchive(TOTALSEG_PACKAGE, TOTALSEG_VERSION, TOTALSEG_SDIST_SHA256, 38.0)

DEFAULT_CASE_ID = "BDMAP_00000001"

# Paths inside the archive, below its top-level `totalsegmentator-<version>/` folder.
CT_MEMBER = "tests/reference_files/example_ct.nii.gz"
LABELS_MEMBER = "tests/reference_files/example_seg_fast_force_split.nii.gz"
CLASS_MAP_MEMBER = "totalsegmentator/map_to_binary.py"
CLASS_MAP_TASK = "total"

# TotalSegmentator 'total' class name -> AbdomenAtlas 2.0 mask name (several classes may share a
# name: their union is written). Classes not listed (bones, muscles, heart, ...) are not written;
# nor are `kidney_cyst_left/right`, which are lesions, not organs.
TOTALSEG_TO_ATLAS: dict[str, str] = {
    "liver": "liver",
    "pancreas": "pancreas",
    "kidney_left": "kidney_left",
    "kidney_right": "kidney_right",
    "colon": "colon",
    "esophagus": "esophagus",
    "aorta": "aorta",
    "gallbladder": "gall_bladder",
    "inferior_vena_cava": "postcava",
    "spleen": "spleen",
    "stomach": "stomach",
    "adrenal_gland_left": "adrenal_gland_left",
    "adrenal_gland_right": "adrenal_gland_right",
    "urinary_bladder": "bladder",
    "duodenum": "duodenum",
    "femur_left": "femur_left",
    "femur_right": "femur_right",
    "small_bowel": "intestine",
    "lung_upper_lobe_left": "lung_left",
    "lung_lower_lobe_left": "lung_left",
    "lung_upper_lobe_right": "lung_right",
    "lung_middle_lobe_right": "lung_right",
    "lung_lower_lobe_right": "lung_right",
    "portal_vein_and_splenic_vein": "portal_vein_and_splenic_vein",
    "prostate": "prostate",
}

_INT16 = np.iinfo(np.int16)


def parse_class_map(
    source_text: str, task: str = CLASS_MAP_TASK, origin: str = "map_to_binary.py"
) -> dict[int, str]:
    """`class_map[task]` from the text of TotalSegmentator's `map_to_binary.py`, parsed literally.

    Top-level `class_map = {...}` and `class_map["<task>"] = {...}` statements are evaluated with
    `ast.literal_eval` in order; anything that is not a literal raises `FetchError`.
    """
    try:
        tree = ast.parse(source_text, filename=origin)
    except SyntaxError as error:
        raise FetchError(f"{origin}: not valid Python ({error.msg})") from error
    found: dict[int, str] | None = None
    for node in tree.body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        whole = isinstance(target, ast.Name) and target.id == "class_map"
        entry = (
            isinstance(target, ast.Subscript)
            and isinstance(target.value, ast.Name)
            and target.value.id == "class_map"
            and isinstance(target.slice, ast.Constant)
            and target.slice.value == task
        )
        if not (whole or entry):
            continue
        try:
            value = ast.literal_eval(node.value)
        except ValueError as error:
            raise FetchError(
                f"{origin}: class_map (line {node.lineno}) is not a literal"
            ) from error
        if whole:
            if isinstance(value, dict) and task in value:
                found = value[task]
        else:
            found = value
    if not isinstance(found, dict) or not found:
        raise FetchError(f"{origin}: no class_map[{task!r}] dictionary found")
    if not all(isinstance(k, int) and isinstance(v, str) for k, v in found.items()):
        raise FetchError(f"{origin}: class_map[{task!r}] is not a map of int ids to names")
    return dict(found)


def extract_example_files(archive: Path, destination: Path) -> dict[str, Path]:
    """Extract the CT, the label map and the class map from the sdist into `destination`.

    Returns {member: path}. Members are read by name and written under names chosen here, so the
    archive cannot write anywhere else.
    """
    wanted = {
        CT_MEMBER: "ct.nii.gz",
        LABELS_MEMBER: "labels.nii.gz",
        CLASS_MAP_MEMBER: "map_to_binary.py",
    }
    found: dict[str, Path] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                inner = member.name.split("/", 1)[1] if "/" in member.name else member.name
                if inner not in wanted or not member.isfile():
                    continue
                handle = tar.extractfile(member)
                if handle is None:  # pragma: no cover - isfile() members always have data
                    continue
                path = destination / wanted[inner]
                with handle, open(path, "wb") as out:
                    shutil.copyfileobj(handle, out)
                found[inner] = path
                if len(found) == len(wanted):
                    break
    except (tarfile.TarError, OSError, EOFError) as error:
        raise FetchError(f"{archive}: unreadable source archive ({error})") from error
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise FetchError(f"{archive}: archive lacks {', '.join(missing)}")
    return found


def atlas_masks(labels: np.ndarray, class_map: dict[int, str]) -> dict[str, np.ndarray]:
    """AbdomenAtlas-named binary masks (uint8) from a TotalSegmentator label map; non-empty only."""
    ids_by_name: dict[str, list[int]] = {}
    for class_id, name in sorted(class_map.items()):
        atlas_name = TOTALSEG_TO_ATLAS.get(name)
        if atlas_name is not None:
            ids_by_name.setdefault(atlas_name, []).append(class_id)
    masks: dict[str, np.ndarray] = {}
    for atlas_name, ids in sorted(ids_by_name.items()):
        mask = np.isin(labels, ids)
        if mask.any():
            masks[atlas_name] = mask.astype(np.uint8)
    return masks


def write_atlas_case(
    ct_path: Path,
    labels_path: Path,
    class_map: dict[int, str],
    case_dir: Path,
    log: Log | None = None,
) -> dict[str, int]:
    """Write `case_dir/ct.nii.gz` (int16 HU) and `case_dir/segmentations/<name>.nii.gz` (uint8).

    Outputs keep the input files' geometry. Returns {mask name: voxel count}.
    """
    say = log or (lambda _message: None)
    ct = read_nifti(ct_path, kind="image")
    labels = read_nifti(labels_path, kind="labels")
    check_same_grid(labels_path, labels.geometry, ct_path, ct.geometry)
    hu = np.round(ct.array)
    if hu.size and (hu.min() < _INT16.min or hu.max() > _INT16.max):
        raise FetchError(f"{ct_path}: intensities {hu.min():g}..{hu.max():g} do not fit int16 HU")
    write_nifti(ct.with_array(hu.astype(np.int16)), case_dir / "ct.nii.gz", dtype=np.int16)
    counts: dict[str, int] = {}
    for name, mask in atlas_masks(labels.array, class_map).items():
        path = case_dir / "segmentations" / f"{name}.nii.gz"
        write_nifti(labels.with_array(mask), path, dtype=np.uint8)
        counts[name] = int(mask.sum(dtype=np.int64))
    say(f"wrote ct.nii.gz and {len(counts)} organ masks: {', '.join(counts)}")
    return counts


MARKER_NAME = ".example.json"


def _case_files(case_dir: Path) -> list[Path]:
    return [case_dir / "ct.nii.gz", *sorted((case_dir / "segmentations").glob("*.nii.gz"))]


_MARKER_INPUTS = {"archive_sha256": TOTALSEG_SDIST_SHA256}
_MARKER_SETTINGS = {"format": 1, "task": CLASS_MAP_TASK}


def _write_marker(case_dir: Path) -> None:
    """What the case was made from (the pinned archive) and what it holds (size, sha256)."""
    write_marker(case_dir / MARKER_NAME, _MARKER_INPUTS, _MARKER_SETTINGS, _case_files(case_dir),
                 hashed=True)  # fmt: skip


def _marker(case_dir: Path) -> dict | None:
    """The case's marker in any format (also one written by an older tumorscale), or None."""
    try:
        marker = json.loads((case_dir / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def is_complete_case(case_dir: Path) -> bool:
    """True when `case_dir` holds the example exactly as written from the pinned archive."""
    marker = completed_marker(case_dir / MARKER_NAME, _MARKER_INPUTS, _MARKER_SETTINGS)
    if marker is None:
        return False
    listed = {name for name, *_ in marker[MARKER_KEY]["outputs"]}
    try:  # a mask added by hand since is not part of the example
        return listed == {str(p.relative_to(case_dir).as_posix()) for p in _case_files(case_dir)}
    except (OSError, ValueError):
        return False


def fetch_example_ct(
    out: Path,
    cache: Path | None = None,
    case_id: str = DEFAULT_CASE_ID,
    log: Log | None = None,
) -> Path:
    """Write TotalSegmentator's real example CT as `out/<case_id>/` in AbdomenAtlas 2.0 layout.

    Downloads the pinned `totalsegmentator` source archive from PyPI once (checksummed, kept in
    `cache`, default `user_cache_dir("downloads")`). Writes `ct.nii.gz` (int16 HU) and
    `segmentations/<organ>.nii.gz` (uint8) for every non-empty structure with an AbdomenAtlas name;
    no lesion files (tumor status unknown). An existing complete case is left as it is. The case
    appears atomically: it is built in a hidden folder beside it and renamed into place.
    Returns the case folder. Raises `FetchError` when the download or checksum fails.
    """
    say = log or (lambda _message: None)
    out = Path(out)
    if not case_id or Path(case_id).name != case_id or case_id.startswith("."):
        raise ValueError(f"case_id must be a plain folder name, got {case_id!r}")
    case_dir = out / case_id
    if is_complete_case(case_dir):
        say(f"{case_dir} already exists; skipping")
        return case_dir
    if _marker(case_dir) is not None:  # ours, but changed since (or from another archive)
        say(f"{case_dir} changed since it was written; writing it again")
        shutil.rmtree(case_dir)
    if case_dir.exists() and any(case_dir.iterdir()):
        raise FetchError(
            f"{case_dir}: exists but is not a complete example case; remove it or choose another "
            "folder"
        )

    archive = fetch_source_archive(TOTALSEG_SDIST, cache=cache, log=log)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{case_id}.partial-", dir=out))
    try:
        say(f"extracting the example CT from {archive.name}")
        files = extract_example_files(archive, staging)
        map_path = files[CLASS_MAP_MEMBER]
        class_map = parse_class_map(map_path.read_text(encoding="utf-8"), origin=str(map_path))
        built = staging / case_id
        write_atlas_case(files[CT_MEMBER], files[LABELS_MEMBER], class_map, built, log=log)
        _write_marker(built)
        if case_dir.exists():  # empty folder left by the user (checked above)
            case_dir.rmdir()
        try:
            os.rename(built, case_dir)
        except OSError:
            if not is_complete_case(case_dir):  # another process did not just finish it
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"example case written to {case_dir}")
    return case_dir
