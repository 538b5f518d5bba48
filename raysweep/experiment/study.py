"""The experiment's Optuna study on disk: Optuna's journal storage on a file beside the results (no Ray here).

A journal file is safe on NFS (no SQLite locking), is appended live by the searcher, and is readable by
`optuna-dashboard <path>`, `raysweep dashboard` and `optuna.load_study` while the sweep runs. Its study is named after
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

from raysweep.experiment.layout import FAILURE_KEY, STUDY_FILE
from raysweep.spec.schema import Choice, Grid

TRIAL_ID_ATTR = "ray_trial_id"
_PRIMITIVE = (str, int, float, bool, type(None))


def study_storage(journal_path: str | Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(journal_path)))


def load_study(experiment_dir: str | Path, name: str | None = None):
    """The study of a local experiment folder (its only study when `name` is None)."""
    import optuna

    storage = study_storage(Path(experiment_dir) / STUDY_FILE)
    if name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        name = names[0] if len(names) == 1 else Path(experiment_dir).name
    return optuna.load_study(study_name=name, storage=storage)


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
