"""One preprocessing record and one intensity function for the cache, training and prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tumorscale.data
import tumorscale.data.cache
import tumorscale.infer.preprocess
import tumorscale.preprocessing
from tests.data.helpers import write_dataset
from tumorscale.data import PreprocessedCache, PreprocessSettings, preprocess_dataset
from tumorscale.infer.preprocess import prepare_input
from tumorscale.io import read_nifti
from tumorscale.models import ModelSpec
from tumorscale.preprocessing import Preprocessing, scale_intensity
from tumorscale.train.config import load_config
from tumorscale.train.loop import model_spec

# Not the defaults, so a path that ignored the record would show.
RECORD = Preprocessing(spacing_mm=3.0, hu_window=(-100.0, 200.0), intensity_range=(-1.0, 1.0))


def test_defaults_are_the_papers_window_as_hu_over_100() -> None:
    record = Preprocessing()
    assert record.spacing_mm == (1.5, 1.5, 1.5)
    assert record.hu_window == (-175.0, 250.0)
    assert record.intensity_range == (-1.75, 2.5) and record.pad_value == -1.75
    hu = np.array([-1000.0, -175.0, -100.0, 0.0, 100.0, 250.0, 900.0])
    np.testing.assert_allclose(scale_intensity(hu, record),
                               [-1.75, -1.75, -1.0, 0.0, 1.0, 2.5, 2.5], atol=1e-6)
    # Every record that embeds it starts from the same defaults.
    assert PreprocessSettings().preprocessing == record
    assert ModelSpec(network="tiny", class_names=("background", "x")).preprocessing == record
    assert load_config(None, ["data.cache=c"]).data.preprocessing == record


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"spacing_mm": (1.5, 0.0, 1.5)}, "spacing_mm must be three sizes"),
        ({"spacing_mm": (1.5, 1.5)}, "spacing_mm must be three sizes"),
        ({"spacing_mm": 80.0}, "spacing_mm must be three sizes"),
        ({"hu_window": (250, -175)}, r"hu_window must be \(low, high\) with low < high"),
        ({"hu_window": (0, float("nan"))}, "hu_window must be finite"),
        ({"hu_window": "wide"}, "hu_window must be numbers"),
        ({"intensity_range": (1, 1)}, "intensity_range must be"),
    ],
)
def test_validation_in_one_place(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Preprocessing(**values)


def test_round_trip_and_older_names() -> None:
    assert Preprocessing.from_dict(RECORD.to_dict()) == RECORD
    assert Preprocessing.from_dict({"hu_window": [-100, 200]}) == Preprocessing(
        hu_window=(-100, 200)
    )
    unscaled = Preprocessing(intensity_range=None)
    assert Preprocessing.from_dict(unscaled.to_dict()) == unscaled
    assert unscaled.pad_value == -175.0
    with pytest.raises(ValueError, match="unknown preprocessing key"):
        Preprocessing.from_dict({"hu_clip": [0, 1]})
    older = Preprocessing().with_legacy(target_spacing_mm=3.0, hu_clip=(-100, 200),
                                        intensity_range=(-1, 1))  # fmt: skip
    assert older == RECORD
    assert Preprocessing().with_legacy(scale_to_unit=False).intensity_range is None
    assert Preprocessing(intensity_range=None).with_legacy(scale_to_unit=True) == Preprocessing(
        intensity_range=(0.0, 1.0)
    )


def test_training_and_prediction_call_the_one_function() -> None:
    one = tumorscale.preprocessing.scale_intensity
    assert tumorscale.data.cache.scale_intensity is one
    assert tumorscale.data.scale_intensity is one
    assert tumorscale.infer.preprocess.scale_intensity is one


def test_the_function_takes_the_record_or_what_embeds_it() -> None:
    hu = np.random.default_rng(0).integers(-1200, 1500, (7, 6, 5)).astype(np.int16)
    expected = scale_intensity(hu, RECORD)
    spec = ModelSpec(network="tiny", class_names=("background", "x"), preprocessing=RECORD)
    for holder in (PreprocessSettings(RECORD), spec):
        result = scale_intensity(hu, holder)
        assert result.dtype == np.float32 and result.tobytes() == expected.tobytes()


def test_arithmetic_is_unchanged() -> None:
    """The float32 steps of the two functions this one replaced, bit for bit."""
    rng = np.random.default_rng(1)
    for hu in (rng.integers(-1200, 3000, (9, 8, 7)).astype(np.int16),
               rng.uniform(-1200, 3000, (9, 8, 7)),
               rng.uniform(-1200, 3000, (9, 8, 7)).astype(np.float32)):  # fmt: skip
        for low, high in ((-175.0, 250.0), (-57.3, 311.9)):
            clipped = np.clip(hu.astype(np.float32), low, high)
            unit = (clipped - np.float32(low)) * np.float32(1.0 / (high - low))
            record = Preprocessing(hu_window=(low, high), intensity_range=(0.0, 1.0))
            assert scale_intensity(hu, record).tobytes() == unit.tobytes()
            unscaled = Preprocessing(hu_window=(low, high), intensity_range=None)
            assert scale_intensity(hu, unscaled).tobytes() == clipped.tobytes()
            ranged = Preprocessing(hu_window=(low, high), intensity_range=(-1.0, 1.0))
            expected = unit * np.float32(2.0) + np.float32(-1.0)
            assert scale_intensity(hu, ranged).tobytes() == expected.tobytes()


def test_training_patches_equal_prediction_input(tmp_path: Path) -> None:
    """A whole case read from the training cache is exactly what prediction feeds the network
    for the same scan, under the model spec that training writes."""
    data = write_dataset(tmp_path / "atlas", cases=1)
    settings = PreprocessSettings(RECORD, chunks=(8, 8, 8), blocks=(4, 4, 4))
    assert preprocess_dataset(data, tmp_path / "cache", settings).ok
    cache = PreprocessedCache.open(tmp_path / "cache", expected=settings)
    config = load_config(None, [f"data.cache={tmp_path / 'cache'}", "organs=[liver]"])
    spec = model_spec(config, cache)
    assert spec.preprocessing == RECORD == cache.settings.preprocessing

    case_id = "BDMAP_00000001"
    shape = cache.image_shape(case_id)
    trained_on, _ = cache.read_patch(case_id, (0, 0, 0), shape)
    predicted_on = prepare_input(read_nifti(data / case_id / "ct.nii.gz"), spec).image
    assert predicted_on.dtype == trained_on.dtype == np.float32
    assert predicted_on.shape == trained_on.shape
    np.testing.assert_array_equal(predicted_on, trained_on)
    assert trained_on.min() == -1.0 and trained_on.max() == 1.0  # the record's range was used
