"""What the training loop says when a run goes wrong or meets an earlier run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.conftest import BASE_OVERRIDES
from tumorscale.train import CHECKPOINT_NAME, load_checkpoint, load_config, train
from tumorscale.train import loop as training_loop


def _config(cache: Path, out: Path, *extra: str):
    return load_config(None, [*BASE_OVERRIDES, f"data.cache={cache}", f"out={out}",
                              "epochs=1", "iterations_per_epoch=12", "checkpoint_every=5",
                              *extra])  # fmt: skip


def test_a_non_finite_loss_stops_the_run_and_keeps_the_checkpoint(
    training_cohort, tmp_path, monkeypatch
) -> None:
    _, cache = training_cohort
    real_step, calls = training_loop._step, []

    def step_then_nan(*args, **kwargs) -> float:
        calls.append(1)
        loss = real_step(*args, **kwargs)
        return float("nan") if len(calls) == 8 else loss

    monkeypatch.setattr(training_loop, "_step", step_then_nan)
    with pytest.raises(FloatingPointError, match="not finite at iteration 8"):
        train(_config(cache, tmp_path / "run"))
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)["iteration"] == 5
    assert not (tmp_path / "run" / "model.pt").exists()


def test_an_earlier_run_is_named_when_overwritten_or_resumed_differently(
    training_cohort, tmp_path, capsys
) -> None:
    _, cache = training_cohort
    out = tmp_path / "run"
    train(_config(cache, out))
    capsys.readouterr()
    train(_config(cache, out, "seed=1"))
    assert f"{out} holds an earlier run; starting over" in capsys.readouterr().err
    train(_config(cache, out, "seed=2"), resume=True)
    assert "resuming" in (err := capsys.readouterr().err) and "(seed)" in err
