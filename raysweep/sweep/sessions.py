"""What `--resume` must do to an experiment folder before Tune touches it.

- `archive_results`: Tune starts a resumed trial's `result.json` and `progress.csv` from scratch (it restores them
  only for trials with a Tune-level checkpoint, and raysweep's checkpoints are Train's). Each is moved aside as
  `result.session-<k>.json` / `progress.session-<k>.csv` first; `raysweep.results.history` merges them back by epoch.
- `has_started_trials` / `clear_unstarted`: an experiment whose first start failed inside Tune (before any trial)
  keeps raysweep's files but nothing worth resuming; it can be started afresh over its own folder.
"""

from __future__ import annotations

import logging
import posixpath
import re

import pyarrow.fs as pafs

from raysweep.experiment import storage
from raysweep.experiment.layout import RESULT_FILE, SESSION_PATTERN, TRAIN_SUBDIR, progress_session_file, session_file

log = logging.getLogger(__name__)
# Tune's own top-level files, written by a start that may have failed before its first trial.
TUNE_FILES = re.compile(
    r"^(tuner\.pkl|experiment_state-.*\.json|searcher-state-.*\.pkl|basic-variant-state-.*\.json|"
    r"\.validate_storage_marker)$"
)


def _entries(path: str) -> list[pafs.FileInfo]:
    fs, inner = storage.filesystem(path)
    return fs.get_file_info(pafs.FileSelector(inner, recursive=False, allow_not_found=True))


def trial_folders(experiment_dir: str) -> list[pafs.FileInfo]:
    return [
        e
        for e in _entries(experiment_dir)
        if e.type == pafs.FileType.Directory and not e.base_name.startswith(("_", "."))
    ]


def has_started_trials(experiment_dir: str) -> bool:
    """A trial folder or a Train run exists: something ran and may hold results or checkpoints."""
    if trial_folders(experiment_dir):
        return True
    return any(e.type == pafs.FileType.Directory for e in _entries(storage.join(experiment_dir, TRAIN_SUBDIR)))


def archive_results(experiment_dir: str) -> int:
    """Move each trial's `result.json` / `progress.csv` to the next free session number; returns how many moved."""
    fs, _ = storage.filesystem(experiment_dir)
    moved = 0
    for folder in trial_folders(experiment_dir):
        names = {e.base_name for e in fs.get_file_info(pafs.FileSelector(folder.path, allow_not_found=True))}
        if RESULT_FILE not in names:
            continue
        numbers = [int(m.group(1)) for n in names if (m := SESSION_PATTERN.match(n))]
        k = max(numbers, default=0) + 1
        fs.move(posixpath.join(folder.path, RESULT_FILE), posixpath.join(folder.path, session_file(k)))
        if "progress.csv" in names:
            fs.move(posixpath.join(folder.path, "progress.csv"), posixpath.join(folder.path, progress_session_file(k)))
        moved += 1
    return moved


def clear_unstarted(experiment_dir: str) -> list[str]:
    """Delete Tune's files of a start that never ran a trial (raysweep's own files stay); returns their names."""
    fs, _ = storage.filesystem(experiment_dir)
    removed = []
    for entry in _entries(experiment_dir):
        if entry.type == pafs.FileType.File and TUNE_FILES.match(entry.base_name):
            fs.delete_file(entry.path)
            removed.append(entry.base_name)
    return removed
