"""What a person watching `raysweep tune` sees: what is being prepared before Ray starts, then one compact line per
trial, printed again only when something in it changed.

    == 3/6 trials done (1 completed, 1 pruned, 1 error), 2 running · best map 0.4312 (a5d9b337) · 2:41 elapsed
    trial     status             epoch  ETA   map     best    classifier.init  loss.name  optim.lr
    3b260cdb  COMPLETED          8/8    -     0.4101  0.4101  language         lse_sign   0.000812
    a5d9b337  RUNNING            5/8    0:36  0.4312  0.4312  language         bce        0.00124
    c0ffee12  PRUNED at epoch 2  2/8    -     0.1880  0.1880  rand             bce        0.00187

Replaces Ray's wide table (every column of every trial, redrawn on a timer) as the Tune progress reporter.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, Optional, TextIO

from ray.tune import ProgressReporter

NO_VALUE = "-"


def trial_status(trial: Any) -> str:
    """RUNNING / PENDING / PAUSED / COMPLETED / PRUNED at epoch k / ERROR, from Tune's status and the last report."""
    result = trial.last_result or {}
    if trial.status == "ERROR":
        return "ERROR"
    if trial.status == "TERMINATED":
        epoch, total = result.get("epoch"), result.get("epochs_total")
        if epoch is not None and total is not None and int(epoch) < int(total):
            return f"PRUNED at epoch {int(epoch)}"
        return "COMPLETED"
    return str(trial.status)


def eta_seconds(result: dict[str, Any]) -> Optional[float]:
    """Seconds left for a running trial: its mean epoch time since (re)start times the epochs still to run."""
    epoch, total = result.get("epoch"), result.get("epochs_total")
    elapsed, done = result.get("time_since_restore"), result.get("iterations_since_restore")
    if epoch is None or total is None or elapsed is None or not done:
        return None
    return max(0.0, float(elapsed) / float(done) * (int(total) - int(epoch)))


def clock(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds):
        return NO_VALUE
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return NO_VALUE if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.3g}"


