"""OptunaSearch that tells Optuna everything the trials reported, and keeps the study on disk.

Ray's integration falls short of that in three ways, each fixed here:
- Intermediate values are keyed by `training_iteration` (restarts at 1 on resume): here by the workers' `epoch`.
- Tune does not pass the result that made the scheduler stop a trial to `on_trial_result` (ASHA at a rung, ASHA at
  `max_t`, the time limit): that result arrives only as `on_trial_complete(result=...)`, and is recorded from there,
  so the study is never one rung stale.
- ASHA-stopped trials are told as COMPLETE with their low-fidelity value, which biases TPE towards configurations
  that were never trained to the end: a trial that ended before `epochs_total` is told as PRUNED (Optuna then uses
  its last intermediate value, as its own pruners do).

An epoch reported twice (a resumed trial redoing an epoch whose checkpoint had not been committed) keeps the newest
value, as the collected history does. Each Optuna trial carries its Tune trial id as the user attribute
`ray_trial_id`, so the study can be joined with the results parquet.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional

from ray.tune.search.optuna import OptunaSearch

from raysweep.experiment.study import TRIAL_ID_ATTR, outcome, study_storage

log = logging.getLogger(__name__)
__all__ = ["EpochAwareOptunaSearch", "outcome", "reported_value", "study_storage", "TRIAL_ID_ATTR"]


def reported_value(result: dict[str, Any], metric: str) -> Optional[tuple[int, float]]:
    """(epoch, objective) of a result that evaluated the objective, else None."""
    value, epoch = result.get(metric), result.get("epoch")
    if value is None or epoch is None or not result.get("evaluated", True):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return (int(epoch), value) if math.isfinite(value) else None


class EpochAwareOptunaSearch(OptunaSearch):
    def suggest(self, trial_id: str) -> Optional[dict]:
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None:
            ot_trial.set_user_attr(TRIAL_ID_ATTR, trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._record(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if result:
            self._record(trial_id, result)  # the result that made the scheduler stop the trial, if any
        state, value = outcome(result, self.metric, error)
        try:
            self._ot_study.tell(self._ot_trials[trial_id], value, state=state)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - Optuna refuses e.g. a second tell; never kill the sweep for it
            log.warning("optuna tell failed for %s: %s", trial_id, exc)
        self._completed_trials.add(trial_id)

    def _record(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        point = reported_value(result, self.metric)
        if point is None:
            return
        epoch, value = point
        ot_trial = self._ot_trials[trial_id]
        try:  # through the storage: Trial.report ignores a step reported before, and the newest value must win
            storage = self._ot_study._storage  # type: ignore[attr-defined]
            storage.set_trial_intermediate_value(ot_trial._trial_id, epoch, value)
        except Exception as exc:  # noqa: BLE001 - e.g. the trial was finished by an earlier session
            log.warning("optuna: cannot record epoch %d of %s: %s", epoch, trial_id, exc)
