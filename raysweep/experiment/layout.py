"""Every file and folder name of an experiment, in one place: what `raysweep tune` writes and `collect` reads.

`<storage>/<name>/` holds Tune's own files (`experiment_state-*.json`, `tuner.pkl`, one folder per trial with
`params.json`, `result.json` and `result.session-<k>.json` of earlier sessions) and raysweep's:

| name | what |
|---|---|
| `raysweep_space.yaml` | the space file as given (written before the first trial) |
| `raysweep_meta.json` | overrides, versions, commit (written when the first trial starts) |
| `raysweep.lock` | the live sweep that owns the folder |
| `optuna_study.journal` | the Optuna study (journal storage) |
| `_train/<trial id>/` | each trial's Train run: `checkpoint_*/{state.pt, history.json, failure.json}`, `per_class.parquet` |
| `results.parquet` | one row per trial, with `history.parquet` and `per_class.parquet` beside it |
| `plots/` | `raysweep plots` output |
| `_mlruns/` | MLflow's file store (when tracking to MLflow without a server) |
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

from raysweep.experiment import storage

# raysweep's files in the experiment folder
SPACE_COPY = "raysweep_space.yaml"
META_FILE = "raysweep_meta.json"
LOCK_FILE = "raysweep.lock"
STUDY_FILE = "optuna_study.journal"
RESULTS_FILE = "results.parquet"
HISTORY_PARQUET = "history.parquet"  # beside the results parquet: one row per (trial, epoch, metric)
PER_CLASS_FILE = "per_class.parquet"  # per trial under _train/<trial id>/, and gathered beside the results
PLOTS_DIR = "plots"
MLFLOW_DIR = "_mlruns"  # MLflow's file store when `tracking.mlflow` has no URI ("_": not a trial folder)
RAYSWEEP_FILES = frozenset({META_FILE, SPACE_COPY, LOCK_FILE, RESULTS_FILE})

# Ray Train's runs, one folder per trial id ("_": not a trial folder to `collect`)
TRAIN_SUBDIR = "_train"
CHECKPOINT_PREFIX = "checkpoint_"
# inside each checkpoint a worker reports
STATE_FILE = "state.pt"  # model, optimiser, epoch, RNG states
FAILURE_FILE = "failure.json"  # a trial that failed for good: what it reported instead of metrics
CHECKPOINT_HISTORY = "history.json"  # every epoch reported up to this checkpoint

# Tune's files of one trial folder
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
SESSION_PATTERN = re.compile(r"^result\.session-(\d+)\.json$")

# the report key a worker sets instead of metrics when training cannot go on
FAILURE_KEY = "trial_failure"


def session_file(k: int) -> str:
    """`result.json` of an earlier session `k`, moved aside by `--resume`."""
    return f"result.session-{k}.json"


def progress_session_file(k: int) -> str:
    return f"progress.session-{k}.csv"


def beside(target: str, name: str) -> str:
    """The companion file `name` (history.parquet, per_class.parquet) of a results parquet: in the same folder for
    `results.parquet`, else `<stem>.<name>` (`-o runs/a.parquet` → `runs/a.history.parquet`)."""
    folder, base = posixpath.split(target)
    if base == RESULTS_FILE:
        return f"{folder}/{name}"
    stem = base[: -len(".parquet")] if base.endswith(".parquet") else base
    return f"{folder}/{stem}.{name}"


class _File:
    """An attribute of `ExperimentLayout`: the path of one of the experiment's files or folders."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, layout: ExperimentLayout, owner: Any = None) -> str:
        return layout.path(self.name)


@dataclass(frozen=True)
class ExperimentLayout:
    """The paths of one experiment folder `root` (a local path or a URI, as `storage.normalise` gives it)."""

    root: str

    @classmethod
    def of(cls, storage_root: str, name: str) -> ExperimentLayout:
        return cls(storage.join(storage.normalise(storage_root), name))

    def path(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    space_copy = _File(SPACE_COPY)
    meta = _File(META_FILE)
    lock = _File(LOCK_FILE)
    study = _File(STUDY_FILE)
    results = _File(RESULTS_FILE)
    history = _File(HISTORY_PARQUET)
    per_class = _File(PER_CLASS_FILE)
    train_dir = _File(TRAIN_SUBDIR)
    plots_dir = _File(PLOTS_DIR)

    def train_run(self, trial_id: str) -> str:
        """The Train run folder of one trial (its checkpoints)."""
        return self.path(TRAIN_SUBDIR, trial_id)

    def trial_per_class(self, trial_id: str) -> str:
        return self.path(TRAIN_SUBDIR, trial_id, PER_CLASS_FILE)
