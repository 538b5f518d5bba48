"""A Ray Train torch trainer whose Tune driver and Train controller never import torch.

`ray.train.torch.TorchTrainer` builds a `TorchConfig`, and its module imports torch at the top: every trial's Tune
driver and Train controller then load torch (~0.5 GB RSS and 5-10 s of imports each on the 2-core machine) only to
tell the workers to call `init_process_group`. `LightTorchConfig` does the same process-group set-up with backend
methods that run in the controller on plain Ray calls, and sends the workers small functions that import Ray's torch
helpers there, where torch is loaded anyway. Set-up, shutdown and the device context follow Ray 2.60's
`ray.train.torch.config._TorchBackend` (TPU slices are not supported: raysweep schedules CPUs and GPUs).

Measured: docs/benchmarks.md, "Trial start-up and memory".
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from ray.train.backend import Backend, BackendConfig
from ray.train.v2._internal.util import TrainingFramework
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

from raysweep.sweep import timeline


def _worker_set_env_vars(addr: str, port: int) -> None:
    os.environ["MASTER_ADDR"] = addr
    os.environ["MASTER_PORT"] = str(port)


def _worker_distributed_env_vars() -> None:
    from ray.train.torch.config import _set_torch_distributed_env_vars

    _set_torch_distributed_env_vars()


def _worker_setup_process_group(**kwargs: Any) -> None:
    from ray.train.torch.config import _setup_torch_process_group

    _setup_torch_process_group(**kwargs)


def _worker_shutdown(destroy_process_group: bool) -> None:
    from ray.train.torch.config import _shutdown_torch

    _shutdown_torch(destroy_process_group=destroy_process_group)


class _DeviceContext:
    """The workers' train-function context: select the worker's CUDA device (Ray's TorchConfigContextManager)."""

    def __enter__(self) -> None:
        from ray.train.torch.config import TorchConfigContextManager

        TorchConfigContextManager().__enter__()

    def __exit__(self, *exc: Any) -> None:
        return None


class _LightTorchBackend(Backend):
    share_cuda_visible_devices: bool = True

    def on_start(self, worker_group: Any, backend_config: BackendConfig) -> None:  # a LightTorchConfig
        from ray.train._internal.utils import get_address_and_port

        timeline.mark("worker group started")
        backend = getattr(backend_config, "backend", None) or (
            "nccl" if worker_group.get_resources_per_worker().get("GPU", 0) > 0 else "gloo"
        )
        addr, port = worker_group.execute_single(0, get_address_and_port)
        worker_group.execute(_worker_set_env_vars, addr=addr, port=port)
        worker_group.execute(_worker_distributed_env_vars)
        import ray

        ray.get(
            [
                worker_group.execute_single_async(
                    i,
                    _worker_setup_process_group,
                    backend=backend,
                    world_rank=i,
                    world_size=len(worker_group),
                    init_method="env://",
                    timeout_s=getattr(backend_config, "timeout_s", 1800),
                )
                for i in range(len(worker_group))
            ]
        )
        timeline.mark("process group ready")

    def on_shutdown(self, worker_group: Any, backend_config: BackendConfig) -> None:
        import ray
        from ray.exceptions import GetTimeoutError

        futures = worker_group.execute_async(_worker_shutdown, destroy_process_group=len(worker_group) > 1)
        with contextlib.suppress(GetTimeoutError):
            ray.get(futures, timeout=float(os.environ.get("TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S", 30)))


@dataclass
class LightTorchConfig(BackendConfig):
    """`TorchConfig`'s fields (backend None: gloo on CPUs, nccl on GPUs; env:// init) without importing torch."""

    backend: Optional[str] = None
    timeout_s: int = 1800

    @property
    def backend_cls(self) -> type[Backend]:
        return _LightTorchBackend

    @property
    def train_func_context(self) -> type[_DeviceContext]:
        return _DeviceContext

    @property
    def framework(self) -> TrainingFramework:
        return TrainingFramework.TORCH

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "init_method": "env", "timeout_s": self.timeout_s}


class _TrainerWithoutDatasetManager(DataParallelTrainer):
    """Ray 2.60's trainer starts a `DatasetManager` actor for every worker group, with or without Ray Data datasets:
    a process (~120 MiB PSS) and one of the node's few concurrent process starts per trial. raysweep's tasks load
    their own data, so without datasets the callback that starts it is left out (workers then get no dataset shard
    provider, which only `ray.train.get_dataset_shard` would use)."""

    def _create_default_callbacks(self) -> list[Any]:
        from ray.train.v2._internal.callbacks.datasets import DatasetsCallback

        callbacks = super()._create_default_callbacks()
        if self.datasets:
            return callbacks
        return [callback for callback in callbacks if not isinstance(callback, DatasetsCallback)]


def _timeline_callback() -> Any:
    """Marks of the controller's steps for `bench_trial_overhead.py` (only when the timeline is on)."""
    from ray.train.v2._internal.execution.callback import ControllerCallback, WorkerGroupCallback

    class ControllerTimeline(ControllerCallback, WorkerGroupCallback):
        def after_controller_start(self, train_run_context: Any) -> None:
            timeline.mark("controller: control loop starts")

        def before_worker_group_start(self, worker_group_context: Any) -> None:
            timeline.mark("controller: worker group start")

        def after_worker_group_start(self, worker_group: Any) -> None:
            timeline.mark("controller: worker group started")

    return ControllerTimeline()


def light_torch_trainer(train_loop_per_worker: Callable[[dict[str, Any]], None], **kwargs: Any) -> DataParallelTrainer:
    """`TorchTrainer(...)` with the same keyword arguments, on `LightTorchConfig`."""
    timeline.mark("trainer built")
    if timeline.enabled():
        run_config = kwargs["run_config"]
        run_config.callbacks = [*(run_config.callbacks or []), _timeline_callback()]
    return _TrainerWithoutDatasetManager(
        train_loop_per_worker=train_loop_per_worker, backend_config=LightTorchConfig(), **kwargs
    )
