"""The small interface through which the sweep layer knows a task.

A task is a training recipe in plain PyTorch (never imports ray or optuna). Its config embeds a `train` section that
extends `TrainSection` (epochs, evaluation schedule, seed): all the sweep reads of a config, through
`Task.train_section`. The sweep layer's worker loop (`raysweep.sweep.worker`) does:

    config = task_cls.config_model.model_validate(trial_config)     # validated once, here in the worker
    config = with_updates(config, task_cls.prepare(config, cache))    # a cache hit: the sweep prepared already
    task = task_cls(config, cache);  seed_everything(task.train_section(config).seed)
    parts = task.build(device, rank, world_size)   # model, optimiser, LR schedule, datasets, parts.state
    model = <DDP-wrap parts.model>;  loaders = <distributed loaders over parts.train_set / parts.eval_set>
    <restore>: model, optimiser, schedule, epoch and RNG from the last checkpoint, when there is one
    for epoch in range(start_epoch, task.epochs):
        <train epoch>:
            task.on_epoch_start(epoch)
            for it, batch in enumerate(train_loader):
                loss, logs = task.train_step(model, batch, epoch, it, parts.state)   # loss: scalar, graph attached
                loss.backward(); clip(parts.grad_clip_norm); parts.optimizer.step(); parts.optimizer.zero_grad()
                parts.schedule.step_iteration(epoch + (it + 1) / len(train_loader))
        <evaluate>: for split, dataset in (("val", parts.val_set), ("test", parts.eval_set)):  # val when carved out
            if <due this epoch: should_evaluate / should_evaluate_test, and always after the last>:
                outputs = {idx: out for batch in <loader> for idx, out in zip(*task.predict(model, batch, parts.state))}
                outputs = <gathered from all ranks onto rank 0>
                metrics[split] = task.evaluate(outputs, split, parts.state)   # rank 0 only; broadcast afterwards
        parts.schedule.step_epoch(epoch, <the objective on the selection split>)
        <checkpoint>: report metrics + save model, optimizer, schedule, epoch, RNG

`build` is the only place a task makes per-trial state; what `train_step`, `predict`, `evaluate` and `final_metrics`
need from it (device, loss, ground truth) travels in `parts.state`, never on `self`. Everything a trial needs
travels in the config: no global state, no files outside `config` paths and the cache dir.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from raysweep.tasks.card import TaskCard
from raysweep.tasks.config_base import StrictModel, TaskConfig, TrainSection
from raysweep.tasks.paper_table import PaperTable

__all__ = ["LRSchedule", "StrictModel", "Task", "TaskConfig", "TaskState", "TrainSection", "TrainingParts"]


@dataclass
class TaskState:
    """What `build` makes that `train_step`, `predict`, `evaluate` and `final_metrics` need: at least the device.
    Tasks subclass it (loss function, evaluation ground truth, ...); it travels in `TrainingParts.state`."""

    device: torch.device
    # Per-class columns of the last `evaluate` with this state (see `Task.per_class_results`); tasks set it there.
    per_class: Mapping[str, Sequence[Any]] | None = field(default=None, kw_only=True)


class LRSchedule:
    """Learning-rate schedule with the two hooks the loop calls; wraps any torch scheduler.

    `step_iteration(epoch_float)` runs after every optimiser step with the fractional epoch reached;
    `step_epoch(epoch, metric)` runs after every epoch (metric: the objective if evaluated this epoch, else None).
    Subclasses override one or both. State goes into checkpoints via state_dict / load_state_dict.
    """

    def __init__(self, scheduler: Any | None = None):
        self.scheduler = scheduler

    def step_iteration(self, epoch_float: float) -> None:  # noqa: D401 - hook
        pass

    def step_epoch(self, epoch: int, metric: float | None) -> None:
        pass

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is not None and state:
            self.scheduler.load_state_dict(state)


@dataclass
class TrainingParts:
    """What `Task.build` hands the loop. The loop owns DDP wrapping, samplers, checkpoints and reporting."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    train_set: Dataset
    eval_set: Dataset  # the test split: what the paper's table reports
    batch_size: int  # per worker
    eval_batch_size: int
    state: TaskState  # handed to train_step / predict / evaluate / final_metrics
    collate_fn: Callable | None = None
    grad_clip_norm: float | None = None
    find_unused_parameters: bool = False  # DDP flag (HQM's alternating branches leave parameters unused)
    num_loader_workers: int = 0
    # The validation split carved out of the training set (`stratified_holdout`), when the config asks for one: the
    # sweep's objective, ASHA and Optuna then see only its metrics, never the test set's.
    val_set: Dataset | None = None


