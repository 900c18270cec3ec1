"""tumorscale.datasets: the real example CT from the totalsegmentator sdist, and its fetcher.

Tests marked `network` download the 38 MB archive from PyPI once per session (the session-wide
`example_cache` fixture of tests/conftest.py). The other tests run offline on a small synthetic
archive with the same layout.
"""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumorscale.datasets import (
    TOTALSEG_PACKAGE,
    TOTALSEG_SDIST,
    TOTALSEG_SDIST_SHA256,
    TOTALSEG_TO_ATLAS,
    TOTALSEG_VERSION,
    SourceArchive,
    fetch_example_ct,
    fetch_source_archive,
    parse_class_map,
    pip_download_command,
    sha256_of,
    verify_sha256,
)
from tumorscale.datasets import fetch as fetch_module
from tumorscale.datasets import totalsegmentator_example as example_module
from tumorscale.errors import FetchError
from tumorscale.io import read_nifti
from tumorscale.organs import FileRole, classify_segmentation, nifti_stem
from tumorscale.user_cache import CACHE_ENV

# What the real example holds: every non-empty 'total' class with an AbdomenAtlas name.
EXPECTED_MASKS = {
    "adrenal_gland_left": 210,
    "adrenal_gland_right": 166,
    "aorta": 1839,
    "bladder": 17756,
    "colon": 59968,
    "duodenum": 2319,
    "femur_left": 4488,
    "femur_right": 4396,
    "gall_bladder": 1319,
    "intestine": 19717,
    "kidney_left": 5090,
    "kidney_right": 7134,
    "liver": 41692,
    "lung_left": 1525,
    "lung_right": 2590,
    "pancreas": 695,
    "portal_vein_and_splenic_vein": 1086,
    "postcava": 2266,
    "prostate": 549,
    "spleen": 9668,
    "stomach": 4836,
}


def _no_download(requirement: str, destination: Path) -> list[str]:
    raise AssertionError(f"unexpected download of {requirement}")


def _centroid_ras(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    index = np.argwhere(mask).mean(axis=0)
    return affine[:3, :3] @ index + affine[:3, 3]


# --------------------------------------------------------------------------- offline: fetch


def test_constants_and_pip_command() -> None:
    assert (TOTALSEG_PACKAGE, TOTALSEG_VERSION) == ("totalsegmentator", "2.18.0")
    assert TOTALSEG_SDIST.sha256 == TOTALSEG_SDIST_SHA256
    assert TOTALSEG_SDIST.requirement == "totalsegmentator==2.18.0"
    command = pip_download_command("pkg==1.0", Path("/somewhere"))
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in command and command[command.index("--no-binary") + 1] == ":all:"
    assert command[-1] == "pkg==1.0" and "/somewhere" in command


def test_verify_sha256_deletes_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"hello")
    good = sha256_of(path)
    verify_sha256(path, good.upper())  # case-insensitive, keeps the file
    assert path.exists()
    with pytest.raises(FetchError) as caught:
        verify_sha256(path, "0" * 64)
    assert good in str(caught.value) and "0" * 64 in str(caught.value)
    assert not path.exists()


def _copy_command(source: Path):
    def command(requirement: str, destination: Path) -> list[str]:
        code = "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])"
        return [sys.executable, "-c", code, str(source), str(destination)]

    return command


def test_checksum_mismatch_raises_and_removes_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "fake-1.0.tar.gz"
    fake.write_bytes(b"not the real archive")
    actual = sha256_of(fake)
    monkeypatch.setattr(fetch_module, "pip_download_command", _copy_command(fake))
    cache = tmp_path / "cache"
    source = SourceArchive("fake", "1.0", "ab" * 32, 0.0)
    with pytest.raises(FetchError) as caught:
        fetch_source_archive(source, cache=cache)
    message = str(caught.value)
    assert "ab" * 32 in message and actual in message and "mismatch" in message
    assert list(cache.iterdir()) == []  # neither the bad file nor the staging folder remains


