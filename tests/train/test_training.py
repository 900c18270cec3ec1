"""Training end to end on CPU: the loss falls, a SIGKILLed run resumes bit-identically, and a
2-process DDP (gloo) run trains and resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tests.train.conftest import BASE_OVERRIDES
from tumorscale.models import load_model
from tumorscale.train import CHECKPOINT_NAME, load_checkpoint, load_config, train


def _config(cache: Path, out: Path, *extra: str):
    return load_config(None, [*BASE_OVERRIDES, f"data.cache={cache}", f"out={out}", *extra])


def _weights(model_file: Path) -> dict[str, torch.Tensor]:
    return torch.load(model_file, weights_only=True)["state_dict"]


def test_tiny_model_learns_real_and_synthetic_tumors(training_cohort, tmp_path):
    _, cache = training_cohort
    config = _config(
        cache, tmp_path / "run", "epochs=1", "iterations_per_epoch=240", "optim.lr=0.01", "seed=1"
    )
    result = train(config)
    losses = np.array(result.losses)
    assert result.iterations == 240 and len(losses) == 240
    first, last = losses[:30].mean(), losses[-30:].mean()
    assert last < 0.75 * first, (first, last)
    _, spec = load_model(result.model)
    assert spec.class_names == ("background", "pancreas_lesion", "kidney_lesion", "liver_lesion")
    assert spec.preprocessing == config.data.preprocessing  # what training used, recorded
    assert spec.preprocessing.spacing_mm == (3.0, 3.0, 3.0)
    log = (tmp_path / "run" / "log.csv").read_text(encoding="utf-8").splitlines()
    assert log[0].startswith("iteration,epoch,loss") and len(log) == 1 + 240 // 5


def _cli(config_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tumorscale", "train", str(config_path), "-q", *extra]


def _env(threads: int = 1) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONHASHSEED": "0"}


def test_sigkill_then_resume_is_bit_identical(training_cohort, tmp_path):
    _, cache = training_cohort
    common = [
        *BASE_OVERRIDES,
        f"data.cache={cache}",
        "epochs=1",
        "iterations_per_epoch=60",
        "checkpoint_every=10",
        "workers=1",
    ]
    config = tmp_path / "train.yaml"
    config.write_text("seed: 3\n")
    straight = subprocess.run(
        _cli(config, *common, f"out={tmp_path / 'straight'}"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert straight.returncode == 0, straight.stderr

    out = tmp_path / "killed"
    process = subprocess.Popen(
        _cli(config, *common, f"out={out}"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = out / CHECKPOINT_NAME
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if checkpoint.exists() and load_checkpoint(checkpoint)["iteration"] >= 20:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = load_checkpoint(checkpoint)["iteration"]
    assert 20 <= killed_at < 60, "the run must be killed mid-way"
    assert not (out / "model.pt").exists()

    resumed = subprocess.run(
        _cli(config, *common, f"out={out}", "--resume"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    expected, got = _weights(tmp_path / "straight" / "model.pt"), _weights(out / "model.pt")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    log = (out / "log.csv").read_text(encoding="utf-8").splitlines()
    assert [int(row.split(",")[0]) for row in log[1:]] == list(range(5, 61, 5))


def _torchrun(config: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "tumorscale",
        "train",
        str(config),
        "-q",
        *extra,
    ]
    return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)


def test_two_process_ddp_trains_and_resumes(training_cohort, tmp_path):
    _, cache = training_cohort
    config = tmp_path / "train.yaml"
    config.write_text("seed: 5\n")
    common = [
        *BASE_OVERRIDES,
        f"data.cache={cache}",
        "epochs=2",
        "iterations_per_epoch=10",
        "checkpoint_every=10",
        "data.validation_fraction=0.2",
        "validate_every_epochs=1",
    ]
    out = tmp_path / "ddp"
    first = _torchrun(config, *common, f"out={out}", "epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert load_checkpoint(out / CHECKPOINT_NAME)["iteration"] == 10
    second = _torchrun(config, *common, f"out={out}", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert load_checkpoint(out / CHECKPOINT_NAME)["iteration"] == 20
    log = (out / "log.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert [int(row.split(",")[0]) for row in log] == [5, 10, 15, 20]
    validation = (out / "validation.csv").read_text(encoding="utf-8")
    assert "validated_cases" in validation
    network, _ = load_model(out / "model.pt")
    assert sum(p.numel() for p in network.parameters()) > 0


def test_ct_normalisation_is_measured_on_training_tumors_and_recorded(training_cohort, tmp_path):
    from tumorscale.data import PreprocessedCache
    from tumorscale.data.normalisation import ct_normalisation, foreground_sample
    from tumorscale.train.cases import case_roles

    _, cache_root = training_cohort
    config = _config(cache_root, tmp_path / "run", "epochs=1", "iterations_per_epoch=20",
                     "seed=2", "data.normalisation=ct")
    result = train(config)
    _, spec = load_model(result.model)
    cache = PreprocessedCache.open(cache_root)
    roles = case_roles(cache, config)
    lesions = ("pancreas_lesion", "kidney_lesion", "liver_lesion")
    sample = foreground_sample(cache, roles.real, lesions, seed=2)
    expected = ct_normalisation(config.data.preprocessing, sample)
    assert spec.preprocessing == expected  # the model file holds what training read through
    low, high = spec.preprocessing.hu_window
    assert low > -175.0 and high - low < 0.75 * 425.0  # tumor HU: narrower than [-175, 250]
    assert spec.preprocessing.intensity_range[0] < 0 < spec.preprocessing.intensity_range[1]
    assert np.isfinite(result.losses).all()


def test_a_run_with_another_window_and_range_shares_the_cache(training_cohort, tmp_path):
    """The cache holds HU: a run that differs only in the HU window and intensity range trains
    on it (no second preprocessing) and its model file records what it read through."""
    _, cache_root = training_cohort
    stored = (cache_root / "settings.json").read_text(encoding="utf-8")
    config = _config(cache_root, tmp_path / "run", "epochs=1", "iterations_per_epoch=4",
                     "data.preprocessing.hu_window=[-100,200]",
                     "data.preprocessing.intensity_range=[-5.5,3.0]")
    result = train(config)
    _, spec = load_model(result.model)
    assert spec.preprocessing.hu_window == (-100.0, 200.0)
    assert spec.preprocessing.intensity_range == (-5.5, 3.0)
    assert (cache_root / "settings.json").read_text(encoding="utf-8") == stored
    assert np.isfinite(result.losses).all()
