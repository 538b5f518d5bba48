"""A watchdog for the local Ray instance of one `raysweep tune`: if that process dies without `ray.shutdown()`
(SIGKILL, OOM killer), the Ray processes it started are ended after a grace period.

Ray fate-shares its GCS server and raylet with the driver that started them, and the raylet takes its workers down,
but a few of the instance's processes (seen: two, still alive minutes later) are not covered. The watchdog is a
small child process holding the read end of a pipe that only `raysweep tune` writes: `done` means a clean shutdown;
end-of-file without it means the parent died. Meanwhile it records, every second, the parent's descendants and their
start times (Linux /proc), so it ends exactly the processes of this sweep and never a reused pid. Standard library
only: it starts in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

GRACE_S = 5.0  # let Ray's own fate-sharing act first
TERM_WAIT_S = 5.0
POLL_S = 1.0


class Reaper:
    """Handle held by `raysweep tune`; `done()` after `ray.shutdown()`."""

    def __init__(self, proc: Optional[subprocess.Popen]) -> None:
        self.proc = proc

    def done(self) -> None:
        if self.proc is None or self.proc.stdin is None:
            return
        with contextlib.suppress(OSError):
            self.proc.stdin.write(b"done\n")
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def start_reaper() -> Reaper:
    """Only where /proc exists (Linux); elsewhere a no-op handle."""
    if not Path("/proc/self/stat").exists():
        return Reaper(None)
    proc = subprocess.Popen(
        [sys.executable, "-S", __file__, str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
    return Reaper(proc)


def _stat(pid: int) -> Optional[list[str]]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(root: int, exclude: int) -> dict[int, str]:
    """pid → start time (clock ticks since boot) of every live process below `root`, `exclude` left out."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[0] != "Z":
                children.setdefault(int(stat[1]), []).append((int(entry.name), stat[19]))
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for pid, started in children.get(todo.pop(), []):
            if pid != exclude and pid not in found:
                found[pid] = started
                todo.append(pid)
    return found


def _still_same(pid: int, started: str) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z" and stat[19] == started


def _signal_all(known: dict[int, str], sig: int) -> list[int]:
    hit = []
    for pid, started in known.items():
        if _still_same(pid, started):
            try:
                os.kill(pid, sig)
                hit.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
    return hit


def watch(parent: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: raysweep handles it
    known: dict[int, str] = {}
    me = os.getpid()
    stdin = sys.stdin.buffer
    while True:
        ready, _, _ = select.select([stdin], [], [], POLL_S)
        if ready:
            data = os.read(stdin.fileno(), 64)
            if b"done" in data:
                return 0
            if not data:
                break  # the parent is gone without saying done
        known.update(descendants(parent, me))
    time.sleep(GRACE_S)
    if _signal_all(known, signal.SIGTERM):
        deadline = time.time() + TERM_WAIT_S
        while time.time() < deadline and any(_still_same(p, s) for p, s in known.items()):
            time.sleep(0.2)
        _signal_all(known, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(watch(int(sys.argv[1])))
