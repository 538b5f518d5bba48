"""A task's card: what everything outside a trial's worker knows of a task, without importing it.

`raysweep tune` is the process that lives as long as the sweep (Tune's loop, the searcher, the collection). It
validates configs, names metrics and lays out tables, but never trains: importing the task's module there (torch,
torchvision, timm, the model code) cost it ~0.7 GB for the whole sweep. A card holds the task's config model (plain
pydantic, `raysweep.tasks.config_base`), metric names, prepare keys, validation key and paper table, and the
"module:Class" of the `Task` that does the work, imported only where work is done (the workers, and the one child
process that prepares the data: `raysweep/sweep/task_cache.py`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from raysweep.tasks.config_base import TaskConfig, TrainSection
from raysweep.tasks.paper_table import PaperTable

if TYPE_CHECKING:
    from raysweep.tasks.base import Task


def no_paper_table(configs: Sequence[Mapping[str, Any]]) -> Optional[PaperTable]:
    """Tasks without a published table: `raysweep report` shows a column per metric."""
    return None


@dataclass(frozen=True)
class TaskCard:
    name: str
    config_model: type[TaskConfig]
    # Metric names `evaluate` returns (fractions in [0, 1]); the first is the default objective.
    metric_names: tuple[str, ...]
    task_class: str  # "module:Class" of the Task subclass
    # Searched keys that change what `prepare` materialises (e.g. the text encoder): the sweep prepares once per
    # combination of their values, so trials share the result instead of each computing it.
    prepare_keys: tuple[str, ...] = ()
    # The boolean config key that carves a validation split out of the training set; the sweep sets it from the
    # space file's `selection:` (true for `val`, false when a fixed grid reproduces a published test protocol).
    validation_key: str = "data.validation"
    # The table `raysweep report` lays trials out in, from their flat configs (dotted keys): tasks/<task>/paper.py.
    paper_table: Callable[[Sequence[Mapping[str, Any]]], Optional[PaperTable]] = no_paper_table

    @staticmethod
    def train_section(config: TaskConfig) -> TrainSection:
        """The config's `train` section (epochs, evaluation schedule, seed): what the sweep reads of a config (the
        one definition; `Task.train_section` is this)."""
        return config.train

    def load(self) -> type[Task]:
        """The Task class (imports torch and the task's model code)."""
        module, attr = self.task_class.split(":")
        return getattr(importlib.import_module(module), attr)


def card_of(task_cls: type[Task]) -> TaskCard:
    """The card of a Task class: its own, or one read off its class attributes (a task registered by class)."""
    if task_cls.card is not None:
        return task_cls.card
    return TaskCard(
        name=task_cls.name,
        config_model=getattr(task_cls, "config_model", None),  # type: ignore[arg-type]  # a task under test may lack one
        metric_names=tuple(task_cls.metric_names),
        task_class=f"{task_cls.__module__}:{task_cls.__qualname__}",
        prepare_keys=tuple(task_cls.prepare_keys),
        validation_key=task_cls.validation_key,
        paper_table=task_cls.paper_table,
    )
