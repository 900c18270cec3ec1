"""`tumorscale train` on the real example CT: its organs host tumors synthesized on the fly once
the user admits its unknown-status organs (it has no lesion files)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tumorscale.cli import app
from tumorscale.datasets import fetch_example_ct
from tumorscale.models import load_model
from tumorscale.train import load_checkpoint


@pytest.mark.network
def test_train_on_the_real_example_ct(example_cache, tmp_path):
    data = tmp_path / "example"
    fetch_example_ct(data, cache=example_cache)
    out = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text("organs: [pancreas, liver, kidney, colon]\nmodel: {network: tiny}\n")
    arguments = ["train", str(config), f"data.root={data}", f"out={out}", "patch_size=[48,48,48]",
                 "data.spacing_mm=[3,3,3]", "epochs=1", "iterations_per_epoch=8", "workers=0",
                 "data.validation_fraction=0", "-q"]
    # Unknown status (no lesion file): not a host by default, and the error says how to opt in.
    refused = CliRunner().invoke(app, arguments)
    assert refused.exit_code == 2 and "data.allow_unknown_hosts=true" in refused.output
    result = CliRunner().invoke(app, [*arguments, "data.allow_unknown_hosts=true"])
    assert result.exit_code == 0, result.output
    assert "8 iterations" in result.output
    assert load_checkpoint(out / "checkpoint.pt")["iteration"] == 8
    _, spec = load_model(out / "model.pt")
    assert spec.class_names[1:] == ("pancreas_lesion", "liver_lesion", "kidney_lesion",
                                    "colon_lesion")