def test_pip_failure_raises_clear_fetch_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(requirement: str, destination: Path) -> list[str]:
        code = (
            "import sys; print('Looking in indexes: https://pypi.org/simple');"
            "sys.stderr.write('WARNING: Retrying after connection broken by NewConnectionError("
            "Failed to establish a new connection: [Errno 111] Connection refused)\\n"
            "ERROR: Could not find a version that satisfies the requirement x\\n"
            "ERROR: No matching distribution found for x\\n'); sys.exit(1)"
        )
        return [sys.executable, "-c", code]

    monkeypatch.setattr(fetch_module, "pip_download_command", failing)
    cache = tmp_path / "cache"
    with pytest.raises(FetchError) as caught:
        fetch_source_archive(TOTALSEG_SDIST, cache=cache)
    message = str(caught.value)
    assert "ERROR: No matching distribution found for x" in message
    assert "connection failed: [Errno 111] Connection refused" in message
    assert "needs network access to PyPI" in message
    assert "totalsegmentator==2.18.0" in message
    assert list(cache.iterdir()) == []


def test_missing_pip_executable_raises_fetch_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        fetch_module, "pip_download_command", lambda r, d: [str(tmp_path / "no-such-python")]
    )
    with pytest.raises(FetchError, match="needs network access to PyPI"):
        fetch_source_archive(TOTALSEG_SDIST, cache=tmp_path / "cache")


def test_corrupt_cached_archive_is_downloaded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "good.tar.gz"
    good.write_bytes(b"good bytes")
    source = SourceArchive("fake", "1.0", sha256_of(good), 0.0)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / source.archive_name).write_bytes(b"truncated")
    monkeypatch.setattr(fetch_module, "pip_download_command", _copy_command(good))
    lines: list[str] = []
    path = fetch_source_archive(source, cache=cache, log=lines.append)
    assert path.read_bytes() == b"good bytes"
    assert any("corrupt" in line for line in lines)
    assert any("downloading fake 1.0 source" in line and "PyPI" in line for line in lines)


def test_default_cache_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert fetch_module.default_cache() == tmp_path / "c" / "downloads"


# --------------------------------------------------------------------------- offline: class map


def test_parse_class_map_is_literal_and_never_executes() -> None:
    text = (
        "raise RuntimeError('this file must not run')\n"
        "import os\n"
        "class_map = {'total': {1: 'spleen', 2: 'liver'}, 'other': {1: 'x'}}\n"
        "class_map['total_v3'] = os.environ\n"  # not our task: ignored, even if not literal
        "class_map['total'] = {1: 'spleen', 5: 'liver'}\n"
    )
    assert parse_class_map(text) == {1: "spleen", 5: "liver"}
    assert parse_class_map(text, task="other") == {1: "x"}
    with pytest.raises(FetchError, match="no class_map"):
        parse_class_map(text, task="missing")
    with pytest.raises(FetchError, match="not a literal"):
        parse_class_map("class_map = {'total': dict(a=1)}\n")
    with pytest.raises(FetchError, match="not valid Python"):
        parse_class_map("class_map = {\n")


def test_mapping_targets_are_registry_organ_names() -> None:
    for totalseg_name, atlas_name in TOTALSEG_TO_ATLAS.items():
        role = classify_segmentation(atlas_name).role
        assert role in {FileRole.ORGAN_MASK, FileRole.ORGAN_PART, FileRole.OTHER_STRUCTURE}, (
            totalseg_name,
            atlas_name,
            role,
        )
    assert "kidney_cyst_left" not in TOTALSEG_TO_ATLAS  # a lesion class: never written


# --------------------------------------------------------------------------- offline: fake sdist

FAKE_MAP = """
class_map = {
    "total_v1": {1: "spleen"},
    "total": {
        1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver",
        10: "lung_upper_lobe_left", 11: "lung_lower_lobe_left", 15: "esophagus",
        23: "kidney_cyst_left", 25: "sacrum", 21: "urinary_bladder",
    },
}
"""


def _nifti_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    image = nib.Nifti1Image(array, affine)
    return image.to_bytes()


def _gz(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, mtime=0)


