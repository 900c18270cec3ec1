"""Training checkpoints: everything needed to continue bit-identically, written atomically.

A checkpoint holds the network, optimizer, scheduler and AMP-scaler states, the iteration, every
random-number state (Python, NumPy, torch CPU and CUDA) and the sampler position. The data
stream is a pure function of (seed, rank, sample index), so the position is just the number of
samples consumed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tumorscale.errors import InputFileError
from tumorscale.io.atomic import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = "tumorscale-checkpoint"


@dataclass
class TrainingState:
    """The mutable parts of a run that a checkpoint restores."""

    network: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    iteration: int = 0
    samples_consumed: int = 0


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, state: TrainingState, config: dict[str, Any]) -> Path:
    """Write the checkpoint atomically (a crash mid-write leaves the previous one intact)."""
    from tumorscale.models.factory import unwrap

    payload = {
        "format": FORMAT,
        "config": config,
        "iteration": state.iteration,
        "samples_consumed": state.samples_consumed,
        "network": unwrap(state.network).state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": state.scaler.state_dict() if state.scaler is not None else None,
        "rng": rng_states(),
    }
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint; a corrupt or foreign file is an error naming it."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as error:
        raise InputFileError(path, f"unreadable checkpoint ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputFileError(path, "not a tumorscale training checkpoint")
    return payload


def restore(state: TrainingState, payload: dict[str, Any]) -> None:
    """Put a loaded checkpoint back into the live objects, RNG states included."""
    from tumorscale.models.factory import unwrap

    unwrap(state.network).load_state_dict(payload["network"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.scheduler.load_state_dict(payload["scheduler"])
    if state.scaler is not None and payload["scaler"] is not None:
        state.scaler.load_state_dict(payload["scaler"])
    state.iteration = int(payload["iteration"])
    state.samples_consumed = int(payload["samples_consumed"])
    restore_rng_states(payload["rng"])
