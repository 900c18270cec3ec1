"""A structural check of an nnU-Net v2 raw dataset, written from nnU-Net's documented format.

documentation/dataset_format.md: a `DatasetXXX_Name` folder (3-digit id) with dataset.json,
imagesTr/ and labelsTr/; images `{case}_{XXXX}{file_ending}` (one file per channel, 4-digit
channel index), labels `{case}{file_ending}` with the same geometry; dataset.json holds
channel_names, labels (name -> int, background 0, consecutive integers), numTraining and
file_ending; only lossless formats. Shared by nothing in nnU-Net: this is our own reading.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from tumorscale.errors import InputFileError
from tumorscale.io import Geometry, read_geometry, read_nifti

_FOLDER = re.compile(r"^Dataset\d{3}_.+$")
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_LOSSY_ENDINGS = (".jpg", ".jpeg")
_NIFTI_ENDINGS = (".nii.gz", ".nii")
_REQUIRED = {"channel_names": dict, "labels": dict, "numTraining": int, "file_ending": str}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_channels(path: Path, channels: dict) -> list[str]:
    keys = list(channels)
    if not keys:
        return [f"{path}: channel_names is empty"]
    if not all(isinstance(key, str) and key.isdigit() for key in keys):
        return [f"{path}: channel_names keys must be channel indices '0', '1', ...; got {keys}"]
    problems = []
    if sorted(int(key) for key in keys) != list(range(len(keys))):
        problems.append(f"{path}: channel_names keys must be 0..{len(keys) - 1}; got {keys}")
    if not all(isinstance(value, str) and value for value in channels.values()):
        problems.append(f"{path}: channel_names values must be non-empty names")
    return problems


def _label_values(labels: dict) -> Iterable[object]:
    for value in labels.values():
        yield from (value if isinstance(value, list | tuple) else [value])


def _check_labels(path: Path, meta: dict) -> list[str]:
    labels = meta["labels"]
    values = list(_label_values(labels))
    if not all(_is_int(value) for value in values):
        return [f"{path}: labels values must be integers (or lists of integers); got {labels}"]
    problems = []
    if labels.get("background") != 0:
        problems.append(f"{path}: labels must map 'background' to 0")
    if sorted(set(values)) != list(range(len(set(values)))):
        problems.append(
            f"{path}: label values must be consecutive integers from 0; got {sorted(set(values))}"
        )
    regions = any(isinstance(value, list | tuple) for value in labels.values())
    if regions and "regions_class_order" not in meta:
        problems.append(f"{path}: region labels (lists) need 'regions_class_order'")
    return problems


def _load_dataset_json(folder: Path) -> tuple[dict | None, list[str]]:
    path = folder / "dataset.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, [f"{path}: missing"]
    except (OSError, ValueError) as error:
        return None, [f"{path}: not valid JSON ({error})"]
    if not isinstance(meta, dict):
        return None, [f"{path}: must hold a JSON object"]
    problems = []
    for key, kind in _REQUIRED.items():
        if key not in meta:
            problems.append(f"{path}: required key '{key}' is missing")
        elif not isinstance(meta[key], kind) or (kind is int and not _is_int(meta[key])):
            problems.append(f"{path}: '{key}' must be of type {kind.__name__}")
    if problems:
        return None, problems
    problems += _check_channels(path, meta["channel_names"])
    problems += _check_labels(path, meta)
    if meta["numTraining"] < 0:
        problems.append(f"{path}: numTraining must be >= 0")
    ending = meta["file_ending"]
    if not ending.startswith(".") or len(ending) < 2:
        problems.append(f"{path}: file_ending must start with '.' (e.g. '.nii.gz'); got {ending!r}")
    elif ending.lower() in _LOSSY_ENDINGS:
        problems.append(f"{path}: file_ending {ending!r} is lossy; nnU-Net needs lossless files")
    return meta, problems


def _files(folder: Path, ending: str) -> tuple[list[str], list[str]]:
    """(stems of files ending with `ending`, names of other files) in a folder."""
    stems, others = [], []
    for entry in sorted(folder.iterdir()):
        if entry.is_file():
            if entry.name.endswith(ending):
                stems.append(entry.name[: -len(ending)])
            else:
                others.append(entry.name)
    return stems, others


def _image_cases(folder: Path, ending: str, channels: set[int]) -> tuple[dict, list[str]]:
    """case id -> {channel: image path}, and naming problems, from imagesTr."""
    stems, others = _files(folder, ending)
    cases: dict[str, dict[int, Path]] = {}
    problems = []
    for stem in stems:
        match = _CHANNEL.match(stem)
        path = folder / f"{stem}{ending}"
        if stem.startswith("."):
            problems.append(f"{path}: hidden file (nnU-Net would read it as a case)")
        elif match is None:
            problems.append(f"{path}: image name lacks the 4-digit channel suffix (_0000)")
        elif int(match["channel"]) not in channels:
            problems.append(f"{path}: channel {match['channel']} is not in channel_names")
        else:
            cases.setdefault(match["case"], {})[int(match["channel"])] = path
    for case, found in sorted(cases.items()):
        missing = sorted(channels - set(found))
        if missing:
            names = ", ".join(f"{case}_{c:04d}{ending}" for c in missing)
            problems.append(f"{folder}: case {case} misses channel image(s) {names}")
    if not stems and others:
        problems.append(f"{folder}: no file ends with file_ending {ending!r} (found {others[0]})")
    return cases, problems


def _check_pairing(
    folder: Path, meta: dict, images: dict[str, dict[int, Path]]
) -> tuple[dict[str, Path], list[str]]:
    ending = meta["file_ending"]
    label_stems, _ = _files(folder / "labelsTr", ending)
    labels = {stem: folder / "labelsTr" / f"{stem}{ending}" for stem in label_stems}
    problems = [
        f"{folder / 'labelsTr' / (case + ending)}: missing label for image case {case}"
        for case in sorted(set(images) - set(labels))
    ]
    problems += [
        f"{path}: label without images in imagesTr"
        for case, path in sorted(labels.items())
        if case not in images
    ]
    if len(images) != meta["numTraining"]:
        problems.append(
            f"{folder / 'dataset.json'}: numTraining is {meta['numTraining']} but imagesTr "
            f"holds {len(images)} case(s)"
        )
    return {case: path for case, path in labels.items() if case in images}, problems


def _check_case_voxels(
    images: dict[int, Path], label_path: Path, declared: set[object]
) -> list[str]:
    try:
        label = read_nifti(label_path, kind="labels", canonical=False)
        problems = _geometry_problems(images, label_path, label.geometry)
        values = {int(v) for v in np.unique(label.array)}
    except InputFileError as error:
        return [str(error)]
    undeclared = sorted(values - declared)
    if undeclared:
        problems.append(f"{label_path}: label values {undeclared} are not declared in labels")
    return problems


def _geometry_problems(images: dict[int, Path], label_path: Path, label: Geometry) -> list[str]:
    problems = []
    for path in images.values():
        image = read_geometry(path)
        if tuple(image.shape) != tuple(label.shape):
            problems.append(f"{label_path}: shape {label.shape} differs from {path.name} "
                            f"{image.shape}")
        elif not image.matches(label):
            problems.append(f"{label_path}: affine differs from {path.name}")
    return problems


def check_nnunet_dataset(folder: str | Path, check_voxels: bool = True) -> list[str]:
    """Problems that would stop or mislead nnU-Net v2 on a raw dataset folder; [] when valid.

    Each problem names the file (or folder) and the reason. `check_voxels` also reads every
    NIfTI label (values declared in dataset.json) and compares image and label grids.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder}: not a folder"]
    problems = []
    if not _FOLDER.match(folder.name):
        problems.append(f"{folder}: folder name must be DatasetXXX_Name (3-digit id)")
    meta, meta_problems = _load_dataset_json(folder)
    problems += meta_problems
    missing = [sub for sub in ("imagesTr", "labelsTr") if not (folder / sub).is_dir()]
    problems += [f"{folder / sub}: missing folder" for sub in missing]
    if meta is None or missing:
        return problems
    channels = {int(key) for key in meta["channel_names"] if str(key).isdigit()}
    images, image_problems = _image_cases(folder / "imagesTr", meta["file_ending"], channels)
    labels, pairing_problems = _check_pairing(folder, meta, images)
    problems += image_problems + pairing_problems
    if check_voxels and meta["file_ending"].lower() in _NIFTI_ENDINGS:
        declared = {value for value in _label_values(meta["labels"]) if _is_int(value)}
        for case, label_path in sorted(labels.items()):
            problems += _check_case_voxels(images[case], label_path, declared)
    return problems