@pytest.fixture
def fake_sdist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A small archive laid out like the totalsegmentator sdist, served by a fake pip."""
    rng = np.random.default_rng(0)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 20.0]
    ct = rng.integers(-1000, 1500, size=(12, 10, 8)).astype(np.int32)
    labels = np.zeros((12, 10, 8), np.uint8)
    labels[0:3, 0:3, 0:3] = 5  # liver
    labels[3:5, 0:2, 0:2] = 10  # lung lobes -> lung_left
    labels[5:6, 0:2, 0:2] = 11
    labels[6:8, 6:8, 6:8] = 23  # kidney cyst: a lesion, never written
    labels[9, 9, 7] = 25  # sacrum: no AbdomenAtlas name
    labels[10, 0, 0] = 3  # kidney_left
    labels[11, 0:2, 0] = 21  # urinary_bladder -> bladder
    members = {
        "tests/reference_files/example_ct.nii.gz": _gz(_nifti_bytes(ct, affine)),
        "tests/reference_files/example_seg_fast_force_split.nii.gz": _gz(
            _nifti_bytes(labels, affine)
        ),
        "totalsegmentator/map_to_binary.py": FAKE_MAP.encode(),
        "README.md": b"fake",
    }
    archive = tmp_path / "fake-src.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"totalsegmentator-2.18.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    source = SourceArchive("totalsegmentator", "2.18.0", sha256_of(archive), 0.1)
    monkeypatch.setattr(example_module, "TOTALSEG_SDIST", source)
    calls: list[str] = []

    def fake_pip(requirement: str, destination: Path) -> list[str]:
        calls.append(requirement)
        return _copy_command(archive)(requirement, destination)

    monkeypatch.setattr(fetch_module, "pip_download_command", fake_pip)
    return {"ct": ct, "labels": labels, "affine": affine, "calls": calls}


def test_fake_sdist_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_sdist: dict
) -> None:
    cache = tmp_path / "cache"
    lines: list[str] = []
    case = fetch_example_ct(tmp_path / "out", cache=cache, log=lines.append)
    assert case == tmp_path / "out" / "BDMAP_00000001"
    assert fake_sdist["calls"] == ["totalsegmentator==2.18.0"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["BDMAP_00000001"]
    assert any(line.startswith("downloading totalsegmentator 2.18.0") for line in lines)

    ct_image = nib.load(case / "ct.nii.gz")
    assert ct_image.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asanyarray(ct_image.dataobj), fake_sdist["ct"])
    np.testing.assert_allclose(ct_image.affine, fake_sdist["affine"])

    names = sorted(nifti_stem(p.name) for p in (case / "segmentations").iterdir())
    assert names == ["bladder", "kidney_left", "liver", "lung_left"]  # non-empty, mapped only
    labels = fake_sdist["labels"]
    for name, ids in {"liver": [5], "lung_left": [10, 11], "kidney_left": [3]}.items():
        image = nib.load(case / "segmentations" / f"{name}.nii.gz")
        assert image.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asanyarray(image.dataobj), np.isin(labels, ids))

    # Second call with a fresh output folder: the cached archive is used, pip is not run.
    monkeypatch.setattr(fetch_module, "pip_download_command", _no_download)
    other = fetch_example_ct(tmp_path / "out2", cache=cache, case_id="BDMAP_00000042")
    assert other.name == "BDMAP_00000042" and (other / "segmentations" / "liver.nii.gz").exists()

    # Rerun on the complete case: skipped, files untouched.
    before = (case / "ct.nii.gz").stat().st_mtime_ns
    lines.clear()
    assert fetch_example_ct(tmp_path / "out", cache=cache, log=lines.append) == case
    assert (case / "ct.nii.gz").stat().st_mtime_ns == before
    assert any("skipping" in line for line in lines)

    # A file replaced by hand since: the case is written again from the archive.
    liver = case / "segmentations" / "liver.nii.gz"
    original = liver.read_bytes()
    liver.write_bytes(original[: len(original) // 2])
    lines.clear()
    assert fetch_example_ct(tmp_path / "out", cache=cache, log=lines.append) == case
    assert liver.read_bytes() == original
    assert any("changed since it was written" in line for line in lines)


def test_incomplete_existing_case_is_refused(tmp_path: Path, fake_sdist: dict) -> None:
    case = tmp_path / "out" / "BDMAP_00000001"
    (case / "segmentations").mkdir(parents=True)
    (case / "segmentations" / "notes.txt").write_text("mine")
    with pytest.raises(FetchError, match="not a complete example case"):
        fetch_example_ct(tmp_path / "out", cache=tmp_path / "cache")
    assert (case / "segmentations" / "notes.txt").read_text(encoding="utf-8") == "mine"
    with pytest.raises(ValueError, match="plain folder name"):
        fetch_example_ct(tmp_path / "out", cache=tmp_path / "cache", case_id="../x")


def test_empty_existing_case_folder_is_filled(tmp_path: Path, fake_sdist: dict) -> None:
    case = tmp_path / "out" / "BDMAP_00000001"
    case.mkdir(parents=True)
    assert fetch_example_ct(tmp_path / "out", cache=tmp_path / "cache") == case
    assert (case / "ct.nii.gz").is_file()


# --------------------------------------------------------------------------- network: real CT


@pytest.fixture(scope="session")
def example_case(example_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fetch_example_ct(tmp_path_factory.mktemp("example"), cache=example_cache)


@pytest.mark.network
def test_example_ct_grid_and_intensities(example_case: Path, example_cache: Path) -> None:
    assert sha256_of(example_cache / TOTALSEG_SDIST.archive_name) == TOTALSEG_SDIST_SHA256
    image = nib.load(example_case / "ct.nii.gz")
    assert image.get_data_dtype() == np.int16
    ct = read_nifti(example_case / "ct.nii.gz", kind="image")
    assert ct.shape == (122, 101, 112)
    np.testing.assert_allclose(ct.spacing, (3.0, 3.0, 3.0), atol=1e-4)
    assert ct.orientation == "RAS"
    hu = ct.array
    assert -1100 <= np.percentile(hu, 1) <= -900  # air outside the body
    assert np.count_nonzero(hu > 300) > 1000  # bone
    assert hu.min() >= -1300 and hu.max() <= 4000


@pytest.mark.network
def test_example_masks_are_organs_on_the_ct_grid(example_case: Path) -> None:
    ct = read_nifti(example_case / "ct.nii.gz", kind="image")
    files = sorted((example_case / "segmentations").iterdir())
    counts = {}
    for path in files:
        stem = nifti_stem(path.name)
        assert stem is not None, path
        role = classify_segmentation(stem).role
        assert role in {FileRole.ORGAN_MASK, FileRole.ORGAN_PART, FileRole.OTHER_STRUCTURE}
        assert nib.load(path).get_data_dtype() == np.uint8
        mask = read_nifti(path, kind="mask")
        assert mask.geometry.matches(ct.geometry), path
        counts[stem] = int(mask.array.sum())
    assert counts == EXPECTED_MASKS
    assert "esophagus" not in counts and "uterus" not in counts
    # No lesion files at all: tumor status stays unknown.
    everything = [p.name for p in example_case.rglob("*")]
    assert not any(
        classify_segmentation(nifti_stem(n) or n).role == FileRole.LESION for n in everything
    )


@pytest.mark.network
def test_example_anatomy_is_plausible(example_case: Path) -> None:
    ct = read_nifti(example_case / "ct.nii.gz", kind="image")
    seg = example_case / "segmentations"

    def mask(name: str) -> np.ndarray:
        return read_nifti(seg / f"{name}.nii.gz", kind="mask").array.astype(bool)

    liver = mask("liver")
    assert 30 <= float(np.median(ct.array[liver])) <= 150  # enhanced liver parenchyma, HU
    liver_litres = liver.sum() * ct.voxel_volume_mm3 / 1e6
    assert 0.8 <= liver_litres <= 3.0
    assert float(np.median(ct.array[mask("lung_left")])) < -500  # aerated lung
    assert float(np.median(ct.array[mask("femur_left")])) > 150  # bone

    # RAS+: x grows toward the patient's right, so left-sided organs have the smaller x.
    x = {
        name: _centroid_ras(mask(name), ct.affine)[0]
        for name in ("kidney_left", "kidney_right", "liver", "spleen")
    }
    assert x["kidney_left"] < x["kidney_right"]
    assert x["spleen"] < x["liver"]
    assert x["kidney_left"] < 0 < x["kidney_right"]


@pytest.mark.network
def test_cached_second_fetch_does_not_download(
    example_case: Path, example_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_module, "pip_download_command", _no_download)
    case = fetch_example_ct(tmp_path / "again", cache=example_cache)
    for name in ("ct.nii.gz", "segmentations/liver.nii.gz", "segmentations/colon.nii.gz"):
        np.testing.assert_array_equal(
            np.asanyarray(nib.load(case / name).dataobj),
            np.asanyarray(nib.load(example_case / name).dataobj),
        )
    # And a rerun on the complete case is a no-op.
    assert fetch_example_ct(tmp_path / "again", cache=example_cache) == case
