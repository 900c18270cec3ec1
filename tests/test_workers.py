"""Workers end with their parent: `kill -9` of a command must not leave its pools running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self").exists(), reason="reads /proc (Linux)")

POOL_SCRIPT = textwrap.dedent(
    """
    import time
    from tumorscale.workers import process_pool

    pool = process_pool(2)
    futures = [pool.submit(time.sleep, 120) for _ in range(2)]
    while len(pool._processes) < 2:
        time.sleep(0.05)
    print(" ".join(str(pid) for pid in pool._processes), flush=True)
    time.sleep(120)
    """
)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "zombie" not in state


def _wait_gone(pids: list[int], seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if _alive(pid)]


def test_pool_workers_die_with_a_killed_parent() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", POOL_SCRIPT], stdout=subprocess.PIPE, text=True
    )
    try:
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_gone(pids) == [], "workers outlived their killed parent"
    finally:
        parent.kill()


def test_a_subprocess_whose_parent_died_before_it_armed_exits() -> None:
    """`die_with_parent(pid)` with a pid that is no longer the parent exits at once."""
    code = "from tumorscale.workers import die_with_parent; die_with_parent(1); print('alive')"
    if os.getppid() == 1:
        pytest.skip("this test runs as a child of pid 1")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and "alive" not in result.stdout


def test_every_process_pool_comes_from_the_workers_module() -> None:
    source = Path(__file__).parents[1] / "src" / "tumorscale"
    offenders = [
        str(path)
        for path in source.rglob("*.py")
        if path.name != "workers.py" and "ProcessPoolExecutor(" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
