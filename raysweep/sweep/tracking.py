"""Experiment trackers from the space file's `tracking:` section, as Tune callbacks in the sweep's own process.

W&B and MLflow are Tune callbacks over each library's own API (`raysweep.sweep.tracker_callbacks`), so that every
tracker shows the same thing: one run per trial named after the trial id (e.g. `3b260cdb`, the `trial_id` column
of results.parquet), the trial's full config (base config + sampled values, dotted keys) logged once, and its
reported numbers once per epoch with step = epoch (Tune's iteration counter restarts on --resume; the epoch does not).
TensorBoard needs nothing: Ray's `TBXLoggerCallback` writes `<experiment>/<trial folder>/events.out.tfevents.*`
(scalars `ray/tune/<metric>`); `tracking.tensorboard: false` leaves it out.

Credentials never pass through raysweep's files: W&B reads WANDB_API_KEY (or `wandb login`'s ~/.netrc) itself, in
the sweep's process; MLflow reads its MLFLOW_* variables.
"""

from __future__ import annotations

import importlib.util
import netrc
import os
import sys
from typing import Any

from raysweep.errors import UserError
from raysweep.experiment import storage
from raysweep.experiment.layout import MLFLOW_DIR
from raysweep.spec.load import Sweep, flatten

TRIAL_TAG = "raysweep.trial_id"
# Tune's own fields of a result: not measurements of the trial
BOOKKEEPING = (
    "timestamp",
    "pid",
    "time_this_iter_s",
    "time_since_restore",
    "iterations_since_restore",
    "done",
    "date",
    "hostname",
    "node_ip",
    "config",
    "trial_id",
    "experiment_tag",
    "checkpoint_dir_name",
    "should_checkpoint",
    "experiment_id",
)


def wandb_mode(sweep: Sweep) -> str:
    return sweep.spec.tracking.wandb_mode or os.environ.get("WANDB_MODE") or "online"


def mlflow_uri(sweep: Sweep, experiment_dir: str) -> str:
    """The configured URI, else MLFLOW_TRACKING_URI, else a file store inside a local experiment folder."""
    uri = sweep.spec.tracking.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    if storage.is_uri(experiment_dir):
        raise UserError(
            f"tracking.mlflow: the experiment lives at {experiment_dir}, where MLflow cannot keep a file "
            f"store; set tracking.mlflow_uri (e.g. http://mlflow-server:5000) or MLFLOW_TRACKING_URI"
        )
    return "file://" + storage.join(experiment_dir, MLFLOW_DIR)


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def check_tracking(sweep: Sweep, experiment_dir: str) -> None:
    """Refuse, before Ray starts, a tracker that cannot work: its package missing, or W&B online without a key."""
    settings = sweep.spec.tracking
    for wanted, module, package in (
        (settings.wandb, "wandb", "wandb"),
        (settings.mlflow, "mlflow", "mlflow"),
        (settings.tensorboard, "tensorboardX", "tensorboardX"),
    ):
        if wanted and importlib.util.find_spec(module) is None:
            key = "tensorboard" if module == "tensorboardX" else module
            raise UserError(
                f"tracking.{key}: the {package} package is not installed; pip install 'raysweep[track]' "
                f"or set tracking.{key}=false"
            )
    if settings.wandb and wandb_mode(sweep) == "online" and not _has_wandb_key():
        raise UserError(
            "tracking.wandb: no W&B API key; export WANDB_API_KEY (or run `wandb login`), never in the "
            "space file, or log locally with tracking.wandb_mode=offline"
        )
    if settings.mlflow:
        mlflow_uri(sweep, experiment_dir)


def full_config(base_config: dict[str, Any], sampled: dict[str, Any]) -> dict[str, Any]:
    """The trial's whole config as dotted keys: what `collect` writes as config.<key> columns."""
    from raysweep.sweep.driver import trial_config

    return flatten(trial_config(base_config, sampled))


def measurements(result: dict[str, Any]) -> dict[str, float]:
    """The numbers a trial reported (loss, metrics, lr, images_per_s, epoch, ...), without Tune's bookkeeping."""
    return {
        key: float(value)
        for key, value in result.items()
        if key not in BOOKKEEPING and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def tracking_callbacks(sweep: Sweep, experiment_dir: str, name: str) -> list:
    """The Tune callbacks for `sweep.spec.tracking` (an empty list when every tracker is off)."""
    settings = sweep.spec.tracking
    callbacks: list = []
    if settings.wandb:
        from raysweep.sweep.tracker_callbacks import TrialWandbCallback

        callbacks.append(
            TrialWandbCallback(
                base_config=sweep.base_config,
                project=settings.wandb_project or os.environ.get("WANDB_PROJECT") or name,
                group=name,
                entity=settings.wandb_entity,
                mode=settings.wandb_mode,
            )
        )
    if settings.mlflow:
        from raysweep.sweep.tracker_callbacks import TrialMLflowCallback

        uri = mlflow_uri(sweep, experiment_dir)
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks to opt in to its file store
        callbacks.append(
            TrialMLflowCallback(
                base_config=sweep.base_config,
                tracking_uri=uri,
                experiment_name=settings.mlflow_experiment or name,
                tags={"raysweep.experiment": name},
            )
        )
    if settings.tensorboard:
        import_tensorboardx_without_torch()
    else:
        from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

        # Tune adds its CSV, JSON and TensorBoard loggers unless told not to; `collect` needs the JSON one.
        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
        callbacks += [CSVLoggerCallback(), JsonLoggerCallback()]
    return callbacks


def import_tensorboardx_without_torch() -> None:
    """tensorboardX's writer imports torch when torch is installed, only to accept torch tensors besides numpy's;
    in the sweep's process, where Tune's TensorBoard logger writes plain floats, that would load torch (~500 MB for
    the whole sweep) for nothing. Import it once with torch hidden, before Tune's logger does."""
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError meanwhile
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        pass  # not installed: Tune then skips its TensorBoard logger, as before
    finally:
        del sys.modules["torch"]
