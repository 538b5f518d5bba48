"""W&B and MLflow as Tune callbacks in the sweep's own process, through each library's own API.

Ray's `WandbLoggerCallback` runs a logging actor and a queue actor per trial; on a small machine those extra
processes starve the trials (a 2-trial sweep on 2 CPUs stalled), and its step is Tune's iteration counter, which
restarts on --resume. Here each tracker keeps one run per trial in this process: W&B runs side by side
(`reinit="create_new"`), MLflow through `MlflowClient` with one `log_batch` per report.

Module-level classes so that Tune can pickle them with the run config (`Tuner.restore` on --resume); imported only
when a tracker is on, since importing them imports wandb / mlflow. Conventions: `raysweep.sweep.tracking`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

from ray.tune import Callback

from raysweep.sweep.tracking import TRIAL_TAG, full_config, measurements

log = logging.getLogger(__name__)


def _epoch(result: dict[str, Any]) -> int:
    return int(result.get("epoch") or result.get("training_iteration") or 0)


class TrialWandbCallback(Callback):
    """One W&B run per trial: id and name = trial id, config = the full trial config, step = epoch. Files go into the
    trial's folder (`<trial folder>/wandb/`); offline runs are synced later with `wandb sync`."""

    def __init__(
        self,
        base_config: dict[str, Any],
        project: str,
        group: str,
        entity: Optional[str] = None,
        mode: Optional[str] = None,
    ) -> None:
        self.base_config, self.project, self.group, self.entity, self.mode = base_config, project, group, entity, mode
        self._runs: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_runs": {}}  # live runs stay in this process

    def _start(self, trial: Any) -> Any:
        import wandb

        run = self._runs.get(trial.trial_id)
        if run is None:
            run = wandb.init(
                id=trial.trial_id,
                name=trial.trial_id,
                project=self.project,
                group=self.group,
                entity=self.entity,
                mode=self.mode,  # type: ignore[arg-type]
                dir=trial.local_path,
                resume="allow",
                reinit="create_new",
                config=full_config(self.base_config, trial.config),
                settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
            )
            self._runs[trial.trial_id] = run
        return run

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._start(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._start(trial).log(measurements(result), step=_epoch(result))

    def _finish(self, trial: Any, exit_code: int) -> None:
        run = self._runs.pop(trial.trial_id, None)
        if run is not None:
            run.finish(exit_code=exit_code)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, 0)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, 1)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for trial_id in list(self._runs):
            self._runs.pop(trial_id).finish()


class TrialMLflowCallback(Callback):
    """One MLflow run per trial: run name = trial id (also the `raysweep.trial_id` tag), params = the full trial
    config, metrics with step = epoch; a resumed trial continues its run instead of opening a second one."""

    def __init__(
        self,
        base_config: dict[str, Any],
        tracking_uri: str,
        experiment_name: str,
        tags: Optional[dict[str, str]] = None,
    ) -> None:
        self.base_config, self.tracking_uri, self.experiment_name = base_config, tracking_uri, experiment_name
        self.tags = dict(tags or {})
        self._client: Any = None
        self._experiment_id: Optional[str] = None
        self._runs: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None, "_experiment_id": None, "_runs": {}}

    def setup(self, **info: Any) -> None:  # type: ignore[override]
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        found = self._client.get_experiment_by_name(self.experiment_name)
        self._experiment_id = found.experiment_id if found else self._client.create_experiment(self.experiment_name)

    def _run_id(self, trial: Any) -> str:
        if trial.trial_id in self._runs:
            return self._runs[trial.trial_id]
        if self._client is None:
            self.setup()
        from mlflow.entities import Param, RunTag

        found = self._client.search_runs(
            [self._experiment_id], max_results=1, filter_string=f"tags.`{TRIAL_TAG}` = '{trial.trial_id}'"
        )
        if found:
            run_id = found[0].info.run_id
            self._client.update_run(run_id, status="RUNNING")
        else:
            run = self._client.create_run(
                self._experiment_id, run_name=trial.trial_id, tags={**self.tags, TRIAL_TAG: trial.trial_id}
            )
            run_id = run.info.run_id
            params = [Param(key, str(value)) for key, value in full_config(self.base_config, trial.config).items()]
            for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self._client.log_batch(
                    run_id, params=params[start : start + 100], tags=[RunTag(TRIAL_TAG, trial.trial_id)]
                )
        self._runs[trial.trial_id] = run_id
        return run_id

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._run_id(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), _epoch(result)
        metrics = [Metric(key, value, now, step) for key, value in measurements(result).items()]
        self._client.log_batch(self._run_id(trial), metrics=metrics)

    def _end(self, trial: Any, status: str) -> None:
        run_id = self._runs.pop(trial.trial_id, None)
        if run_id is not None:
            self._client.set_terminated(run_id, status)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, "FAILED")
