"""One live sweep per experiment folder: the lock refuses a second owner and detects stale ones (no Ray started)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raysweep.errors import UserError
from raysweep.sweep import lock as lock_module
from raysweep.sweep.lock import ExperimentLock, LockInfo, stale_reason


def _write_lock(folder: Path, **fields) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    info = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "heartbeat": time.time(),
            "token": "other", **fields}
    (folder / "raysweep.lock").write_text(json.dumps(info))


def test_a_live_owner_on_this_host_refuses_a_second_sweep(tmp_path: Path) -> None:
    _write_lock(tmp_path / "exp")  # this very process: alive
    with pytest.raises(UserError, match=r"is in use by raysweep pid \d+ on .* --force-unlock"):
        ExperimentLock(str(tmp_path / "exp")).acquire()


def test_a_dead_owner_on_this_host_is_stale_and_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(tmp_path / "exp", pid=dead.pid)
    lock = ExperimentLock(str(tmp_path / "exp"))
    lock.acquire()
    stored = json.loads((tmp_path / "exp" / "raysweep.lock").read_text())
    assert stored["pid"] == os.getpid() and stored["token"] == lock.info.token
    lock.release()
    assert not (tmp_path / "exp" / "raysweep.lock").exists()


def test_another_hosts_lock_is_stale_only_after_its_heartbeat_ages() -> None:
    fresh = LockInfo(host="elsewhere", pid=1, started=0.0, heartbeat=1000.0, token="t")
    assert stale_reason(fresh, now=1000.0 + 60) is None
    assert "has not renewed it" in stale_reason(fresh, now=1000.0 + lock_module.STALE_AFTER_S + 1)


def test_a_reused_pid_is_not_the_owner() -> None:
    info = LockInfo(host=socket.gethostname(), pid=os.getpid(), started=0.0, heartbeat=0.0, token="t",
                    pid_started=1.0)  # this pid, but a process that started at boot
    assert "another process" in stale_reason(info)


def test_force_unlock_takes_over_a_live_lock(tmp_path: Path) -> None:
    _write_lock(tmp_path / "exp", host="elsewhere")
    lock = ExperimentLock(str(tmp_path / "exp"), force=True)
    lock.acquire()
    assert lock.is_ours()
    lock.release()


def test_the_watcher_reports_a_vanished_folder(tmp_path: Path, monkeypatch) -> None:
    import shutil

    monkeypatch.setattr(lock_module, "WATCH_S_LOCAL", 0.05)
    lock = ExperimentLock(str(tmp_path / "exp"))
    lock.acquire()
    lost: list[str] = []
    lock.watch(lost.append)
    shutil.rmtree(tmp_path / "exp")
    deadline = time.time() + 5
    while not lost and time.time() < deadline:
        time.sleep(0.05)
    lock.release()
    assert lost and "is gone" in lost[0]
    assert not (tmp_path / "exp").exists()  # the watcher never recreates the folder


def test_a_refused_start_leaves_no_folder_behind(tmp_path: Path) -> None:
    lock = ExperimentLock(str(tmp_path / "new"))
    lock.acquire()
    lock.release()
    lock.remove_folder_if_empty()
    assert not (tmp_path / "new").exists()
