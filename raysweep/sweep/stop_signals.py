"""Stopping a running sweep on Ctrl-C or on storage loss, the way Tune's own SIGINT handler does."""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, Optional


class StopSignals:
    """Ctrl-C and storage loss both end Tune's loop the way its own SIGINT handler does (trials stopped, state
    saved, statuses left resumable), through the SIGUSR1 handler Tune installs for that; a second Ctrl-C stops at
    once. Our SIGINT handler replaces Tune's, so the interrupt is known and Ray's hint is not printed."""

    def __init__(self) -> None:
        self.interrupted = False
        self.lost_reason: Optional[str] = None

    def _stop_tune(self) -> None:
        handler = signal.getsignal(signal.SIGUSR1)
        if callable(handler):  # Tune's loop is running: ask it to stop gracefully
            os.kill(os.getpid(), signal.SIGUSR1)
        else:  # before or after Tune's loop: stop whatever runs now
            _thread.interrupt_main()

    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        print(
            "raysweep: interrupted; stopping the trials and saving the experiment (Ctrl-C again to stop at once)",
            file=sys.stderr,
            flush=True,
        )
        self._stop_tune()

    def storage_lost(self, reason: str) -> None:
        if self.lost_reason is None:
            self.lost_reason = reason
            print(f"raysweep: storage lost: {reason}; stopping the sweep", file=sys.stderr, flush=True)
            self._stop_tune()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        previous = signal.signal(signal.SIGINT, self.on_sigint)
        previous_usr1 = signal.getsignal(signal.SIGUSR1)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGUSR1, previous_usr1)  # Tune leaves its handler behind
            if previous_env is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = previous_env
