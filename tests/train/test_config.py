"""Training configuration: YAML, `section.key=value` overrides, errors that name the key."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tumorscale.errors import InputFileError
from tumorscale.preprocessing import Preprocessing
from tumorscale.train import TrainConfig, dump_config, load_config
from tumorscale.train.config import config_from_keys, validate


def test_defaults_are_the_papers_recipe():
    config = load_config(None, ["data.cache=c"])
    assert config.optim.name == "sgd" and config.optim.lr == 0.01
    assert config.optim.momentum == 0.99 and config.optim.nesterov
    assert config.patch_size == (96, 96, 96) and config.batch_size == 2
    assert config.synthesis.ratio == 3.0 and config.synthesis.size_mix == (4.0, 2.0, 1.0)
    assert config.model.network == "M"


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("out: run\norgans: [liver]\ndata:\n  root: d\noptim:\n  lr: 0.02\n")
    config = load_config(path, ["optim.lr=0.001", "patch_size=[64,64,32]", "model.network=S"])
    assert config.organs == ("liver",) and config.data.root == "d"
    assert config.optim.lr == 0.001 and config.patch_size == (64, 64, 32)
    assert config.model.network == "S"
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(config))
    assert load_config(again) == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=-1", "optim.lr"),
        ("optim.learning_rate=1", "learning_rate"),
        ("organs=[lung]", "lung"),
        ("batch_size=1.5", "batch_size"),
        ("amp=fp8", "amp: .fp8. is not one of bf16, fp16, none"),
        ("optim.name=adam", "optim.name: .adam. is not one of sgd, adamw"),
        ("data.normalisation=zscore", "data.normalisation: .zscore. is not one of window, ct"),
        ("patch_size", "section.key=value"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, ["data.cache=c", override])


def test_bad_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim: [1, 2]\ndata: {cache: c}\n")
    with pytest.raises(InputFileError, match=r"bad\.yaml"):
        load_config(path)
    assert TrainConfig().total_iterations == 250_000


def test_preprocessing_keys_old_and_new(tmp_path):
    """`data.spacing_mm` / `data.hu_window` (configs before the preprocessing record) and
    `data.preprocessing.*` set the same record, in files and in overrides."""
    record = Preprocessing(spacing_mm=3.0, hu_window=(-100, 200))
    old = tmp_path / "old.yaml"
    old.write_text("data:\n  cache: c\n  spacing_mm: [3, 3, 3]\n  hu_window: [-100, 200]\n")
    new = tmp_path / "new.yaml"
    new.write_text("data:\n  cache: c\n  preprocessing:\n    spacing_mm: [3, 3, 3]\n"
                   "    hu_window: [-100, 200]\n")
    assert load_config(old).data.preprocessing == record
    assert load_config(new).data == load_config(old).data
    overridden = ["data.cache=c", "data.spacing_mm=[3,3,3]", "data.hu_window=[-100,200]"]
    assert load_config(None, overridden).data.preprocessing == record
    # An override of the older key wins over the file's new key (one setting, one place).
    assert load_config(new, ["data.hu_window=[-50,50]"]).data.preprocessing.hu_window == (-50, 50)
    dumped = load_config(old).to_dict()["data"]
    assert "hu_window" not in dumped and dumped["preprocessing"] == record.to_dict()
    assert load_config(None, ["data.cache=c"]).data.preprocessing == Preprocessing()  # -175, 250


def test_preprocessing_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"data\.preprocessing: hu_window must be \(low, high\)"):
        load_config(None, ["data.cache=c", "data.hu_window=[250,-175]"])
    both = tmp_path / "both.yaml"
    both.write_text("data:\n  cache: c\n  hu_window: [-1, 1]\n"
                    "  preprocessing: {hu_window: [0, 1]}\n")
    message = r"both\.yaml: data\.hu_window and data\.preprocessing\.hu_window are the same"
    with pytest.raises(InputFileError, match=message):
        load_config(both)


def test_typed_config_from_keys():
    """A study's `train` keys build typed records directly, as the same override strings do."""
    keys = {"model.network": "S", "data.spacing_mm": [4, 4, 4],
            "data.preprocessing.hu_window": [-100, 200], "patch_size": [64, 64, 32]}
    config = config_from_keys(keys)
    assert config.model.network == "S" and config.patch_size == (64, 64, 32)
    assert config.data.preprocessing == Preprocessing(spacing_mm=4.0, hu_window=(-100, 200))
    with_cache = replace(config, data=replace(config.data, cache="c"))
    overrides = ["model.network=S", "data.spacing_mm=[4,4,4]",
                 "data.preprocessing.hu_window=[-100,200]", "patch_size=[64,64,32]", "data.cache=c"]
    assert validate(with_cache) == load_config(None, overrides)
    with pytest.raises(ValueError, match="learning_rate"):
        config_from_keys({"optim.learning_rate": 1})
    with pytest.raises(ValueError, match=r"data\.spacing_mm and data\.preprocessing\.spacing_mm"):
        config_from_keys({"data.spacing_mm": 2, "data.preprocessing.spacing_mm": 3})
