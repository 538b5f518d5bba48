"""The watchdog of `raysweep tune`'s local Ray instance: ends the sweep's processes only when raysweep died without
shutting Ray down (no Ray started; a `sleep` stands in for a Ray process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PARENT = """
import subprocess, sys, time
sys.path.insert(0, {repo!r})
from raysweep.sweep.reaper import start_reaper
reaper = start_reaper()
child = subprocess.Popen(["sleep", "120"])
print(child.pid, flush=True)
time.sleep(0.5)  # one snapshot of the descendants
if sys.argv[1] == "clean":
    reaper.done()
    print("done", flush=True)
time.sleep(120)
"""

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the watchdog needs Linux /proc")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start(mode: str) -> tuple[subprocess.Popen, int]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(repo=str(REPO)), mode], stdout=subprocess.PIPE,
                              text=True)
    child = int(parent.stdout.readline())
    if mode == "clean":
        assert parent.stdout.readline().strip() == "done"
    time.sleep(1.5)
    return parent, child


def test_a_killed_raysweep_leaves_no_process_behind() -> None:
    parent, child = _start("killed")
    os.kill(parent.pid, signal.SIGKILL)  # the process this test started
    parent.wait()
    deadline = time.time() + 20
    while _alive(child) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(child)


def test_after_a_clean_shutdown_the_watchdog_touches_nothing() -> None:
    parent, child = _start("clean")
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    time.sleep(8)
    try:
        assert _alive(child)
    finally:
        os.kill(child, signal.SIGKILL)  # the sleep this test started
