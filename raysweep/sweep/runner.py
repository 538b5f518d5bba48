"""`raysweep tune`: start or join Ray, run (or resume) the Optuna + ASHA sweep, then write the parquet.

Experiment layout: `<storage>/<name>/` holds Tune's own files, `raysweep_space.yaml` (the space file as given),
`raysweep_meta.json` (overrides, versions, commit; written when the first trial starts), `raysweep.lock` (the live
sweep that owns the folder), `_train/<trial id>/` (each trial's Train run and checkpoints) and `results.parquet`.
Faults and what survives them: docs/fault_tolerance.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from raysweep.errors import UserError
from raysweep.spec.load import Sweep, load_sweep
from raysweep.sweep import sessions, storage
from raysweep.sweep.driver import DRIVER_RESOURCE, TrialPlan, make_trainable
from raysweep.sweep.study import STUDY_FILE
from raysweep.sweep.lock import ExperimentLock
from raysweep.sweep.reaper import Reaper, start_reaper

log = logging.getLogger(__name__)
SPACE_COPY = "raysweep_space.yaml"
META_FILE = "raysweep_meta.json"
RESULTS_FILE = "results.parquet"
DEFAULT_CACHE = "~/.cache/raysweep"
@dataclass
class SweepOutcome:
    experiment_dir: str
    parquet: str
    num_trials: int
    wall_time_s: float


def cache_dir(sweep: Sweep) -> Path:
    return Path(os.path.expanduser(sweep.spec.storage.cache_dir or DEFAULT_CACHE))


def prepare_task(sweep: Sweep) -> None:
    """Run the task's once-per-sweep preparation (embedded data, caches) here, before any trial starts: once for
    every combination of its `prepare_keys` the search can pick (e.g. each text encoder × prompt template).

    Workers run it again (a cache hit) and apply its config updates themselves, so trial configs keep the user's
    values (e.g. `data.root: null` for the embedded data) and nodes without this machine's cache still work.
    """
    from raysweep.sweep.console import preparing
    from raysweep.sweep.prepare import prepare_combinations

    combinations = prepare_combinations(sweep)
    with preparing(f"task {sweep.spec.task!r}: data and caches for {len(combinations)} setting(s) of "
                   f"{', '.join(sweep.task_cls.prepare_keys)} in {cache_dir(sweep)}"):
        for combination in combinations:
            sweep.task_cls.prepare(sweep.config_for(combination), cache_dir(sweep))


def _versions() -> dict[str, str]:
    import optuna
    import ray
    import torch

    import raysweep

    return {"raysweep": raysweep.__version__, "torch": torch.__version__, "ray": ray.__version__,
            "optuna": optuna.__version__, "git_commit": git_commit() or "", "python": sys.version.split()[0]}


def git_commit() -> Optional[str]:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _concurrency(sweep: Sweep, cluster: dict[str, float], local: bool) -> int:
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
        need = (f"{cpu_need:g} CPUs and {gpu_need:g} GPUs (resources.num_workers={res.num_workers} × "
                f"cpus_per_worker={res.cpus_per_worker:g}, gpus per worker={res.gpus:g})")
        if local:
            raise UserError(f"resources: a trial needs {need} but this Ray instance has {have}; lower "
                            f"resources.num_workers / cpus_per_worker, set resources.use_gpu=false, or join a cluster "
                            f"with --address")
        log.warning("the cluster has %s now, a trial needs %s: trials queue until the autoscaler adds nodes", have, need)
        cap = sweep.spec.trials.max_concurrent or max(1, int(cluster.get(DRIVER_RESOURCE, 1)))
    wanted = sweep.spec.trials.max_concurrent or cap
    return max(1, min(wanted, cap if local else wanted, sweep.num_trials))


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at a host:port address (Ray itself retries for long)."""
    import socket

    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected auto, host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(f"--address {address}: nothing answers at {host}:{port} ({exc.strerror or exc}); is the "
                        f"cluster up (`ray up cluster.yaml`) and the port forwarded?") from None


def dashboard_port(host: str, preferred: int) -> int:
    """`preferred` if free, else any free port: two local sweeps on one machine must not collide on 8265."""
    import socket

    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
                return probe.getsockname()[1]
            except OSError:
                continue
    return preferred


