"""The experiment's Optuna study on disk: Optuna's journal storage on a file beside the results (no Ray here).

A journal file is safe on NFS (no SQLite locking), is appended live by the searcher, and is readable by
`optuna-dashboard <path>`, `raysweep dashboard` and `optuna.load_study` (with `study_storage`) while the sweep runs. Its study is named after
the experiment; each trial carries its Tune trial id as the user attribute `ray_trial_id`. How parameter values are
encoded and how a finished trial is told to Optuna are fixed here too, so a study rebuilt from the reports
(`raysweep.results.study_view`) matches the one the searcher wrote.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

from optuna.trial import TrialState

from raysweep.experiment.layout import FAILURE_KEY
from raysweep.spec.schema import Choice, Grid

TRIAL_ID_ATTR = "ray_trial_id"
_PRIMITIVE = (str, int, float, bool, type(None))


def study_storage(journal_path: str | Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(journal_path)))


def encodable(values: list[Any]) -> bool:
    """Optuna categoricals hold None/bool/int/float/str only; other values (lists, dicts) travel as JSON."""
    return all(isinstance(v, _PRIMITIVE) for v in values)


def encode_value(dist: Choice | Grid, value: Any) -> Any:
    """A choice's value as the study stores it."""
    return value if encodable(dist.values) else json.dumps(value, sort_keys=True)


def outcome(result: Optional[dict], metric: str, error: bool) -> tuple[TrialState, Optional[float]]:
    """(state, value) to tell Optuna for a finished trial's last result."""
    if error or not result:
        return TrialState.FAIL, None
    if result.get(FAILURE_KEY):
        return TrialState.FAIL, None
    value = result.get(metric)
    if value is None or not math.isfinite(float(value)):
        return TrialState.FAIL, None
    epoch, total = result.get("epoch"), result.get("epochs_total")
    if epoch is not None and total is not None and int(epoch) < int(total):
        return TrialState.PRUNED, None
    return TrialState.COMPLETE, float(value)