def parameter(value: Any) -> str:
    """Sampled values to 3 significant digits (a learning rate of 0.00123 stays 0.00123)."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return NO_VALUE if value is None else str(value)


class TrialTable(ProgressReporter):
    """Tune progress reporter: a header line and one line per trial; printed only when a line changed."""

    def __init__(
        self, metric: str, mode: str, params: Sequence[str], max_epochs: int, out: Optional[TextIO] = None
    ) -> None:
        self.metric, self.mode, self.params, self.max_epochs = metric, mode, list(params), max_epochs
        self.out = out
        self.total: Optional[int] = None
        self.started = time.time()
        self._last: Optional[str] = None  # the table last printed, without the elapsed time
        self._pending: Optional[tuple[str, str]] = None

    def setup(
        self,
        start_time: Optional[float] = None,
        total_samples: Optional[int] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        self.started = start_time or self.started
        self.total = total_samples or self.total

    def best(self, trial: Any) -> Optional[float]:
        analysis = (getattr(trial, "metric_analysis", None) or {}).get(self.metric) or {}
        return analysis.get(self.mode)

    def rows(self, trials: Sequence[Any]) -> list[list[str]]:
        rows = []
        for trial in trials:
            result = trial.last_result or {}
            status = trial_status(trial)
            epoch = result.get("epoch")
            total = result.get("epochs_total") or self.max_epochs
            eta = eta_seconds(result) if status == "RUNNING" else None
            rows.append(
                [
                    trial.trial_id,
                    status,
                    f"{int(epoch) if epoch is not None else 0}/{total}",
                    clock(eta),
                    number(result.get(self.metric)),
                    number(self.best(trial)),
                    *(parameter(trial.config.get(p)) for p in self.params),
                ]
            )
        return rows

    def header(self, trials: Sequence[Any]) -> str:
        statuses = [trial_status(t) for t in trials]
        completed = statuses.count("COMPLETED")
        pruned = sum(s.startswith("PRUNED") for s in statuses)
        errors = statuses.count("ERROR")
        running = statuses.count("RUNNING")
        scored = [(self.best(t), t.trial_id) for t in trials if self.best(t) is not None]
        best = ""
        if scored:
            value, trial_id = (max if self.mode == "max" else min)(scored)
            best = f" · best {self.metric} {number(value)} ({trial_id})"
        total = self.total or len(trials)
        return (
            f"== {completed + pruned + errors}/{total} trials done ({completed} completed, {pruned} pruned, "
            f"{errors} error), {running} running{best}"
        )

    def render(self, trials: Sequence[Any]) -> str:
        from tabulate import tabulate

        columns = ["trial", "status", "epoch", "ETA", self.metric, "best", *self.params]
        table = tabulate(self.rows(trials), headers=columns, tablefmt="plain", disable_numparse=True)
        return self.header(trials) + "\n" + table

    def should_report(self, trials: Sequence[Any], done: bool = False) -> bool:
        text = self.render(trials)
        if text == self._last:
            return False
        self._pending = (text, clock(time.time() - self.started))
        return True

    def report(self, trials: Sequence[Any], done: bool, *sys_info: str) -> None:
        text, elapsed = self._pending or (self.render(trials), clock(time.time() - self.started))
        self._last, self._pending = text, None
        head, _, body = text.partition("\n")
        stream = self.out or sys.stdout
        print(f"{head} · {elapsed} elapsed\n{body}\n", file=stream, flush=True)


@contextlib.contextmanager
def preparing(what: str) -> Iterator[None]:
    """'Preparing <what> ...' before a slow step and 'ready (N s)' after, with progress bars inside (on stderr, where
    progress is wanted: see raysweep.progress)."""
    from raysweep import progress

    progress.notice(f"Preparing {what} ...")
    started = time.time()
    with progress.shown():
        yield
    progress.notice(f"  ready ({time.time() - started:.0f} s)")


def auth_token_source() -> Optional[str]:
    """Where this process's Ray token comes from when token authentication is on (ray.init turns it on for a new
    local instance and says so in RAY_AUTH_MODE), else None."""
    import os

    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "the RAY_AUTH_TOKEN variable"
    return os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token"


def dashboard_line(url: Optional[str]) -> Optional[str]:
    """The dashboard URL and, under token authentication (Ray's default for a local instance since 2.59: without
    the token every data request answers 401), the way in. None without a dashboard."""
    if not url:
        return None
    line = f"Ray dashboard: http://{url}"
    source = auth_token_source()
    if source:
        line += (
            f" (token authentication: paste the token from {source}, also printed by `ray get-auth-token`, "
            f"when the page asks; API clients send the header 'Authorization: Bearer <token>')"
        )
    return line


class _DropTuneHints(logging.Filter):
    """Ray's end-of-run lines that would mislead: its own restore hint (raysweep prints the command to run) and
    missing-metrics warnings for trials whose history raysweep keeps in session files; a failed trial's traceback
    shrinks to one line."""

    PHRASES = (
        "Resume experiment with",
        "Resume training with",
        "Trials did not complete",
        "Failed to fetch metrics for",
        "Stop signal received",
    )
    TRIAL_FAILED = "Trial task failed for trial"

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(self.TRIAL_FAILED) and record.exc_info:
            # One line, not Ray's traceback: the reason is in the trial's error.txt and the parquet's `error` column.
            error = record.exc_info[1]
            cause = getattr(error, "cause", None) or error  # a RayTaskError carries the trial's own exception
            lines = str(cause).strip().splitlines() or [""]
            record.msg = f"{message}: {type(cause).__name__}: {lines[-1][:300]}"
            record.args, record.exc_info, record.exc_text = (), None, None
        return not any(phrase in message for phrase in self.PHRASES)


@contextlib.contextmanager
def quiet_tune_hints() -> Iterator[None]:
    drop = _DropTuneHints()
    loggers = [
        logging.getLogger(n)
        for n in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis", "ray.tune.execution.tune_controller")
    ]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)
