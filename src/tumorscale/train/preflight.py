"""Checks before a training run starts: a patch that fits the images, an earlier run in OUT."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from tumorscale.data import PreprocessedCache
from tumorscale.models import ModelSpec
from tumorscale.models.base import padded_size
from tumorscale.train.cases import CaseRoles
from tumorscale.train.checkpoint import CHECKPOINT_NAME
from tumorscale.train.config import TrainConfig, normalized_values


def fit_patch_to_images(
    config: TrainConfig, cache: PreprocessedCache, roles: CaseRoles, verbose: bool = True
) -> TrainConfig:
    """`config` with its patch cut, per axis, to the largest training image (rounded up to the
    network's size divisor), and a warning when that changed it.

    A patch far larger than every image trains on padding and can exhaust memory (512³ on ~90³
    images took 13.7 GB); a patch a little larger than small images is normal (nnU-Net pads).
    """
    ids = [*roles.real, *roles.healthy, *roles.synthetic]
    if not ids:
        return config
    largest = np.max([cache.image_shape(case_id) for case_id in ids], axis=0)
    divisor = (
        ModelSpec(
            network=config.model.network,
            class_names=("background", "tumor"),
            network_overrides=dict(config.model.overrides),
            patch_size_vox=tuple(config.patch_size),
        )
        .build()
        .size_divisor
    )
    reachable = padded_size([int(n) for n in largest], divisor)
    fitted = tuple(min(int(p), n) for p, n in zip(config.patch_size, reachable, strict=True))
    if fitted == tuple(config.patch_size):
        return config
    if verbose:
        print(
            f"warning: patch_size {list(config.patch_size)} is larger than every training image "
            f"(largest {'x'.join(str(int(n)) for n in largest)} voxels); training with "
            f"{list(fitted)}",
            file=sys.stderr,
            flush=True,
        )
    return replace(config, patch_size=fitted)


# Keys that change where or how fast a run goes, not what it computes.
_RESULT_NEUTRAL_KEYS = {"device", "workers", "log_every"}


def _changed_keys(before: dict, after: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            keys += _changed_keys(old, new, f"{prefix}{key}.")
        elif old != new and key not in _RESULT_NEUTRAL_KEYS:
            keys.append(f"{prefix}{key}")
    return keys


def warn_about_earlier_run(out: Path, config: TrainConfig, resume: bool) -> None:
    """Say when a run starts over an earlier one, or resumes it with other settings."""
    earlier = out / "config.yaml"
    has_run = (out / CHECKPOINT_NAME).exists() or (out / "model.pt").exists()
    if not has_run or not earlier.exists():
        return
    if not resume:
        print(f"warning: {out} holds an earlier run; starting over and replacing it "
              "(--resume continues it)", file=sys.stderr, flush=True)  # fmt: skip
        return
    try:
        before = yaml.safe_load(earlier.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return
    # An earlier version's config.yaml: older keys moved, missing keys at their defaults (else
    # the file is compared as it is).
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        before = normalized_values(before)
    changed = _changed_keys(before, config.to_dict())
    if changed:
        keys = ", ".join(changed[:8])
        print(f"warning: resuming {out} with changed settings ({keys}); the result will not "
              "equal an uninterrupted run's", file=sys.stderr, flush=True)  # fmt: skip
