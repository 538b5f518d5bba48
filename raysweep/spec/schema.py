"""The search-space file: one YAML per sweep, validated by these models.

task: defr                      # which recipe (raysweep.tasks registry)
name: defr-embedded             # default experiment name (--name overrides)
config: {...}                   # fixed base config of the task (its own schema; dotted keys)
search:                         # swept keys of `config`, each with a distribution
  optim.lr: {distribution: loguniform, low: 1.0e-4, high: 3.0e-3}
  classifier.text_encoder: {distribution: choice, values: [minilm, bert], when: {classifier.init: language}}
  recipe:                       # `rows`: listed combinations of several keys (a grid that is not a product)
    distribution: rows
    keys:   [model.backbone, optim.lr]
    values: [[ImageNet1k-ViT-B, 1.0e-4], [CLIP-ViT-B, 1.5e-5]]
optuna:    {sampler: tpe, seed: 0, n_startup_trials: 4}
scheduler: {type: asha, grace_period: 1, reduction_factor: 2}   # or milestones: [..] / rungs_after_lr_drop
objective: {metric: map, mode: max}
trials:    {num_samples: 6, max_concurrent: 2}
resources: {num_workers: 1, use_gpu: false, cpus_per_worker: 1}
storage:   {path: ~/raysweep_results, keep_checkpoints: 2}
failure:   {worker_restarts: 2, trial_retries: 1}
tracking:  {wandb: false, mlflow: false, tensorboard: true}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from raysweep.spec.names import check_name, check_storage
from raysweep.tasks.config_base import StrictModel

MAX_SEED = 2**32 - 1  # numpy's and Optuna's samplers take seeds in [0, 2**32)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

Condition = dict[str, Any]  # key -> value or list of values; the parameter is sampled only when all hold


class _Param(StrictModel):
    when: Optional[Condition] = None


class Choice(_Param):
    """Categorical, searched by the sampler."""

    distribution: Literal["choice"]
    values: list[Any] = Field(min_length=1)


class Grid(_Param):
    """Enumerated exhaustively: every value (combination, with other grid keys) runs `trials.num_samples` times."""

    distribution: Literal["grid"]
    values: list[Any] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self):
        for i, value in enumerate(self.values):
            if value in self.values[:i]:
                first = self.values.index(value)
                raise ValueError(
                    f"values[{i}] ({value!r}) repeats values[{first}]; grid values must be distinct (to "
                    f"run a point several times raise trials.num_samples)"
                )
        return self


class Uniform(_Param):
    distribution: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _range(self):
        if not self.low < self.high:
            raise ValueError(f"`low < high` must hold, but got (low={self.low}, high={self.high})")
        return self


class LogUniform(Uniform):
    distribution: Literal["loguniform"]  # type: ignore[assignment]

    @model_validator(mode="after")
    def _positive(self):
        if self.low <= 0:
            raise ValueError(f"`low > 0` must hold for loguniform, but got low={self.low}")
        return self


class QUniform(Uniform):
    distribution: Literal["quniform"]  # type: ignore[assignment]
    q: float = Field(gt=0)


class RandInt(_Param):
    """Integer in [low, high], both ends included."""

    distribution: Literal["randint"]
    low: int
    high: int

    @model_validator(mode="after")
    def _range(self):
        if not self.low <= self.high:
            raise ValueError(f"`low <= high` must hold, but got (low={self.low}, high={self.high})")
        return self


class Rows(StrictModel):
    """Listed combinations of several keys, each run like one grid point (`trials.num_samples` times, and combined
    with the other grid keys as a product). For recipes whose keys move together, e.g. a paper's table rows with
    per-row learning rate and epochs. Its name in `search` is a label, not a config key; it takes no `when`."""

    distribution: Literal["rows"]
    keys: list[str] = Field(min_length=1)
    values: list[list[Any]] = Field(min_length=1)

    @model_validator(mode="after")
    def _shape(self):
        repeated = sorted({k for k in self.keys if self.keys.count(k) > 1})
        if repeated:
            raise ValueError(f"keys must be distinct, but {repeated} repeat")
        for i, row in enumerate(self.values):
            if len(row) != len(self.keys):
                raise ValueError(f"values[{i}] has {len(row)} entries but there are {len(self.keys)} keys {self.keys}")
        return self

    def points(self) -> list[dict[str, Any]]:
        return [dict(zip(self.keys, row, strict=True)) for row in self.values]  # lengths checked above


Distribution = Annotated[
    Union[Choice, Grid, Uniform, LogUniform, QUniform, RandInt, Rows], Field(discriminator="distribution")
]
DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "quniform", "randint", "rows")


class OptunaSettings(StrictModel):
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = Field(0, ge=0, le=MAX_SEED)
    n_startup_trials: int = Field(10, ge=0)  # TPE: random trials before the model kicks in
    multivariate: bool = True
    group: bool = True  # TPE's grouped decomposition; right for conditional spaces
    constant_liar: bool = True  # keeps concurrent trials from all proposing the same point


class SchedulerSettings(StrictModel):
    type: Literal["asha", "none"] = "asha"
    grace_period: int = Field(1, ge=1)  # epochs before a trial can be stopped
    reduction_factor: float = Field(2.0, gt=1.0)
    max_t: Optional[int] = Field(None, ge=1)  # epochs; default: the task's epochs
    # Where ASHA decides (docs/benchmarks.md, "LR-drop-aware rungs"). Default: grace_period * reduction_factor**k.
    # `milestones`: explicit rung epochs. `rungs_after_lr_drop`: rungs at drop + grace_period * reduction_factor**k,
    # the drop read from the config (optim.lr_drop, or the last optim.milestones of a multistep schedule), so that a
    # configuration that only wins after the LR drop (QPIC / HQM schedules) is not stopped before it.
    milestones: Optional[list[int]] = None
    rungs_after_lr_drop: bool = False

    @model_validator(mode="after")
    def _grace_within_max_t(self):
        if self.type == "asha" and self.max_t is not None and self.grace_period > self.max_t:
            raise ValueError(
                f"`grace_period <= max_t` must hold, but got (grace_period={self.grace_period}, max_t={self.max_t})"
            )
        return self

    @model_validator(mode="after")
    def _rungs(self):
        if self.milestones is not None and self.rungs_after_lr_drop:
            raise ValueError("give either `milestones` or `rungs_after_lr_drop: true`, not both")
        if self.type != "asha" and (self.milestones is not None or self.rungs_after_lr_drop):
            raise ValueError(f"`milestones` / `rungs_after_lr_drop` place ASHA's rungs, but type is {self.type!r}")
        if self.milestones is not None:
            rungs = self.milestones
            if not rungs:
                raise ValueError("`milestones` must list at least one epoch (or drop the key)")
            if any(m < 1 for m in rungs) or any(b <= a for a, b in zip(rungs, rungs[1:], strict=False)):
                raise ValueError(f"`milestones` must be increasing epochs >= 1, but got {rungs}")
            if self.max_t is not None and rungs[-1] > self.max_t:
                raise ValueError(f"`milestones <= max_t` must hold, but got (milestones={rungs}, max_t={self.max_t})")
        return self


class Objective(StrictModel):
    # A metric the task reports (e.g. `map`), optionally with its split (`val.map`); default: the task's first
    # metric. The split follows `selection`: `val.<metric>` for `val`, `test.<metric>` otherwise.
    metric: Optional[str] = None
    mode: Literal["max", "min"] = "max"


# How a trial's numbers are selected (see docs/selection.md):
#   val   carve a validation split out of the training set; the objective, ASHA and Optuna see only validation
#         metrics; test metrics are reported beside them (the default, and the only choice for a searched space)
#   none  a fixed grid (`grid` / `rows` only, no scheduler) trained on the full training set as the papers did;
#         nothing is selected, the table shows test numbers
#   test  explicitly reproduce a published protocol that selected on the test set (e.g. a best-of-epochs test
#         number); the report flags it
SELECTIONS = ("val", "none", "test")


class Trials(StrictModel):
    num_samples: int = Field(8, ge=1)  # trials (per grid point when `grid` parameters exist)
    max_concurrent: Optional[int] = Field(None, ge=1)  # default: what the resources allow
    time_limit_s: Optional[float] = Field(None, gt=0)  # per-trial wall clock, then the trial is stopped


class Resources(StrictModel):
    num_workers: int = Field(1, ge=1)  # DDP workers per trial
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, ge=0)
    gpus_per_worker: Optional[float] = Field(None, ge=0)  # default: 1 when use_gpu
    driver_slots: Optional[int] = Field(None, ge=1)  # local `sweep_driver` resource; default: max concurrency
    # How a trial's workers spread over nodes: STRICT_PACK keeps an 8-GPU trial on one 8-GPU node.
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"

    @property
    def gpus(self) -> float:
        if not self.use_gpu:
            return 0.0
        return 1.0 if self.gpus_per_worker is None else self.gpus_per_worker

    @model_validator(mode="after")
    def _gpu(self):
        if not self.use_gpu and self.gpus_per_worker:
            raise ValueError("Either set use_gpu: true or leave gpus_per_worker unset")
        return self


class StorageSettings(StrictModel):
    path: str = "~/raysweep_results"  # local folder or URI (s3://, gs://)
    keep_checkpoints: int = Field(2, ge=1)
    cache_dir: Optional[str] = None  # embedded data + embeddings; default ~/.cache/raysweep

    @field_validator("path", "cache_dir")
    @classmethod
    def _location(cls, value: Optional[str]) -> Optional[str]:
        return value if value is None else check_storage(value)


class FailureSettings(StrictModel):
    worker_restarts: int = Field(2, ge=0)  # Ray Train: worker group restarts from the last checkpoint
    trial_retries: int = Field(1, ge=0)  # Ray Tune: relaunch of a trial whose driver died
    # Worker-group start attempts (each waits up to 60 s for resources) before the trial errors with the reason;
    # Ray's default waits forever. Raise it on autoscaling clusters whose GPU nodes take minutes to boot.
    start_attempts: int = Field(5, ge=1)


class RaySettings(StrictModel):
    address: Optional[str] = None  # None: start a local instance; "auto" or "ray://host:10001": join a cluster
    # Local instances only: false starts no dashboard process, for ray installed without its [default] extra (the
    # dashboard's packages) or machines where nobody will look at it.
    dashboard: bool = True
    dashboard_host: str = "127.0.0.1"  # anything else is reachable from the network: a warning at validation
    dashboard_port: int = Field(8265, ge=1, le=65535)

    @property
    def dashboard_is_public(self) -> bool:
        return self.dashboard and self.dashboard_host not in LOOPBACK_HOSTS

    report_interval_s: float = Field(0.2, gt=0)  # Train → Tune poll interval (Ray's default 2 s is slow locally)


class TrackingSettings(StrictModel):
    """Experiment trackers, each a Tune callback in the sweep's process (raysweep/sweep/tracking.py): one run per
    trial named after the trial id, its full config logged once, its reported numbers once per epoch (step = epoch).
    Credentials never go in this file: W&B reads WANDB_API_KEY (or `wandb login`), MLflow its MLFLOW_* variables."""

    wandb: bool = False
    wandb_project: Optional[str] = None  # default: WANDB_PROJECT, else the experiment name
    wandb_entity: Optional[str] = None  # default: WANDB_ENTITY, else the key's default entity
    wandb_mode: Optional[Literal["online", "offline", "disabled"]] = None  # default: WANDB_MODE, else online
    mlflow: bool = False
    mlflow_uri: Optional[str] = None  # default: MLFLOW_TRACKING_URI, else a file store <experiment>/_mlruns
    mlflow_experiment: Optional[str] = None  # default: the experiment name
    tensorboard: bool = True  # Ray's event files in each trial folder (tensorboard --logdir <experiment>)


SECTIONS = (
    "task",
    "name",
    "description",
    "selection",
    "config",
    "search",
    "optuna",
    "scheduler",
    "objective",
    "trials",
    "resources",
    "storage",
    "failure",
    "ray",
    "tracking",
)


class SpaceFile(StrictModel):
    task: str
    name: Optional[str] = None
    description: str = ""
    selection: Literal["val", "none", "test"] = "val"
    config: dict[str, Any] = {}
    search: dict[str, Distribution] = {}
    optuna: OptunaSettings = OptunaSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    objective: Objective = Objective()
    trials: Trials = Trials()
    resources: Resources = Resources()
    storage: StorageSettings = StorageSettings()
    failure: FailureSettings = FailureSettings()
    ray: RaySettings = RaySettings()
    tracking: TrackingSettings = TrackingSettings()

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: Optional[str]) -> Optional[str]:
        return value if value is None else check_name(value)
