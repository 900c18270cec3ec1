"""Worker processes that end with their parent.

`kill -9` of a command gives its workers no chance to be told: they would go on computing,
holding memory and files, for minutes. On Linux the kernel sends them SIGKILL when the parent
dies (`prctl(PR_SET_PDEATHSIG)`); elsewhere a daemon thread in each worker watches the parent
and exits when it is gone. Every process pool in tumorscale comes from `process_pool`, and
every other worker (torch data loaders, study subprocesses) calls `die_with_parent` first.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCH_SECONDS = 1.0
# Set by a parent that starts workers as plain subprocesses: their parent's pid, known even if
# the parent dies while the child is still importing.
PARENT_PID_VARIABLE = "TUMORSCALE_PARENT_PID"


def parent_from_environment() -> int | None:
    """The pid in `PARENT_PID_VARIABLE`, or None when unset or not a number."""
    value = os.environ.get(PARENT_PID_VARIABLE, "")
    return int(value) if value.isdigit() else None


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os._exit(1)


def die_with_parent(parent: int | None = None) -> None:
    """Make this process exit as soon as its parent (`parent`, default the current one) dies."""
    parent = os.getppid() if parent is None else parent
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):  # no prctl (unusual libc): fall back to watching
            armed = False
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _start_worker(parent: int, initializer: Callable[..., Any] | None, args: tuple) -> None:
    die_with_parent(parent)
    if initializer is not None:
        initializer(*args)


def process_pool(
    workers: int,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
    spawn: bool = False,
) -> ProcessPoolExecutor:
    """A `ProcessPoolExecutor` whose workers die with this process (`spawn`: start method)."""
    context = multiprocessing.get_context("spawn") if spawn else None
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(os.getpid(), initializer, initargs),
    )
