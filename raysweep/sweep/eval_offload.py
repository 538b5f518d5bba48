"""Evaluation off the training critical path: an epoch's predictions are scored by a CPU actor on the node while
the next epoch trains, and the epoch is reported (with its checkpoint) once its scores are in.

Every rank still predicts its shard with the epoch's model and rank 0 gathers the outputs, as inline; only
`Task.evaluate` (the metric computation, e.g. HICO-DET mAP: tens of seconds at paper size) moves to a
`ScoringActor`. The epoch's report is held back until the next epoch's training ends, so:

- every report carries its own epoch's numbers (`epoch` is the evaluated epoch): ASHA and Optuna only ever decide on
  evaluated epochs, and the history is the inline one, epoch by epoch;
- the epoch's checkpoint is reported with its scores, never before them: a run killed while scores were pending
  resumes from the previous checkpoint and redoes the epoch (nothing is lost, as with inline evaluation);
- an LR schedule that consumes the objective (`OnPlateau`) needs it before the next epoch: such trials evaluate
  inline, as does the last epoch (nothing left to overlap with, and the trial must not end unscored).

`train.eval_overlap`: `auto` (default) overlaps when the trial trains on a GPU, whose host CPUs are otherwise idle
during training; `true` always (where the schedule allows); `false` never. docs/benchmarks.md has the measurements.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from raysweep.tasks.base import LRSchedule, Task, TaskState, TrainingParts

log = logging.getLogger(__name__)
SCORER_THREADS = 1  # the actor's torch/BLAS threads: scoring is numpy-bound; more would slow the training next to it


class ScoringActor:
    """Holds evaluation copies of the trial's task and task state (no modules, no tensors) and scores gathered
    outputs."""

    def __init__(self, task: Task, state: TaskState, threads: int = SCORER_THREADS):
        torch.set_num_threads(max(1, threads))
        self.task, self.state = task, state

    def score(self, outputs: Mapping[int, Any], split: str) -> tuple[dict[str, Any], Any]:
        """(the task's metrics of `split`, its per-class columns of this evaluation or None)."""
        scores = self.task.evaluate(outputs, split, self.state)
        return scores, self.task.per_class_results(self.state)


def _without_training_parts(obj: Any) -> Any:
    """A shallow copy of `obj` without what only training uses (modules, tensors that may sit on the GPU, loss
    functions: set to None): what `evaluate` reads is the config and the annotations `build` loaded, plain data."""
    clone = copy.copy(obj)
    for key, value in vars(obj).items():
        if callable(value) or isinstance(value, torch.Tensor):
            if isinstance(obj, Task):
                delattr(clone, key)
            else:
                setattr(clone, key, None)
    return clone


def evaluation_copy(task: Task, state: TaskState) -> tuple[Task, TaskState]:
    """The task and its state as the scorer needs them, picklable and on the CPU."""
    cpu_state = _without_training_parts(state)
    cpu_state.device = torch.device("cpu")
    return _without_training_parts(task), cpu_state


def schedule_needs_metric(schedule: LRSchedule) -> bool:
    """Does `step_epoch` read the objective? Unknown schedules are assumed to (and so evaluate inline)."""
    declared = getattr(schedule, "uses_metric", None)
    if declared is not None:
        return bool(declared)
    from raysweep.tasks.common.schedules import PerEpoch

    step = type(schedule).step_epoch
    return step not in (LRSchedule.step_epoch, PerEpoch.step_epoch)


def overlap_wanted(setting: Any, device: torch.device, schedule: LRSchedule) -> bool:
    """`train.eval_overlap` (auto / true / false) resolved for this trial."""
    if setting in (False, "false"):
        return False
    if schedule_needs_metric(schedule):
        if setting in (True, "true"):
            log.info("train.eval_overlap: true, but the LR schedule reads the objective every epoch: evaluating inline")
        return False
    return setting in (True, "true") or device.type == "cuda"


@dataclass
class _PendingSplit:
    split: str
    result: Any  # ObjectRef of ScoringActor.score
    outputs: Any  # ObjectRef of the gathered outputs: scored inline if the actor fails


@dataclass
class _PendingEpoch:
    epoch: int
    metrics: dict[str, Any]
    evaluated: bool
    test_due: bool
    carried: dict[str, Any]  # the selection metrics carried forward when this epoch's selection split is not due
    state: dict[str, Any] | None  # rank 0: a CPU copy of model / optimizer / schedule at the end of the epoch
    rngs: list[dict[str, Any]]
    inline_s: float  # prediction and hand-off time on the critical path
    splits: list[_PendingSplit] = field(default_factory=list)


class EvalOffload:
    """The worker loop's overlapped evaluation: `defer` an evaluated epoch, `settle` it after the next one trained."""

    def __init__(
        self,
        task: Task,
        state: TaskState,
        loop_config: Mapping[str, Any],
        rank: int,
        world: int,
        epochs: int,
        selection_split: str,
        history: list[dict[str, Any]],
        report: Callable[..., None],
    ):
        self.task, self.state, self.loop_config, self.rank, self.world = task, state, loop_config, rank, world
        self.epochs = epochs
        self.selection_split, self.history, self.report = selection_split, history, report
        self.pending: _PendingEpoch | None = None
        self.actor: Any = None

    @classmethod
    def create(
        cls,
        task: Task,
        parts: TrainingParts,
        config: Any,
        loop_config: Mapping[str, Any],
        rank: int,
        world: int,
        device: torch.device,
        selection_split: str,
        history: list[dict[str, Any]],
        report: Callable[..., None] | None = None,
    ) -> EvalOffload | None:
        """An offload for this trial, or None to evaluate inline (`train.eval_overlap` of the task's config)."""
        setting = getattr(getattr(config, "train", None), "eval_overlap", "auto")
        if task.epochs < 2 or not overlap_wanted(setting, device, parts.schedule):
            return None
        return cls(
            task, parts.state, loop_config, rank, world, task.epochs, selection_split, history, report or _ray_report
        )

    # ---- at the evaluation call site: instead of evaluating inline -----------------------------------------
    def defer(
        self,
        epoch: int,
        metrics: dict[str, Any],
        model: torch.nn.Module,
        eval_loaders: Mapping[str, DataLoader],
        parts: TrainingParts,
        evaluated: bool,
        test_due: bool,
        carried: dict[str, Any],
    ) -> None:
        """Predict the due splits now (this epoch's model), hand them to the scorer, and keep the epoch's checkpoint
        state; the epoch is reported by the next `settle`."""
        from raysweep.sweep.worker import _gather_outputs, _gather_rng, _unwrap, predict_shard

        started = time.perf_counter()
        pending = _PendingEpoch(epoch, metrics, evaluated, test_due, dict(carried), None, [], 0.0)
        for split, loader in eval_loaders.items():
            if not (evaluated if split == self.selection_split else test_due):
                continue
            gathered = _gather_outputs(predict_shard(self.task, model, loader, self.state))
            if self.rank == 0:
                pending.splits.append(self._submit(gathered, split))
        parts.schedule.step_epoch(epoch, None)  # this schedule ignores the metric (else the trial evaluates inline)
        pending.rngs = _gather_rng(self.world)  # collective; the RNG after prediction, as inline
        if self.rank == 0:
            pending.state = _cpu_copy(
                {
                    "model": _unwrap(model).state_dict(),
                    "optimizer": parts.optimizer.state_dict(),
                    "schedule": parts.schedule.state_dict(),
                    "epoch": epoch,
                }
            )
        pending.inline_s = time.perf_counter() - started
        self.pending = pending

    def _submit(self, gathered: Mapping[int, Any] | None, split: str) -> _PendingSplit:
        import ray  # ray: the scorer is a CPU actor on this node

        if self.actor is None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
            # num_cpus=0: it must not wait for a CPU slot that the sweep's trials hold (it uses little)
            self.actor = (
                ray.remote(num_cpus=0)(ScoringActor)
                .options(scheduling_strategy=here)
                .remote(*evaluation_copy(self.task, self.state))
            )
        outputs = ray.put(gathered)
        return _PendingSplit(split, self.actor.score.remote(outputs, split), outputs)

    # ---- right after the next epoch's training (and after the last epoch's) -------------------------------
    def settle(self, last_metrics: dict[str, Any]) -> dict[str, Any]:
        """Wait for the pending epoch's scores, report it with its checkpoint; returns the selection metrics to
        carry forward (`last_metrics` unchanged when nothing was pending)."""
        from raysweep.sweep.worker import _broadcast, write_per_class

        pending, self.pending = self.pending, None
        if pending is None:
            return last_metrics
        waited = time.perf_counter()
        results = None
        if self.rank == 0:
            results = []
            for part in pending.splits:
                scores, per_class = self._result(part)
                write_per_class(self.loop_config, per_class, pending.epoch + 1, part.split)
                results.append((part.split, scores))
        results = _broadcast(results)  # every rank reports the same numbers
        carried = pending.carried
        for split, scores in results or []:
            values = {f"{split}.{k}": float(v) for k, v in scores.items() if isinstance(v, (int, float))}
            if split == self.selection_split:
                carried = values
            else:
                pending.metrics.update(values)
        metrics = pending.metrics
        metrics.update(carried)
        metrics["evaluated"] = pending.evaluated
        metrics["test_evaluated"] = pending.test_due
        metrics["eval_time_s"] = pending.inline_s + time.perf_counter() - waited
        self.history.append(metrics)
        state = None if pending.state is None else {**pending.state, "metrics": carried, "rng": pending.rngs}
        self.report(metrics, state, self.history)
        if pending.epoch >= self.epochs - 2:  # nothing left to defer: the last epoch evaluates inline
            self.close()
        return carried

    def _result(self, pending: _PendingSplit) -> tuple[dict[str, Any], Any]:
        import ray

        try:
            return ray.get(pending.result)
        except Exception as exc:  # noqa: BLE001 - an actor lost or a task copy that cannot score: score here
            log.warning(
                "scoring %s in the scorer actor failed (%s: %s); scoring inline", pending.split, type(exc).__name__, exc
            )
            scores = self.task.evaluate(ray.get(pending.outputs), pending.split, self.state)
            return scores, self.task.per_class_results(self.state)

    def close(self) -> None:
        if self.actor is not None:
            import ray

            ray.kill(self.actor)
            self.actor = None


def _cpu_copy(value: Any) -> Any:
    """A deep copy with every tensor cloned to the CPU: the state as it is now, while training moves on."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return value


def _ray_report(metrics: dict[str, Any], state: dict[str, Any] | None, history: list[dict[str, Any]]) -> None:
    """Report one epoch as the inline loop does: rank 0 with its checkpoint (state.pt + history.json)."""
    import ray.train  # ray

    from raysweep.experiment.layout import STATE_FILE
    from raysweep.sweep.checkpoints import write_history

    if state is None:
        ray.train.report(metrics, checkpoint=None)  # ray: every worker reports (collective)
        return
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, Path(folder) / STATE_FILE)
        write_history(folder, history)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))  # ray