@contextlib.contextmanager
def _local_start_lock(timeout_s: float = 120.0):
    """A machine-wide file lock held from choosing the dashboard port until Ray has bound it: without it, two
    sweeps started a second apart both find 8265 free and the second one's dashboard fails to start."""
    import fcntl
    import tempfile

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

    settings = sweep.spec.ray
    env = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": str(settings.report_interval_s), "TOKENIZERS_PARALLELISM": "false",
           # Ray's 60 s for a worker group to start is too short on a loaded 2-core machine (import torch, etc.)
           "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": os.environ.get("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "180")}
    runtime_env = {"env_vars": env}
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # eval-less epochs carry no objective
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic trial table: status, epoch, loss, objective
    if address:
        check_reachable(address)
    from raysweep.progress import notice

    notice(f"Joining the Ray cluster at {address} ..." if address else "Starting a local Ray instance ...")
    try:
        if address:
            context = ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING,
                               log_to_driver=False)
        else:
            from raysweep.sweep.local_ray import bind_to_loopback

            bind_to_loopback()  # node address 127.0.0.1, not the machine's routable one (docs/security.md)
            with _local_start_lock():  # two sweeps started together must not both pick the same free port
                dashboard = ({"dashboard_host": settings.dashboard_host,
                              "dashboard_port": dashboard_port(settings.dashboard_host, settings.dashboard_port)}
                             if settings.dashboard else {})
                context = ray.init(address="local", num_cpus=os.cpu_count(), resources={DRIVER_RESOURCE: slots},
                                   include_dashboard=settings.dashboard, **dashboard, runtime_env=runtime_env,
                                   logging_level=logging.WARNING, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 - ray raises many types; the user needs one line
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if address and any(word in text.lower() for word in ("token", "auth", "401", "unauthenticated")):
            raise UserError(f"--address {address}: the cluster uses token authentication; set RAY_AUTH_MODE=token "
                            f"and copy the cluster's token to ~/.ray/auth_token ({text})") from None
        where = f"--address {address}" if address else "local Ray instance"
        raise UserError(f"{where}: cannot start or connect ({text})") from None
    from raysweep.sweep.console import dashboard_line

    line = dashboard_line(getattr(context, "dashboard_url", None))
    if line:
        print(line, flush=True)
    if address and DRIVER_RESOURCE not in ray.cluster_resources():
        ray.shutdown()
        raise UserError(f"--address {address}: the cluster has no {DRIVER_RESOURCE!r} resource for trial drivers; "
                        f"give the head node `resources: {{{DRIVER_RESOURCE}: 8}}` (see cluster.yaml)")


class SweepInterrupted(Exception):
    """Ctrl-C (SIGINT) stopped the sweep: the state is saved, the parquet holds what is done; exit 130."""

    def __init__(self, message: str, parquet: Optional[str]) -> None:
        super().__init__(message)
        self.parquet = parquet


class StorageLost(Exception):
    """The experiment folder vanished (or its lock was taken over) while the sweep ran; exit 1."""

    def __init__(self, message: str, parquet: Optional[str]) -> None:
        super().__init__(message)
        self.parquet = parquet


def resume_command(space: str, name: str, storage_root: str) -> str:
    import shlex

    return f"raysweep tune {shlex.quote(space)} --resume --name {shlex.quote(name)} --storage {shlex.quote(storage_root)}"


def run_sweep(sweep: Sweep, name: Optional[str] = None, storage_path: Optional[str] = None, resume: bool = False,
              address: Optional[str] = None, force_unlock: bool = False,
              space_arg: Optional[str] = None) -> SweepOutcome:
    """Everything that can fail on bad input fails before anything is written: storage, address, resources, data.

    One live sweep owns the experiment folder (`raysweep.lock`); a second one is refused. Ctrl-C stops the trials,
    saves the state and the parquet of what is done and raises `SweepInterrupted`; a vanished folder raises
    `StorageLost`. `space_arg` is the space file as the user typed it (for the resume hint).
    """
    started = time.time()
    root = storage.normalise(storage_path or sweep.spec.storage.path)
    name = name or sweep.name
    experiment_dir = storage.join(root, name)
    meta_path = storage.join(experiment_dir, META_FILE)
    storage.check_writable(root)
    lock = ExperimentLock(experiment_dir, force=force_unlock)
    lock.acquire()
    try:
        existing = storage.exists(meta_path)
        if existing and not resume:
            raise UserError(f"experiment {name!r} already exists at {experiment_dir}; continue it with --resume or "
                            f"choose another --name")
        # raysweep_meta.json is written when the first trial starts: without it, an earlier start failed inside
        # Ray Tune before any trial (leaving the space copy and Tune's files), and the folder can be started afresh.
        leftover = not existing and storage.exists(storage.join(experiment_dir, SPACE_COPY))
        if resume and not existing:
            why = " (an earlier start failed before its first trial)" if leftover else ""
            raise UserError(f"--resume: no raysweep experiment at {experiment_dir} (no {META_FILE}){why}; start it "
                            f"without --resume")
        if not existing and sessions.has_started_trials(experiment_dir):
            raise UserError(f"{experiment_dir} holds trial folders but no {META_FILE}; it is not a raysweep "
                            f"experiment that can be continued: choose another --name")
        if resume:
            sweep = _saved_sweep(experiment_dir, sweep)
        elif leftover or storage.exists(storage.join(experiment_dir, "tuner.pkl")):
            removed = sessions.clear_unstarted(experiment_dir)
            log.warning("experiment %r never started a trial (an earlier start failed inside Ray Tune); starting it "
                        "afresh%s", name, f" (removed {', '.join(removed)})" if removed else "")
        hint = resume_command(space_arg or str(sweep.path), name, root)
        return _run_locked(sweep, name, root, experiment_dir, resume, existing, address, lock, started, hint)
    except BaseException:
        if lock.info is not None and not storage.exists(meta_path):
            lock.release()
            lock.remove_folder_if_empty()
        raise
    finally:
        lock.release()


def _run_locked(sweep: Sweep, name: str, root: str, experiment_dir: str, resume: bool, keep_meta: bool,
                address: Optional[str], lock: ExperimentLock, started: float, hint: str) -> SweepOutcome:
    import ray
    from ray import tune

    res = sweep.spec.resources
    meta_path = storage.join(experiment_dir, META_FILE)
    # A Ray job's entrypoint has RAY_ADDRESS set by the job supervisor: join that cluster.
    address = address or sweep.spec.ray.address or os.environ.get("RAY_ADDRESS") or None
    local = not address
    if local:
        import torch

        _concurrency(sweep, {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}, local=True)
    else:
        check_reachable(address)
    from raysweep.sweep.tracking import check_tracking

    check_tracking(sweep, experiment_dir)
    prepare_task(sweep)
    stop = StopSignals()
    reaper = start_reaper() if local else Reaper(None)  # ends this instance's processes if we are SIGKILLed
    journal = None
    try:
        init_ray(sweep, address, res.driver_slots or max(1, sweep.num_trials))
        concurrency = _concurrency(sweep, ray.cluster_resources(), local=local)
        space_text = sweep.path.read_text()
        meta_text = json.dumps({
            "name": name, "task": sweep.spec.task, "space_file": str(sweep.path), "overrides": sweep.overrides,
            "metric": sweep.metric, "mode": sweep.mode, "selection": sweep.spec.selection,
            "num_trials": sweep.num_trials, "created": time.time(), "versions": _versions()}, indent=2)
        if not keep_meta:  # the space copy now, the meta file once the first trial starts (MetaOnFirstTrial)
            storage.write_text_atomic(storage.join(experiment_dir, SPACE_COPY), space_text)
        else:
            meta_text = storage.read_text(meta_path)
            space_text = storage.read_text(storage.join(experiment_dir, SPACE_COPY))
        plan = TrialPlan(task=sweep.spec.task, base_config=sweep.base_config, experiment_dir=experiment_dir,
                         cache_dir=str(cache_dir(sweep)), metric=sweep.metric, num_workers=res.num_workers,
                         use_gpu=res.use_gpu, cpus_per_worker=res.cpus_per_worker, gpus_per_worker=res.gpus,
                         placement_strategy=res.placement_strategy,
                         worker_restarts=sweep.spec.failure.worker_restarts,
                         controller_failure_limit=sweep.spec.failure.start_attempts,
                         keep_checkpoints=sweep.spec.storage.keep_checkpoints)
        journal = local_study_journal(experiment_dir, cache_dir(sweep), name)
        trainable = tune.with_resources(make_trainable(plan), {"CPU": 0, DRIVER_RESOURCE: 1})
        print(f"Experiment {name!r}: {sweep.num_trials} trials, up to {concurrency} at a time, "
              f"{res.num_workers} worker(s) each; storage {experiment_dir}", flush=True)
        lock.watch(stop.storage_lost)
        with stop.installed(), quiet_tune_hints():
            try:
                if resume:
                    moved = sessions.archive_results(experiment_dir)
                    log.info("kept the histories of %d trials as result.session-<k>.json", moved)
                    tuner = tune.Tuner.restore(experiment_dir, trainable=trainable, resume_unfinished=True,
                                               resume_errored=True)
                else:
                    from raysweep.sweep.meta_callback import MetaOnFirstTrial

                    if Path(journal).is_file():  # left by a start that never began a trial: its study is empty
                        Path(journal).unlink()
                    run_config = _run_config(sweep, root, name)
                    run_config.callbacks = [*(run_config.callbacks or []), MetaOnFirstTrial(meta_path, meta_text)]
                    tuner = tune.Tuner(trainable, tune_config=_tune_config(sweep, concurrency, journal, name),
                                       run_config=run_config)
                tuner.fit()
            except KeyboardInterrupt:  # a second Ctrl-C (Tune stopped without its last snapshot), or one before
                stop.interrupted = True  # Tune's loop began
    finally:
        ray.shutdown()
        reaper.done()
        if journal and journal != study_journal(experiment_dir) and Path(journal).is_file():  # URI: kept locally
            storage.write_bytes_atomic(study_journal(experiment_dir), Path(journal).read_bytes())
    from raysweep.results.collect import collect_experiment

    parquet = storage.join(experiment_dir, RESULTS_FILE)
    if stop.lost_reason:
        kept = _keep_after_loss(experiment_dir, meta_text, space_text, parquet)
        raise StorageLost(f"storage lost: {stop.lost_reason}; stopped the sweep. {kept}", kept and parquet)
    collect_experiment(experiment_dir, parquet)
    if stop.interrupted:
        raise SweepInterrupted(f"interrupted; the finished epochs are kept and the results so far are in {parquet}. "
                               f"Continue with: {hint}", parquet)
    return SweepOutcome(experiment_dir=experiment_dir, parquet=parquet, num_trials=sweep.num_trials,
                        wall_time_s=time.time() - started)


def study_journal(experiment_dir: str) -> str:
    """Where an experiment's Optuna study lives: Optuna's journal file, next to the results."""
    return storage.join(experiment_dir, STUDY_FILE)


def local_study_journal(experiment_dir: str, cache: Path, name: str) -> str:
    """The journal the searcher appends to: in the experiment folder, or on local disk for a URI experiment (Optuna
    journals need a file system; it is copied into the experiment when the sweep ends)."""
    if not storage.is_uri(experiment_dir):
        Path(experiment_dir).mkdir(parents=True, exist_ok=True)
        return study_journal(experiment_dir)
    folder = cache / "studies"
    folder.mkdir(parents=True, exist_ok=True)
    import hashlib

    return str(folder / f"{name}-{hashlib.sha1(experiment_dir.encode()).hexdigest()[:10]}.journal")


def _keep_after_loss(experiment_dir: str, meta_text: str, space_text: str, parquet: str) -> str:
    """Tune's last snapshot wrote the histories it still held back into the folder: make that a collectable
    experiment again (meta, space copy, parquet). Says what was kept."""
    from raysweep.results.collect import collect_experiment

    try:
        if not storage.exists(experiment_dir) or not sessions.trial_folders(experiment_dir):
            return "Nothing could be written back."
        storage.write_text_atomic(storage.join(experiment_dir, SPACE_COPY), space_text)
        storage.write_text_atomic(storage.join(experiment_dir, META_FILE), meta_text)
        frame = collect_experiment(experiment_dir, parquet)
    except (OSError, UserError) as exc:
        return f"Nothing could be written back ({exc})."
    return (f"The histories this process still held ({len(frame)} trials) are in {parquet}; the checkpoints were "
            f"lost, so --resume would restart those trials.")


class StopSignals:
    """Ctrl-C and storage loss both end Tune's loop the way its own SIGINT handler does (trials stopped, state
    saved, statuses left resumable), through the SIGUSR1 handler Tune installs for that; a second Ctrl-C stops at
    once. Our SIGINT handler replaces Tune's, so the interrupt is known and Ray's hint is not printed."""

    def __init__(self) -> None:
        self.interrupted = False
        self.lost_reason: Optional[str] = None
        self._previous = None

    def _stop_tune(self) -> None:
        import signal

        handler = signal.getsignal(signal.SIGUSR1)
        if callable(handler):  # Tune's loop is running: ask it to stop gracefully
            os.kill(os.getpid(), signal.SIGUSR1)
        else:  # before or after Tune's loop: stop whatever runs now
            import _thread

            _thread.interrupt_main()

    def on_sigint(self, signum, frame) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        print("raysweep: interrupted; stopping the trials and saving the experiment (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)
        self._stop_tune()

    def storage_lost(self, reason: str) -> None:
        if self.lost_reason is None:
            self.lost_reason = reason
            print(f"raysweep: storage lost: {reason}; stopping the sweep", file=sys.stderr, flush=True)
            self._stop_tune()

    @contextlib.contextmanager
    def installed(self):
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        previous = signal.signal(signal.SIGINT, self.on_sigint)
        previous_usr1 = signal.getsignal(signal.SIGUSR1)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGUSR1, previous_usr1)  # Tune leaves its handler behind
            if previous_env is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = previous_env


class _DropTuneHints(logging.Filter):
    """Ray's end-of-run lines that would mislead: its own restore hint (raysweep prints the command to run) and
    missing-metrics warnings for trials whose history raysweep keeps in session files."""

    PHRASES = ("Resume experiment with", "Resume training with", "Trials did not complete",
               "Failed to fetch metrics for", "Stop signal received")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(phrase in message for phrase in self.PHRASES)


@contextlib.contextmanager
def quiet_tune_hints():
    drop = _DropTuneHints()
    loggers = [logging.getLogger(n) for n in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis",
                                               "ray.tune.execution.tune_controller")]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


