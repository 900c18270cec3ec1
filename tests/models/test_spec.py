"""Model files: the spec, atomic save, rebuild from the spec alone, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tumorscale.models import (
    ModelFileError,
    ModelSpec,
    build_network,
    class_names_for,
    load_model,
    save_model,
)
from tumorscale.models.spec import FORMAT_VERSION, load_model_with_extra
from tumorscale.preprocessing import Preprocessing


def _spec(**changes) -> ModelSpec:
    fields = {"network": "tiny", "class_names": class_names_for(["pancreas", "kidney"])}
    return ModelSpec(**(fields | changes))


def test_class_names_put_tumors_before_organs() -> None:
    assert class_names_for(["pancreas", "liver"]) == (
        "background",
        "pancreas_lesion",
        "liver_lesion",
    )
    assert class_names_for(["liver"], organ_classes=True) == ("background", "liver_lesion", "liver")
    with pytest.raises(ValueError, match="unknown"):
        class_names_for(["lung"])


def test_spec_defaults_are_the_paper_recipe_with_hu_over_100() -> None:
    spec = _spec()
    assert spec.preprocessing == Preprocessing()
    assert spec.preprocessing.spacing_mm == (1.5, 1.5, 1.5)
    assert spec.preprocessing.hu_window == (-175.0, 250.0)
    assert spec.preprocessing.intensity_range == (-1.75, 2.5)
    assert spec.patch_size_vox == (96, 96, 96)
    assert spec.out_channels == 3
    assert ModelSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"class_names": ("pancreas_lesion", "background")}, "start with 'background'"),
        ({"class_names": ("background", "a", "a")}, "duplicates"),
        ({"hu_window": (250, -175)}, "low < high"),
        ({"target_spacing_mm": (1.5, 0.0, 1.5)}, "spacing_mm"),
        ({"network_overrides": {"norm": torch.nn.InstanceNorm3d}}, "not plain data"),
    ],
)
def test_spec_rejects_bad_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _spec(**changes)


def test_round_trip_with_overrides_and_extra(tmp_path: Path) -> None:
    spec = _spec(network_overrides={"features_per_stage": [4, 8, 16, 32]}, hu_window=(-100, 200))
    network = spec.build()
    path = save_model(tmp_path / "models" / "model.pt", network, spec, extra={"iteration": 7})
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]  # no temporary left
    loaded, loaded_spec, extra = load_model_with_extra(path)
    assert loaded_spec == spec and extra == {"iteration": 7}
    assert loaded.encoder[1][0].conv1[0].out_channels == 8
    for key, value in network.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_save_rejects_non_plain_extra(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"extra\.optimizer"):
        save_model(tmp_path / "m.pt", _spec().build(), _spec(), extra={"optimizer": object()})
    assert not list(tmp_path.iterdir())


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pt"
    with pytest.raises(ModelFileError, match=r"missing\.pt: no such model file"):
        load_model(missing)

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(ModelFileError, match=r"corrupt\.pt: not a readable model file"):
        load_model(corrupt)

    foreign = tmp_path / "state_dict.pt"
    torch.save(build_network("tiny", 1, 3).state_dict(), foreign)
    with pytest.raises(ModelFileError, match=r"state_dict\.pt: not a tumorscale model file"):
        load_model(foreign)

    checkpoint = tmp_path / "checkpoint.pt"  # pickled objects, as a training checkpoint holds
    torch.save({"rng": np.random.get_state()}, checkpoint)
    with pytest.raises(ModelFileError, match=r"checkpoint\.pt: holds Python objects") as error:
        load_model(checkpoint)
    assert "weights_only" not in str(error.value)

    truncated = tmp_path / "truncated.pt"
    data = save_model(tmp_path / "good.pt", _spec().build(), _spec()).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"truncated\.pt"):
        load_model(truncated)


def test_load_rejects_weights_that_do_not_fit(tmp_path: Path) -> None:
    path = save_model(tmp_path / "m.pt", _spec().build(), _spec())
    payload = torch.load(path, weights_only=True)
    payload["spec"]["class_names"] = ["background", "liver_lesion"]  # 2 classes, weights have 3
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match=r"m\.pt: weights do not fit network 'tiny'"):
        load_model(path)


def test_spec_records_the_preprocessing_as_one_nested_record(tmp_path: Path) -> None:
    record = Preprocessing(spacing_mm=(2.0, 2.0, 3.0), hu_window=(-100, 200),
                           intensity_range=(-1, 1))  # fmt: skip
    spec = _spec(preprocessing=record)
    values = spec.to_dict()
    assert values["preprocessing"] == {"spacing_mm": [2.0, 2.0, 3.0], "hu_window": [-100.0, 200.0],
                                       "intensity_range": [-1.0, 1.0]}  # fmt: skip
    assert not {"target_spacing_mm", "hu_window", "intensity_range"} & set(values)
    # The flat keyword names of earlier specs build the same record.
    flat = {"target_spacing_mm": (2, 2, 3), "hu_window": (-100, 200), "intensity_range": (-1, 1)}
    assert _spec(**flat) == spec
    path = save_model(tmp_path / "m.pt", spec.build(), spec)
    payload = torch.load(path, weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["spec"]["preprocessing"]["hu_window"] == [-100.0, 200.0]
    assert load_model_with_extra(path)[1] == spec


def test_model_files_written_before_the_preprocessing_record_still_load(tmp_path: Path) -> None:
    spec = _spec(network="S", preprocessing=Preprocessing(spacing_mm=3.0, hu_window=(-100, 200),
                                                          intensity_range=(0.0, 1.0)))
    path = save_model(tmp_path / "old.pt", spec.build(), spec)
    payload = torch.load(path, weights_only=True)
    old_spec = {key: value for key, value in payload["spec"].items() if key != "preprocessing"}
    old_spec |= {"target_spacing_mm": [3.0, 3.0, 3.0], "hu_window": [-100.0, 200.0],
                 "intensity_range": [0.0, 1.0]}  # fmt: skip
    torch.save({**payload, "format_version": 1, "spec": old_spec}, path)  # as version 1 wrote
    network, loaded = load_model(path)
    assert loaded == spec and loaded.preprocessing.hu_window == (-100.0, 200.0)
    for key, value in spec.build().state_dict().items():
        assert value.shape == network.state_dict()[key].shape
    # Without an intensity_range it is the [0, 1] that was the default then (HU / 100 today).
    del old_spec["intensity_range"]
    torch.save({**payload, "format_version": 1, "spec": old_spec}, path)
    assert load_model(path)[1] == spec
    torch.save({**payload, "format_version": 99}, path)
    with pytest.raises(ModelFileError, match="format version 99 is not supported"):
        load_model(path)


def test_tiny_files_from_before_the_normless_stem_load_with_their_stem_norm(
    tmp_path: Path,
) -> None:
    spec = _spec()
    old_network = build_network("tiny", 1, spec.out_channels, stem_norm=True)
    path = save_model(tmp_path / "old_tiny.pt", old_network, spec)
    payload = torch.load(path, weights_only=True)
    assert "stem.1.weight" in payload["state_dict"]  # the stem norm's scale
    torch.save({**payload, "format_version": 2}, path)  # as version 2 wrote a tiny model
    network, loaded = load_model(path)
    assert loaded.network_overrides == {"stem_norm": True}
    probe = torch.rand(1, 1, 32, 32, 32)
    old_network.eval()
    with torch.no_grad():
        assert torch.equal(network(probe), old_network(probe))
    # The same file marked as written now holds weights the current `tiny` has no place for.
    torch.save({**payload, "format_version": FORMAT_VERSION}, path)
    with pytest.raises(ModelFileError, match="weights do not fit network 'tiny'"):
        load_model(path)
