"""A trial's full report history, merged from every session that ran it.

Tune rewrites a resumed trial's `result.json` from scratch, and its copy on the storage lags the trial by up to one
experiment snapshot (10 s or more), while Train's checkpoints are written straight to the storage. So the history
of one trial lives in three kinds of files, oldest first:

- `_train/<trial id>/checkpoint_*/history.json`: every epoch up to that checkpoint (written by the worker), which
  fills the epochs a SIGKILL cut from `result.json` before Tune synced it;
- `result.session-<k>.json`: `result.json` of an earlier session, moved aside by `raysweep tune --resume`;
- `result.json`: the current (or last) session.

They are merged by `epoch`, the newest source winning for an epoch reported twice (an epoch redone after resuming
from a checkpoint that lagged one report), so no epoch is lost or counted twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional, TypeGuard

import pyarrow.fs as pafs

from raysweep.experiment.layout import CHECKPOINT_HISTORY, CHECKPOINT_PREFIX, RESULT_FILE, SESSION_PATTERN


@dataclass
class TrialHistory:
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per epoch, in epoch order (then epoch-less rows)
    wall_time_s: float = 0.0  # training wall time summed over sessions, redone epochs included
    sources: list[str] = field(default_factory=list)  # the files read, oldest first


def parse_lines(text: Optional[str]) -> list[dict[str, Any]]:
    """JSON-lines rows; a line cut short by a crash mid-write (or anything that is not an object) is skipped."""
    rows = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def segment_wall_time(rows: list[dict[str, Any]]) -> float:
    """Wall time of one session's rows: Tune's `time_total_s` restarts at 0 when a trial is relaunched, so sum the
    maximum of each run of increasing values."""
    total, segment_max, previous = 0.0, 0.0, -1.0
    for row in rows:
        value = row.get("time_total_s")
        t = float(value) if is_number(value) else 0.0
        if t < previous:
            total += segment_max
            segment_max = 0.0
        segment_max = max(segment_max, t)
        previous = t
    return total + segment_max


def merge_by_epoch(sources: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Sources oldest first; within a source, later rows are newer. The newest row of each epoch wins; rows without
    a numeric epoch are kept, in order, after the epoch rows."""
    by_epoch: dict[float, dict[str, Any]] = {}
    loose: list[dict[str, Any]] = []
    for rows in sources:
        for row in rows:
            epoch = row.get("epoch")
            if is_number(epoch):
                by_epoch[float(epoch)] = row
            else:
                loose.append(row)
    return [by_epoch[e] for e in sorted(by_epoch)] + loose


def read_trial_history(
    fs: pafs.FileSystem, trial_folder: Optional[str], train_folder: Optional[str] = None
) -> TrialHistory:
    """Merge everything known about one trial (paths are inner paths of `fs`; either may be None or missing)."""
    history = TrialHistory()
    sources: list[list[dict[str, Any]]] = []
    checkpoint_rows = _checkpoint_history(fs, train_folder) if train_folder else []
    if checkpoint_rows:
        sources.append(checkpoint_rows)
        history.sources.append(f"{train_folder}/checkpoint_*/{CHECKPOINT_HISTORY}")
    session_rows: list[list[dict[str, Any]]] = []
    if trial_folder:
        for name in _session_files(fs, trial_folder) + [RESULT_FILE]:
            text = read_or_none(fs, f"{trial_folder}/{name}")
            if text is None:
                continue
            rows = parse_lines(text)
            session_rows.append(rows)
            history.sources.append(f"{trial_folder}/{name}")
    sources.extend(session_rows)
    history.rows = merge_by_epoch(sources)
    history.wall_time_s = sum(segment_wall_time(rows) for rows in session_rows)
    reported = {float(r["epoch"]) for rows in session_rows for r in rows if is_number(r.get("epoch"))}
    for row in checkpoint_rows:  # epochs only a checkpoint remembers: their own measured time
        if is_number(row.get("epoch")) and float(row["epoch"]) not in reported:
            history.wall_time_s += sum(
                float(row.get(k) or 0.0) for k in ("epoch_time_s", "eval_time_s") if is_number(row.get(k))
            )
    return history


def _session_files(fs: pafs.FileSystem, folder: str) -> list[str]:
    found = []
    for info in fs.get_file_info(pafs.FileSelector(folder, recursive=False, allow_not_found=True)):
        match = SESSION_PATTERN.match(info.base_name)
        if match and info.type == pafs.FileType.File:
            found.append((int(match.group(1)), info.base_name))
    return [name for _, name in sorted(found)]


def _checkpoint_history(fs: pafs.FileSystem, train_folder: str) -> list[dict[str, Any]]:
    """The longest readable `history.json` among the trial's kept checkpoints (each holds every epoch before it)."""
    best: list[dict[str, Any]] = []
    for info in fs.get_file_info(pafs.FileSelector(train_folder, recursive=False, allow_not_found=True)):
        if info.type != pafs.FileType.Directory or not info.base_name.startswith(CHECKPOINT_PREFIX):
            continue
        text = read_or_none(fs, f"{info.path}/{CHECKPOINT_HISTORY}")
        try:
            rows = json.loads(text) if text else []
        except ValueError:  # a damaged checkpoint: its siblings still count
            continue
        rows = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
        if len(rows) > len(best):
            best = rows
    return best


def read_or_none(fs: pafs.FileSystem, inner: str) -> Optional[str]:
    """A file's text, or None when it is missing or unreadable (a crashed or half-copied experiment)."""
    try:
        with fs.open_input_stream(inner) as stream:
            return stream.read().decode(errors="replace")
    except (FileNotFoundError, OSError):
        return None


# What Tune and the loop report besides metrics (bookkeeping and evaluation flags): never a metric column.
TUNE_BOOKKEEPING = frozenset(
    {
        "timestamp",
        "training_iteration",
        "time_this_iter_s",
        "time_total_s",
        "pid",
        "time_since_restore",
        "iterations_since_restore",
        "done",
        "evaluated",
        "test_evaluated",
        "epochs_total",
    }
)


def is_number(value: Any) -> TypeGuard[int | float]:
    """A reported number (a bool is not one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