def _saved_sweep(experiment_dir: str, given: Sweep) -> Sweep:
    """On --resume the experiment's own copy of the space file and overrides win (the trials were drawn from it)."""
    import tempfile

    meta_path, space_path = storage.join(experiment_dir, META_FILE), storage.join(experiment_dir, SPACE_COPY)
    from raysweep.results.collect import check_meta_matches, parse_meta

    meta = parse_meta(storage.read_json(meta_path), meta_path)
    text = storage.read_text(space_path)
    folder = Path(tempfile.mkdtemp(prefix="raysweep-resume-"))
    copy = folder / Path(str(meta.get("space_file", "space.yaml"))).name
    copy.write_text(text)
    try:
        sweep = load_sweep(copy, meta.get("overrides", []))
    except UserError as err:
        raise UserError(str(err).replace(str(copy), space_path)) from None
    check_meta_matches(meta, sweep.spec.task, meta_path)
    if text != given.path.read_text() or list(meta.get("overrides", [])) != given.overrides:
        log.warning("--resume uses the experiment's saved space file and overrides, not the ones given now")
    sweep.path = given.path if text == given.path.read_text() else copy
    return sweep


def _tune_config(sweep: Sweep, concurrency: int, journal: str, study_name: str):
    from ray import tune

    from raysweep.sweep.optuna_space import DefineByRun, grid_points_to_evaluate, make_sampler
    from raysweep.sweep.scheduler import build_scheduler
    from raysweep.sweep.searcher import EpochAwareOptunaSearch
    from raysweep.sweep.study import study_storage

    searcher = EpochAwareOptunaSearch(space=DefineByRun(sweep), metric=sweep.metric, mode=sweep.mode,
                                      points_to_evaluate=grid_points_to_evaluate(sweep) or None,
                                      sampler=make_sampler(sweep), study_name=study_name,
                                      storage=study_storage(journal))
    return tune.TuneConfig(search_alg=searcher, scheduler=build_scheduler(sweep), num_samples=sweep.num_trials,
                           max_concurrent_trials=concurrency)


def _run_config(sweep: Sweep, root: str, name: str):
    from ray import tune

    from raysweep.sweep.console import TrialTable
    from raysweep.sweep.tracking import tracking_callbacks

    reporter = TrialTable(sweep.metric, sweep.mode, list(sweep.params), sweep.max_epochs)
    stop = {"time_total_s": sweep.spec.trials.time_limit_s} if sweep.spec.trials.time_limit_s else None
    return tune.RunConfig(name=name, storage_path=root, stop=stop, progress_reporter=reporter, verbose=1,
                          callbacks=tracking_callbacks(sweep, storage.join(root, name), name),
                          failure_config=tune.FailureConfig(max_failures=sweep.spec.failure.trial_retries))
