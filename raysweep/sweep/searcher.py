"""OptunaSearch that tells Optuna the truth about early-stopped trials.

Ray's integration reports intermediate values by `training_iteration` (restarts at 1 on resume) and tells trials
that ASHA stopped as COMPLETE with their low-fidelity value, which biases TPE towards configs that were never
trained to the end. Here intermediate values are keyed by the workers' `epoch`, and a trial that ended before its
`epochs_total` is told as PRUNED (Optuna then uses its last intermediate value, as its own pruners do).
"""

from __future__ import annotations

import logging
import math
from typing import Optional

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

log = logging.getLogger(__name__)


def outcome(result: Optional[dict], metric: str, error: bool) -> tuple[TrialState, Optional[float]]:
    """(state, value) to tell Optuna for a finished trial's last result."""
    if error or not result:
        return TrialState.FAIL, None
    if result.get("trial_failure"):
        return TrialState.FAIL, None
    value = result.get(metric)
    if value is None or not math.isfinite(float(value)):
        return TrialState.FAIL, None
    epoch, total = result.get("epoch"), result.get("epochs_total")
    if epoch is not None and total is not None and int(epoch) < int(total):
        return TrialState.PRUNED, None
    return TrialState.COMPLETE, float(value)


class EpochAwareOptunaSearch(OptunaSearch):
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        value, epoch = result.get(self.metric), result.get("epoch")
        if value is None or epoch is None or not result.get("evaluated", True):
            return
        if math.isfinite(float(value)):
            self._ot_trials[trial_id].report(float(value), int(epoch))

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        state, value = outcome(result, self.metric, error)
        try:
            self._ot_study.tell(self._ot_trials[trial_id], value, state=state)
        except Exception as exc:  # noqa: BLE001 - Optuna refuses e.g. a second tell; never kill the sweep for it
            log.warning("optuna tell failed for %s: %s", trial_id, exc)
        self._completed_trials.add(trial_id)
