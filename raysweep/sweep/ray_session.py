"""Starting or joining Ray for a sweep: a local instance (loopback only, a free dashboard port) or a cluster at
`--address`, and how many trials the instance can run at once. Every failure is one line naming the cause."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from raysweep.errors import UserError
from raysweep.spec.load import Sweep
from raysweep.sweep.driver import DRIVER_RESOURCE
from raysweep.sweep.driver_slots import cap_by_driver_slots

log = logging.getLogger(__name__)


def local_gpus() -> int:
    """The GPUs a local instance will have, counted the way `ray.init` counts them (CUDA_VISIBLE_DEVICES, else
    NVML), without importing torch into the sweep's process."""
    from ray._private.accelerators import get_accelerator_manager_for_resource

    manager = get_accelerator_manager_for_resource("GPU")
    if manager is None:
        return 0
    count = manager.get_current_node_num_accelerators()
    visible = manager.get_current_process_visible_accelerator_ids()
    return min(count, len(visible)) if visible is not None else count


def concurrency(sweep: Sweep, cluster: dict[str, float], local: bool) -> int:
    """Trials at once: what `trials.max_concurrent` asks, capped by what the instance's CPUs and GPUs hold (a local
    instance that cannot hold one trial is the user's error; a cluster may still grow)."""
    res = sweep.spec.resources
    cpu_need = res.num_workers * res.cpus_per_worker
    gpu_need = res.num_workers * res.gpus
    caps = []
    if cpu_need > 0:
        caps.append(math.floor(cluster.get("CPU", 0) / cpu_need))
    if gpu_need > 0:
        caps.append(math.floor(cluster.get("GPU", 0) / gpu_need))
    cap = min(caps) if caps else sweep.num_trials
    if cap < 1:
        have = f"{cluster.get('CPU', 0):g} CPUs and {cluster.get('GPU', 0):g} GPUs"
        need = (
            f"{cpu_need:g} CPUs and {gpu_need:g} GPUs (resources.num_workers={res.num_workers} × "
            f"cpus_per_worker={res.cpus_per_worker:g}, gpus per worker={res.gpus:g})"
        )
        if local:
            raise UserError(
                f"resources: a trial needs {need} but this Ray instance has {have}; lower "
                f"resources.num_workers / cpus_per_worker, set resources.use_gpu=false, or join a cluster "
                f"with --address"
            )
        log.warning(
            "the cluster has %s now, a trial needs %s: trials queue until the autoscaler adds nodes", have, need
        )
        cap = sweep.spec.trials.max_concurrent or max(1, int(cluster.get(DRIVER_RESOURCE, 1)))
    wanted = sweep.spec.trials.max_concurrent or cap
    wanted = cap_by_driver_slots(wanted, cluster)  # trials beyond the driver slots would only queue, sampled blind
    return max(1, min(wanted, cap if local else wanted, sweep.num_trials))


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at a host:port address (Ray itself retries for long)."""
    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected auto, host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(
            f"--address {address}: nothing answers at {host}:{port} ({exc.strerror or exc}); is the "
            f"cluster up (`ray up cluster.yaml`) and the port forwarded?"
        ) from None


def dashboard_port(host: str, preferred: int) -> int:
    """`preferred` if free, else any free port: two local sweeps on one machine must not collide on 8265."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
                return probe.getsockname()[1]
            except OSError:
                continue
    return preferred


@contextlib.contextmanager
def local_start_lock(timeout_s: float = 120.0) -> Iterator[None]:
    """A machine-wide file lock held from choosing the dashboard port until Ray has bound it: without it, two
    sweeps started a second apart both find 8265 free and the second one's dashboard fails to start."""
    path = Path(tempfile.gettempdir(), f"raysweep-ray-start-{os.getuid()}.lock")
    with open(path, "a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:  # a hung start elsewhere: go on, as before this lock existed
                    break
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def init_ray(sweep: Sweep, address: Optional[str], slots: int) -> None:
    """Local instance (dashboard on 127.0.0.1 unless `ray.dashboard: false`) or join `address`; prints the dashboard
    URL."""
    import ray

    from raysweep.progress import notice
    from raysweep.sweep.console import dashboard_line
    from raysweep.sweep.local_ray import bind_to_loopback

    settings = sweep.spec.ray
    env = {
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": str(settings.report_interval_s),
        "TOKENIZERS_PARALLELISM": "false",
        # Ray's 60 s for a worker group to start is too short on a loaded 2-core machine (import torch, etc.)
        "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": os.environ.get("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "180"),
    }
    if not address:
        # Train's per-trial PreemptionWatcher actor polls for nodes being drained (spot instances); one machine has
        # no other node to lose, so a local instance saves the process (~120 MiB and a process start per trial).
        env["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] = os.environ.get("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    runtime_env = {"env_vars": env}
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # eval-less epochs carry no objective
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic trial table: status, epoch, loss, objective
    if address:
        check_reachable(address)
    notice(f"Joining the Ray cluster at {address} ..." if address else "Starting a local Ray instance ...")
    try:
        if address:
            context = ray.init(
                address=address, runtime_env=runtime_env, logging_level=logging.WARNING, log_to_driver=False
            )
        else:
            bind_to_loopback()  # node address 127.0.0.1, not the machine's routable one (docs/security.md)
            with local_start_lock():  # two sweeps started together must not both pick the same free port
                dashboard: dict[str, Any] = (
                    {
                        "dashboard_host": settings.dashboard_host,
                        "dashboard_port": dashboard_port(settings.dashboard_host, settings.dashboard_port),
                    }
                    if settings.dashboard
                    else {}
                )
                context = ray.init(
                    address="local",
                    num_cpus=os.cpu_count(),
                    resources={DRIVER_RESOURCE: slots},
                    include_dashboard=settings.dashboard,
                    **dashboard,
                    runtime_env=runtime_env,
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                )
    except Exception as exc:  # noqa: BLE001 - ray raises many types; the user needs one line
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if address and any(word in text.lower() for word in ("token", "auth", "401", "unauthenticated")):
            raise UserError(
                f"--address {address}: the cluster uses token authentication; set RAY_AUTH_MODE=token "
                f"and copy the cluster's token to ~/.ray/auth_token ({text})"
            ) from None
        where = f"--address {address}" if address else "local Ray instance"
        raise UserError(f"{where}: cannot start or connect ({text})") from None
    if not address:
        # Ray's helpers inside a trial (Train's placement-group cleaner) find the instance through Ray's address file;
        # `ray.init` of a local instance leaves it as it was, and a stale address from an earlier instance makes them
        # time out, leaving the placement groups of stopped trials (and their CPUs) behind.
        from ray._private.utils import write_ray_address

        write_ray_address(context.address_info["gcs_address"])  # type: ignore[attr-defined]
    line = dashboard_line(getattr(context, "dashboard_url", None))
    if line:
        print(line, flush=True)
    if address and DRIVER_RESOURCE not in ray.cluster_resources():
        ray.shutdown()
        raise UserError(
            f"--address {address}: the cluster has no {DRIVER_RESOURCE!r} resource for trial drivers; "
            f"give the head node `resources: {{{DRIVER_RESOURCE}: 8}}` (see cluster.yaml)"
        )
