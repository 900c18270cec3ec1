"""Training configuration: YAML, `section.key=value` overrides, errors that name the key."""

from __future__ import annotations

import pytest

from tumorscale.errors import InputFileError
from tumorscale.train import TrainConfig, dump_config, load_config


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
