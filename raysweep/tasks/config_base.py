"""The config side of the task interface, without torch: what the sweep's own process validates and reads.

Every task config is a `TaskConfig` with a `train` section extending `TrainSection`; `raysweep.tasks.base` holds the
torch side (the `Task` class). Keeping these apart lets `raysweep tune` validate a space file, run Tune's loop and
collect the results without importing torch or any model code (see `raysweep.tasks.card`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class TrainSection(StrictModel):
    """What the sweep reads of every task config: its `train` section extends this (batch sizes, AMP, ...), and may
    change the defaults.

    `epochs` is ASHA's max time and the loop's length, `eval_every` / `test_every` the evaluation schedule, `seed` the
    trial's seed (model init, shuffling, augmentation).
    """

    epochs: int = Field(1, ge=1)
    eval_every: int = Field(1, ge=1)  # evaluate every k epochs and after the last
    test_every: int = Field(1, ge=0)  # with validation: test every k evaluated epochs (0: only after the last)
    seed: int = Field(0, ge=0, le=2**32 - 1)  # numpy takes seeds in [0, 2**32)
    # Score evaluations in a CPU actor while the next epoch trains (sweep/eval_offload.py): auto = on a GPU trial
    eval_overlap: Union[bool, Literal["auto"]] = "auto"


class TaskConfig(StrictModel):
    """Base of every task's config. A task declares its sections, one of them `train` (a TrainSection subclass): the
    only one the sweep reads. Checked when the class is defined; the task's own sections keep their order."""

    if TYPE_CHECKING:
        train: TrainSection

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        train = cls.model_fields.get("train")
        if train is None or not (isinstance(train.annotation, type) and issubclass(train.annotation, TrainSection)):
            raise TypeError(f"{cls.__name__}: a task config needs a `train` section whose model extends TrainSection")
