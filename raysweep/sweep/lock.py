"""One live sweep per experiment folder: `<experiment>/raysweep.lock`, with the owner's host, pid and a heartbeat.

A second `raysweep tune` (or `--resume`) on a folder whose lock is live is refused with one line. A lock is stale,
and taken over with a warning, when its owner is on this host and that process is gone (or its pid now belongs to
another process), or when its owner is on another host and its heartbeat is older than `STALE_AFTER_S`: the owner
rewrites the heartbeat every `HEARTBEAT_S` while it runs. `--force-unlock` takes over any lock.

While the sweep runs, a watcher checks every `WATCH_S` that the lock is still there and still ours: if the
experiment folder was deleted (or the lock taken over), the sweep is told to stop.

Limits: on a local (or NFS) folder the lock is created atomically (O_EXCL). Object stores reached through pyarrow
(s3://, gs://) have no create-if-absent; there the lock is written, then read back after a short pause, and the
sweep only goes on when its own token is the one stored, which closes the race except for two starts within about
a second of each other.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from raysweep.errors import UserError
from raysweep.experiment import storage
from raysweep.experiment.layout import ExperimentLayout

log = logging.getLogger(__name__)
HEARTBEAT_S = 60.0
STALE_AFTER_S = 15 * 60.0  # a lock from another host without a heartbeat for this long is stale
WATCH_S_LOCAL = 2.0
WATCH_S_URI = 15.0
URI_SETTLE_S = 1.0


@dataclass
class LockInfo:
    host: str
    pid: int
    started: float
    heartbeat: float
    token: str
    pid_started: Optional[float] = None  # the owner's start time (ticks since boot): a reused pid is not it

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"raysweep pid {self.pid} on {self.host} since {when}"


def _process_start_time(pid: int) -> Optional[float]:
    """The process's start time in clock ticks since boot (Linux /proc); None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return float(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime
    except (OSError, IndexError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_reason(info: LockInfo, now: Optional[float] = None) -> Optional[str]:
    """Why a lock no longer protects anything, or None when its owner may still be running."""
    now = time.time() if now is None else now
    if info.host == socket.gethostname():
        if not _pid_alive(info.pid):
            return f"its owner (pid {info.pid} on this host) is gone"
        started = _process_start_time(info.pid)
        if info.pid_started is not None and started is not None and started != info.pid_started:
            return f"pid {info.pid} now belongs to another process"
        return None
    age = now - info.heartbeat
    if age > STALE_AFTER_S:
        return f"its owner on {info.host} has not renewed it for {age / 60:.0f} min"
    return None


class ExperimentLock:
    """Acquire with `acquire()`, then `watch(on_lost)` while the sweep runs, `release()` at the end."""

    def __init__(self, experiment_dir: str, force: bool = False) -> None:
        self.experiment_dir = experiment_dir
        self.path = ExperimentLayout(experiment_dir).lock
        self.force = force
        self.created_folders: list[Path] = []  # local folders the lock had to create, deepest first
        self.info: Optional[LockInfo] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def read(self) -> Optional[LockInfo]:
        try:
            data = json.loads(storage.read_text(self.path))
            return LockInfo(**{k: data[k] for k in LockInfo.__dataclass_fields__ if k in data})
        except UserError as err:
            if "no such file" in str(err):
                return None
            raise
        except (ValueError, TypeError, KeyError):  # a torn or hand-edited lock protects nothing
            log.warning("%s: unreadable lock file, replacing it", self.path)
            return LockInfo(host="?", pid=-1, started=0.0, heartbeat=0.0, token="")

    def acquire(self) -> None:
        existing = self.read()
        if existing is not None:
            reason = "an unreadable lock" if existing.pid == -1 else stale_reason(existing)
            if reason is None and not self.force:
                raise UserError(
                    f"experiment {self.experiment_dir} is in use by {existing.describe()} (lock "
                    f"{self.path}); wait for that sweep to end, or pass --force-unlock if it is gone"
                )
            log.warning(
                "%s: taking over the lock of %s (%s)", self.path, existing.describe(), reason or "--force-unlock"
            )
            self._delete()
        now = time.time()
        self.info = LockInfo(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=now,
            heartbeat=now,
            token=uuid.uuid4().hex,
            pid_started=_process_start_time(os.getpid()),
        )
        if storage.is_uri(self.path):
            self._acquire_uri()
        else:
            self._acquire_local()

    def _acquire_local(self) -> None:
        folder = Path(self.experiment_dir)
        self.created_folders = storage.missing_folders(folder)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            other = self.read()
            raise UserError(
                f"experiment {self.experiment_dir} is in use by "
                f"{other.describe() if other else 'another raysweep'} (lock {self.path}); wait for "
                f"that sweep to end"
            ) from None
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(asdict(self._own())))

    def _acquire_uri(self) -> None:
        storage.write_text_atomic(self.path, json.dumps(asdict(self._own())))
        time.sleep(URI_SETTLE_S)
        stored = self.read()
        if stored is None or stored.token != self._own().token:
            raise UserError(
                f"experiment {self.experiment_dir} is in use by "
                f"{stored.describe() if stored else 'another raysweep'} (lock {self.path}); two "
                f"sweeps started at once"
            )

    def _own(self) -> LockInfo:
        """This process's lock record (set by `acquire`)."""
        if self.info is None:
            raise RuntimeError("the experiment lock was not acquired")
        return self.info

    def is_ours(self) -> bool:
        try:
            stored = self.read()
        except UserError:
            return False
        return stored is not None and self.info is not None and stored.token == self.info.token

    def watch(self, on_lost: Callable[[str], None]) -> None:
        """Renew the heartbeat and call `on_lost(reason)` once if the lock disappears or changes owner."""
        interval = WATCH_S_URI if storage.is_uri(self.path) else WATCH_S_LOCAL

        def loop() -> None:
            last_beat = time.monotonic()
            while not self._stop.wait(interval):
                if not self.is_ours():
                    if not storage.exists(self.experiment_dir):
                        on_lost(f"the experiment folder {self.experiment_dir} is gone")
                    else:
                        on_lost(f"the lock {self.path} was removed or taken over by another sweep")
                    return
                if time.monotonic() - last_beat >= HEARTBEAT_S:
                    info = self._own()
                    info.heartbeat = time.time()
                    try:
                        storage.write_text_atomic(self.path, json.dumps(asdict(info)))
                    except OSError as exc:
                        log.warning("%s: cannot renew the lock (%s)", self.path, exc)
                    last_beat = time.monotonic()

        self._thread = threading.Thread(target=loop, name="raysweep-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.info is not None and self.is_ours():
            self._delete()
        self.info = None

    def remove_folder_if_empty(self) -> None:
        """After a refusal: leave none of the (now empty) folders this lock created."""
        for folder in self.created_folders:
            try:
                folder.rmdir()
            except OSError:
                break

    def _delete(self) -> None:
        fs, inner = storage.filesystem(self.path)
        with contextlib.suppress(FileNotFoundError, OSError):
            fs.delete_file(inner)
