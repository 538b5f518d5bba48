"""Ray's W&B and MLflow logger callbacks, adjusted to raysweep's conventions (see `raysweep.sweep.tracking`).

Module-level classes so that Tune can pickle them with the run config (`Tuner.restore` on --resume); imported only
when a tracker is on, since importing them imports wandb / mlflow.
"""

from __future__ import annotations

from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback

from raysweep.sweep.tracking import TRIAL_TAG, full_config, measurements


class TrialWandbCallback(WandbLoggerCallback):
    """Ray's W&B callback with run id and name = trial id, the full config, and step = epoch."""

    def __init__(self, base_config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_config = base_config

    def log_trial_start(self, trial) -> None:
        init = dict(id=trial.trial_id, name=trial.trial_id, resume="allow", reinit=True, allow_val_change=True,
                    group=self.group, project=self.project, config=full_config(self.base_config, trial.config))
        init.update(self.kwargs)
        self._start_logging_actor(trial, [*self._exclude_results, *self.excludes, "config"], **init)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        numbers: dict[str, Any] = measurements(result)
        if "epoch" in numbers:
            numbers["training_iteration"] = int(numbers["epoch"])  # Ray's actor logs with step=training_iteration
        super().log_trial_result(iteration, trial, numbers)


class TrialMLflowCallback(MLflowLoggerCallback):
    """Ray's MLflow callback with run name = trial id, the full config, step = epoch; a resumed trial continues its
    run (found by the `raysweep.trial_id` tag) instead of opening a second one."""

    def __init__(self, base_config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_config = base_config

    def log_trial_start(self, trial) -> None:
        if trial in self._trial_runs:
            return
        util = self.mlflow_util
        client = util._get_client()
        found = client.search_runs([util.experiment_id], filter_string=f"tags.`{TRIAL_TAG}` = '{trial.trial_id}'",
                                   max_results=1)
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
        else:
            run_id = util.start_run(tags={**self.tags, TRIAL_TAG: trial.trial_id}, run_name=trial.trial_id).info.run_id
            util.log_params(run_id=run_id, params_to_log=full_config(self.base_config, trial.config))
        self._trial_runs[trial] = run_id

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if trial not in self._trial_runs:
            self.log_trial_start(trial)
        numbers = measurements(result)
        step = int(numbers.get("epoch", result.get("training_iteration", iteration)))
        self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=numbers, step=step)