class Task(ABC):
    """A sweepable training recipe. One instance per trial (per worker process), built from its config.

    A task declares itself with a `card` (`raysweep.tasks.card.TaskCard`: config model, metric names, prepare keys,
    validation key, paper table), which the sweep's process reads without importing the task; the class attributes
    below are copied from it. A task without a card sets the attributes itself."""

    card: ClassVar[TaskCard | None] = None
    name: ClassVar[str]
    config_model: ClassVar[type[TaskConfig]]
    # Metric names `evaluate` returns (fractions in [0, 1]); the first is the default objective.
    metric_names: ClassVar[tuple[str, ...]]
    prepare_keys: ClassVar[tuple[str, ...]] = ()  # see TaskCard.prepare_keys
    validation_key: ClassVar[str] = "data.validation"  # see TaskCard.validation_key

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        card = cls.__dict__.get("card")
        if card is not None:
            cls.name, cls.config_model, cls.metric_names = card.name, card.config_model, card.metric_names
            cls.prepare_keys, cls.validation_key = card.prepare_keys, card.validation_key

    def __init__(self, config: TaskConfig, cache_dir: Path | None = None):
        self.config = config
        self.cache_dir = cache_dir  # where `prepare` put shared artefacts (None: task must not need them)

    @classmethod
    def paper_table(cls, configs: Sequence[Mapping[str, Any]]) -> PaperTable | None:
        """The table `raysweep report` lays these trials out in (their flat configs, dotted keys; a task may lay
        datasets out differently), from `tasks/<task>/paper.py`. None: no paper table (a column per metric)."""
        return cls.card.paper_table(configs) if cls.card is not None else None

    # ---- once per sweep, in the driver process, before any trial starts -------------------------------------
    @classmethod
    def prepare(cls, config: TaskConfig, cache_dir: Path) -> dict[str, Any]:
        """Materialise what every trial shares (embedded synthetic data, caches); idempotent.

        Returns dotted-path config updates to apply to every trial (e.g. {"data.root": "/abs/path"}).
        """
        return {}

    # ---- what the sweep reads of a config -----------------------------------------------------------------
    @classmethod
    def train_section(cls, config: TaskConfig) -> TrainSection:
        """The config's `train` section (epochs, evaluation schedule, seed): what the sweep reads of a config."""
        return TaskCard.train_section(config)

    # ---- per trial / worker ------------------------------------------------------------------------------
    @property
    def epochs(self) -> int:
        """Number of training epochs this trial runs (the scheduler's max time): `train.epochs`."""
        return self.train_section(self.config).epochs

    def should_evaluate(self, epoch: int) -> bool:
        """Evaluate the selection split (validation if carved out, else test) after `epoch` (0-based)? Every
        `train.eval_every` epochs; the loop always evaluates after the last epoch."""
        return (epoch + 1) % self.train_section(self.config).eval_every == 0

    def should_evaluate_test(self, epoch: int) -> bool:
        """With a validation split: evaluate the test split too after `epoch`? On evaluated epochs that are a multiple
        of `train.test_every` (0: never early). The loop always evaluates it after the last epoch."""
        every = self.train_section(self.config).test_every
        return every > 0 and self.should_evaluate(epoch) and (epoch + 1) % every == 0

    @abstractmethod
    def build(self, device: torch.device, rank: int = 0, world_size: int = 1) -> TrainingParts:
        """Create model (on `device`), optimiser, schedule and datasets. Seeding is done by the caller."""

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for per-epoch state (e.g. HQM's branch alternation restarts every epoch)."""
        return None  # default: no per-epoch state

    @abstractmethod
    def train_step(self, model: nn.Module, batch: Any, epoch: int, iteration: int,
                   state: TaskState) -> tuple[torch.Tensor, Mapping[str, float]]:
        """Forward one batch; return (scalar loss with graph, extra floats to log). Moves the batch to
        `state.device`."""

    @abstractmethod
    def predict(self, model: nn.Module, batch: Any, state: TaskState) -> tuple[Sequence[int], Sequence[Any]]:
        """Eval forward (no grad): (dataset indices, picklable per-sample outputs, e.g. numpy rows)."""

    @abstractmethod
    def evaluate(self, outputs: Mapping[int, Any], split: str, state: TaskState) -> dict[str, float]:
        """Metrics of `split` ("val" or "test") from every sample's output, keyed by its index in that split's
        dataset (all indices present). The loop reports them as `<split>.<metric>`."""

    def final_metrics(self, model: nn.Module, state: TaskState) -> dict[str, float]:
        """Extra metrics computed once after the last epoch, on rank 0 (e.g. DEFR's detection mAP of the final
        model); merged into that epoch's report. Default: none."""
        return {}

    def per_class_results(self, state: TaskState) -> Mapping[str, Sequence[Any]] | None:
        """Per-class results of the last `evaluate` call with this state, as columns of equal length (one entry per
        class: at least `class_index`, `ap`, `n_train`), which the sweep saves per trial so per-class plots need no
        re-evaluation. None: the task keeps none."""
        return state.per_class

    def num_samples(self, batch: Any) -> int:
        """Images in a batch, for throughput; default: length of the first element."""
        first = batch[0] if isinstance(batch, (list, tuple)) else batch
        return len(first)


def evaluate_in_process(task: Task, parts: TrainingParts, split: str = "test") -> dict[str, float]:
    """Predict over one split in this process and compute its metrics: the worker loop's evaluation without Ray or
    ranks, for tests, benchmarks and notebooks."""
    dataset = parts.eval_set if split == "test" else parts.val_set
    if dataset is None:
        raise ValueError(f"split {split!r}: this task was built without a validation split")
    parts.model.eval()
    outputs: dict[int, Any] = {}
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=parts.eval_batch_size, collate_fn=parts.collate_fn):
            indices, predictions = task.predict(parts.model, batch, parts.state)
            outputs.update(zip(indices, predictions, strict=True))
    return task.evaluate(outputs, split, parts.state)

