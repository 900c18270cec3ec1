"""Whole-case prediction: geometry back on the input grid, organ restriction, OOM fallback."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.infer.stubs import IntensityClasses
from tumorscale.infer import PostprocessOptions, Predictor
from tumorscale.io import read_nifti, write_nifti
from tumorscale.models import ModelSpec, build_network, save_model

# On disk: L-P-S axes, anisotropic voxels (0.8, 1.2, 2.5) mm.
LPS_AFFINE = np.array([[-0.8, 0, 0, 40.0], [0, -1.2, 0, 30.0], [0, 0, 2.5, -20.0], [0, 0, 0, 1]])
LESION_HU, ORGAN_HU, BACKGROUND_HU = 200.0, 60.0, -100.0


def make_spec(class_names=("background", "liver_lesion"), spacing=(1.5, 1.5, 1.5)) -> ModelSpec:
    return ModelSpec(
        network="tiny", class_names=class_names, target_spacing_mm=spacing, patch_size_vox=(8, 8, 8)
    )


def write_lps_case(folder: Path, shape=(30, 24, 12)) -> tuple[Path, np.ndarray]:
    """An LPS CT with a box lesion placed off-centre (a flipped axis would move it)."""
    known = np.zeros(shape, dtype=np.uint8)
    known[6:20, 5:15, 3:9] = 1
    hu = np.where(known > 0, LESION_HU, BACKGROUND_HU).astype(np.int16)
    path = folder / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu, LPS_AFFINE), str(path))
    return path, known


def written_mask(prediction, organ: str, folder: Path) -> nib.Nifti1Image:
    return nib.load(str(write_nifti(prediction.lesion_volume(organ), folder / f"{organ}.nii.gz")))


def test_mask_comes_back_exactly_on_a_non_ras_input_grid(tmp_path: Path) -> None:
    path, known = write_lps_case(tmp_path)
    ct = read_nifti(path)
    network = IntensityClasses((BACKGROUND_HU, LESION_HU))
    predictor = Predictor((network, make_spec(spacing=ct.spacing)), device="cpu")
    prediction = predictor.predict(ct)
    image = written_mask(prediction, "liver", tmp_path)
    assert image.shape == known.shape
    np.testing.assert_allclose(image.affine, LPS_AFFINE)
    np.testing.assert_array_equal(np.asarray(image.dataobj), known)
    voxel_mm3 = 0.8 * 1.2 * 2.5
    assert prediction.volume_mm3["liver"] == pytest.approx(known.sum() * voxel_mm3)
    assert prediction.n_lesions["liver"] == 1
    assert prediction.max_probability["liver"] > 0.99
    assert prediction.settings["n_mirrors"] == 8 and prediction.settings["tta_average"] == "logits"
    assert prediction.settings["postprocess"]["liver"] == [
        "min_radius_mm=3",
        "restrict_to_organ skipped (no organ mask)",
    ]


def test_mask_comes_back_on_the_input_grid_after_resampling(tmp_path: Path) -> None:
    path, known = write_lps_case(tmp_path)
    ct = read_nifti(path)
    predictor = Predictor(
        (IntensityClasses((BACKGROUND_HU, LESION_HU)), make_spec()),
        device="cpu",
        tta=False,
        save_probabilities=True,
    )
    prediction = predictor.predict(ct)  # model grid: 1.5 mm isotropic, (16, 19, 20) voxels
    mask = np.asarray(written_mask(prediction, "liver", tmp_path).dataobj)
    dice = 2 * np.sum(mask & known) / (mask.sum() + known.sum())
    assert dice > 0.9
    centre = np.array([np.mean(axis) for axis in np.nonzero(mask)])
    np.testing.assert_allclose(centre, [12.5, 9.5, 5.5], atol=0.5)  # the known box's centre
    probability = prediction.probabilities["liver"]
    assert probability.dtype == np.float32 and probability.shape == ct.shape
    assert prediction.settings["n_mirrors"] == 1


def test_model_organ_class_restricts_lesions(tmp_path: Path) -> None:
    shape = (24, 24, 12)
    hu = np.full(shape, BACKGROUND_HU, dtype=np.float32)
    hu[2:14, 2:14, 2:10] = ORGAN_HU
    hu[5:10, 5:10, 4:8] = LESION_HU  # inside the organ: kept
    hu[17:22, 17:22, 4:8] = LESION_HU  # away from the organ: dropped
    ct = nib.Nifti1Image(hu, np.diag([1.5, 1.5, 1.5, 1.0]))
    nib.save(ct, str(tmp_path / "ct.nii.gz"))
    volume = read_nifti(tmp_path / "ct.nii.gz")
    network = IntensityClasses((BACKGROUND_HU, LESION_HU, ORGAN_HU))
    names = ("background", "liver_lesion", "liver")
    options = PostprocessOptions(min_radius_mm=2.0)
    prediction = Predictor(
        (network, make_spec(names)), device="cpu", tta=False, postprocess=options
    ).predict(volume)
    mask = prediction.lesion_masks["liver"]
    assert mask.dtype == np.uint8 and int(mask.sum()) == 100 and mask[5:10, 5:10, 4:8].all()
    assert prediction.n_lesions["liver"] == 1
    assert prediction.volume_mm3["liver"] == pytest.approx(100 * 1.5**3)
    assert prediction.settings["postprocess"]["liver"][-1] == "restrict_to_organ (model organ mask)"
    # Input organ masks take precedence: an organ around the far lesion keeps that one instead.
    organ = np.zeros(shape, np.uint8)
    organ[16:23, 16:23, 3:9] = 1
    given = Predictor(
        (network, make_spec(names)), device="cpu", tta=False, postprocess=options
    ).predict(volume, organ_masks={"liver": organ})
    assert given.lesion_masks["liver"][17:22, 17:22, 4:8].all()
    assert int(given.lesion_masks["liver"].sum()) == 100
    assert given.settings["postprocess"]["liver"][-1] == "restrict_to_organ (input organ mask)"


def test_windows_run_only_around_given_organ_masks(tmp_path: Path) -> None:
    shape = (80, 40, 30)
    hu = np.full(shape, BACKGROUND_HU, dtype=np.float32)
    hu[5:10, 5:10, 10:16] = LESION_HU  # inside the organ
    hu[60:70, 20:30, 10:20] = LESION_HU  # 75 mm away: removed by the organ restriction anyway
    organ = np.zeros(shape, np.uint8)
    organ[3:13, 3:13, 8:18] = 1
    nib.save(nib.Nifti1Image(hu, np.diag([1.5, 1.5, 1.5, 1.0])), str(tmp_path / "ct.nii.gz"))
    volume = read_nifti(tmp_path / "ct.nii.gz")
    network = IntensityClasses((BACKGROUND_HU, LESION_HU))
    spec = make_spec(spacing=(2.0, 2.0, 2.0))  # a resampled model grid of (60, 30, 22)
    predictor = Predictor((network, spec), device="cpu", tta=False)
    boxed = predictor.predict(volume, organ_masks={"liver": organ})
    start, stop = zip(*boxed.settings["windows_box_vox"], strict=True)
    assert start == (0, 0, 0) and stop[0] < 30 and stop[1] < 30  # far from the whole grid
    whole = predictor.predict(volume)  # no organ mask: every window, both lesions
    assert int(whole.lesion_masks["liver"][50:, :, :].sum()) > 0
    expected = whole.lesion_masks["liver"].copy()
    expected[40:] = 0  # what the restriction keeps of the whole-grid prediction
    np.testing.assert_array_equal(boxed.lesion_masks["liver"], expected)
    empty = predictor.predict(volume, organ_masks={"liver": np.zeros(shape, np.uint8)})
    assert [tuple(part) for part in empty.settings["windows_box_vox"]] == [(0, 60), (0, 30),
                                                                            (0, 22)]

def test_predictor_from_a_model_file(tmp_path: Path) -> None:
    names = ("background", "liver_lesion", "kidney_lesion")
    spec = ModelSpec(
        network="tiny",
        class_names=names,
        patch_size_vox=(16, 16, 16),
        network_overrides={"patch_size_vox": [16, 16, 16]},
    )
    network = build_network("tiny", 1, 3, patch_size_vox=[16, 16, 16])
    model = save_model(tmp_path / "model.pt", network, spec)
    path, _ = write_lps_case(tmp_path, shape=(20, 14, 8))
    prediction = Predictor(model, device="auto", window_batch_size=3).predict(read_nifti(path))
    assert prediction.organs == ("liver", "kidney")
    assert all(mask.shape == (20, 14, 8) for mask in prediction.lesion_masks.values())
    rows = prediction.organ_rows()
    assert [row["organ"] for row in rows] == ["liver", "kidney"]
    assert all(0.0 <= row["max_probability"] <= 1.0 for row in rows)


def _oom_until(monkeypatch: pytest.MonkeyPatch, fails) -> list[tuple[str, int]]:
    """Make `_run_windows` raise CUDA OOM while `fails(device_type, batch)`; returns the calls."""
    calls: list[tuple[str, int]] = []
    real = Predictor._run_windows

    def fake(self, image, device, batch_size, region=None):
        calls.append((device.type, batch_size))
        if fails(device.type, batch_size):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
        return real(self, image, torch.device("cpu"), batch_size, region)

    monkeypatch.setattr(Predictor, "_run_windows", fake)
    return calls


def _pretend_gpu(tmp_path: Path, batch: int) -> tuple[Predictor, object]:
    path, _ = write_lps_case(tmp_path, shape=(12, 10, 6))
    predictor = Predictor(
        (IntensityClasses((BACKGROUND_HU, LESION_HU)), make_spec()),
        device="cpu",
        tta=False,
        window_batch_size=batch,
    )
    predictor.device = torch.device("cuda")  # only the faked `_run_windows` ever sees it
    return predictor, read_nifti(path)


def test_oom_halves_the_window_batch_then_falls_back_to_cpu(tmp_path, monkeypatch) -> None:
    predictor, ct = _pretend_gpu(tmp_path, batch=4)
    calls = _oom_until(monkeypatch, lambda device, batch: device == "cuda")
    with pytest.warns(RuntimeWarning, match="out of GPU memory") as record:
        prediction = predictor.predict(ct)
    assert calls == [("cuda", 4), ("cuda", 2), ("cuda", 1), ("cpu", 4)]
    assert len(record) == 3 and "using the CPU" in str(record[-1].message)
    assert prediction.settings["device"] == "cpu" and len(prediction.settings["fallbacks"]) == 3
    assert prediction.settings["window_batch_size"] == 4
    assert predictor.window_batch_size == 1 and predictor.device.type == "cuda"


def test_oom_keeps_the_smaller_batch_for_later_cases(tmp_path, monkeypatch) -> None:
    predictor, ct = _pretend_gpu(tmp_path, batch=4)
    calls = _oom_until(monkeypatch, lambda device, batch: batch > 2)
    with pytest.warns(RuntimeWarning, match="2 window"):
        first = predictor.predict(ct)
    second = predictor.predict(ct)
    assert calls == [("cuda", 4), ("cuda", 2), ("cuda", 2)]
    assert first.settings["window_batch_size"] == 2 and second.settings["fallbacks"] == []
    np.testing.assert_array_equal(first.lesion_masks["liver"], second.lesion_masks["liver"])


def test_oom_on_the_cpu_is_raised(tmp_path, monkeypatch) -> None:
    path, _ = write_lps_case(tmp_path, shape=(12, 10, 6))
    predictor = Predictor(
        (IntensityClasses((BACKGROUND_HU, LESION_HU)), make_spec()), device="cpu", tta=False
    )
    _oom_until(monkeypatch, lambda device, batch: True)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        predictor.predict(read_nifti(path))


def test_rejects_a_model_without_lesion_classes() -> None:
    spec = ModelSpec(network="tiny", class_names=("background", "liver"))
    with pytest.raises(ValueError, match="lesion"):
        Predictor((IntensityClasses((0.0, 1.0)), spec), device="cpu")
