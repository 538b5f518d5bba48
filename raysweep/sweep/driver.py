"""The Tune trainable: one driver per trial that builds and fits a Ray Train `TorchTrainer` (Train V2 pattern).

The driver holds a `sweep_driver` custom-resource slot and no CPU; its Train run is named after the trial id under
`<experiment>/_train/`, so a relaunched driver (trial retry, `--resume`) finds the run's last checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from raysweep.config_tree import with_updates
from raysweep.errors import TrialFailure
from raysweep.experiment.layout import TRAIN_SUBDIR

DRIVER_RESOURCE = "sweep_driver"


@dataclass(frozen=True)
class TrialPlan:
    """Everything a driver needs, fixed for the whole sweep (picklable, no Ray objects)."""

    task: str
    base_config: dict[str, Any]
    experiment_dir: str  # <storage>/<name>
    cache_dir: str  # embedded data and embeddings (Task.prepare)
    metric: str
    num_workers: int
    use_gpu: bool
    cpus_per_worker: float
    gpus_per_worker: float
    placement_strategy: str
    worker_restarts: int
    keep_checkpoints: int
    controller_failure_limit: int = 5  # worker-group start failures before the trial errors (Ray: forever)


def trial_config(base: dict[str, Any], sampled: dict[str, Any]) -> dict[str, Any]:
    """Base config with the sampled dotted keys set, as a plain tree: the driver imports no task (nor torch); the
    worker validates it with the task's schema, once."""
    return with_updates(base, sampled)


def make_trainable(plan: TrialPlan) -> Callable[[dict[str, Any]], None]:
    plan_dict = asdict(plan)

    def raysweep_trial(config: dict[str, Any]) -> None:  # the name is part of the experiment: keep it stable
        import ray.train
        from ray import tune
        from ray.tune.integration.ray_train import TuneReportCallback

        from raysweep.experiment.layout import FAILURE_KEY
        from raysweep.experiment.per_class import trial_file as per_class_file
        from raysweep.experiment.storage import join
        from raysweep.sweep.torch_backend import light_torch_trainer as TorchTrainer  # torch-free driver/controller
        from raysweep.sweep.worker_entry import train_loop_per_worker  # imports the worker lazily

        p = TrialPlan(**plan_dict)
        trial_id = tune.get_context().get_trial_id()
        task_config = trial_config(p.base_config, config)
        resources = {"CPU": p.cpus_per_worker}
        if p.use_gpu:
            resources["GPU"] = p.gpus_per_worker
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={
                "task": p.task,
                "config": task_config,  # the worker reads the seed through Task.train_section
                "metric": p.metric,
                "cache_dir": p.cache_dir,
                "threads_per_worker": max(1, int(p.cpus_per_worker)),
                "trial_id": trial_id,
                "per_class_path": per_class_file(p.experiment_dir, trial_id),
            },
            scaling_config=ray.train.ScalingConfig(
                num_workers=p.num_workers,
                use_gpu=p.use_gpu,
                resources_per_worker=resources,
                placement_strategy=p.placement_strategy,
            ),
            run_config=ray.train.RunConfig(
                name=trial_id,
                storage_path=join(p.experiment_dir, TRAIN_SUBDIR),
                # ray.train's annotations name Train V1's classes; these are V2's (RAY_TRAIN_V2_ENABLED)
                callbacks=[TuneReportCallback()],  # type: ignore[list-item]
                failure_config=ray.train.FailureConfig(  # type: ignore[call-arg]
                    max_failures=p.worker_restarts, controller_failure_limit=p.controller_failure_limit
                ),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=p.keep_checkpoints),
            ),
        )
        result = trainer.fit()
        failure = (result.metrics or {}).get(FAILURE_KEY)
        if failure:
            raise TrialFailure(failure)

    return raysweep_trial
