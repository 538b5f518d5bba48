"""Running (or resuming) a sweep: open the experiment folder, check what can fail before Ray starts, start or join
Ray, let Tune run the trials, and leave the folder collectable. Collecting it is the caller's step
(`raysweep.commands.tune`).

The folder's files: `raysweep.experiment.layout`. Faults and what survives them: docs/fault_tolerance.md.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Optional

from raysweep.experiment import storage
from raysweep.experiment.meta import meta_text as new_meta_text
from raysweep.spec.load import Sweep
from raysweep.sweep.driver import DRIVER_RESOURCE, TrialPlan, make_trainable
from raysweep.sweep.experiment_folder import OpenedExperiment, opened_experiment, resume_command, write_back_after_loss
from raysweep.sweep.ray_session import check_reachable, concurrency, init_ray, local_gpus
from raysweep.sweep.reaper import Reaper, start_reaper
from raysweep.sweep.stop_signals import StopSignals
from raysweep.sweep.study_journal import local_study_journal, save_study_journal
from raysweep.sweep.task_cache import cache_dir, prepare_task


@dataclass
class SweepOutcome:
    experiment_dir: str
    parquet: str  # where the results belong (`results.parquet` in the experiment): not written yet
    num_trials: int
    wall_time_s: float


class SweepInterrupted(Exception):
    """Ctrl-C (SIGINT) stopped the sweep: the state is saved; collect what is done into `parquet`; exit 130."""

    def __init__(self, message: str, experiment_dir: str, parquet: str) -> None:
        super().__init__(message)
        self.experiment_dir = experiment_dir
        self.parquet = parquet


class StorageLost(Exception):
    """The experiment folder vanished (or its lock was taken over) while the sweep ran; exit 1.

    `parquet` is set when the histories Tune still held were written back into a collectable folder, else
    `nothing_kept` says why not."""

    def __init__(self, reason: str, experiment_dir: str, parquet: Optional[str], nothing_kept: Optional[str]) -> None:
        super().__init__(f"storage lost: {reason}; stopped the sweep")
        self.reason = reason
        self.experiment_dir = experiment_dir
        self.parquet = parquet
        self.nothing_kept = nothing_kept


def run_sweep(
    sweep: Sweep,
    name: Optional[str] = None,
    storage_path: Optional[str] = None,
    resume: bool = False,
    address: Optional[str] = None,
    force_unlock: bool = False,
    space_arg: Optional[str] = None,
) -> SweepOutcome:
    """Everything that can fail on bad input fails before anything is written: storage, address, resources, data.

    One live sweep owns the experiment folder (`raysweep.lock`); a second one is refused. Ctrl-C stops the trials,
    saves the state and raises `SweepInterrupted`; a vanished folder raises `StorageLost`. `space_arg` is the space
    file as the user typed it (for the resume hint).
    """
    started = time.time()
    with opened_experiment(sweep, name, storage_path, resume, force_unlock) as opened:
        hint = resume_command(space_arg or str(opened.sweep.path), opened.name, opened.storage_root)
        _run_opened(opened, address, hint)
    return SweepOutcome(
        experiment_dir=opened.layout.root,
        parquet=opened.layout.results,
        num_trials=opened.sweep.num_trials,
        wall_time_s=time.time() - started,
    )


def _run_opened(opened: OpenedExperiment, address: Optional[str], hint: str) -> None:
    import ray
    from ray import tune

    from raysweep.sweep.tracking import check_tracking
    from raysweep.sweep.tuner import fit

    sweep, layout, name = opened.sweep, opened.layout, opened.name
    res = sweep.spec.resources
    # A Ray job's entrypoint has RAY_ADDRESS set by the job supervisor: join that cluster.
    address = address or sweep.spec.ray.address or os.environ.get("RAY_ADDRESS") or None
    local = address is None
    if address is None:
        concurrency(sweep, {"CPU": float(os.cpu_count() or 1), "GPU": float(local_gpus())}, local=True)
    else:
        check_reachable(address)
    check_tracking(sweep, layout.root)
    prepare_task(sweep)
    stop = StopSignals()
    reaper = start_reaper() if local else Reaper(None)  # ends this instance's processes if we are SIGKILLed
    journal = None
    try:
        init_ray(sweep, address, res.driver_slots or max(1, sweep.num_trials))
        at_once = concurrency(sweep, ray.cluster_resources(), local=local)
        if not opened.existing:  # the space copy now, the meta file once the first trial starts (MetaOnFirstTrial)
            space_text = sweep.path.read_text()
            meta_text = new_meta_text(
                name=name,
                task=sweep.spec.task,
                space_file=str(sweep.path),
                overrides=sweep.overrides,
                metric=sweep.metric,
                mode=sweep.mode,
                selection=sweep.spec.selection,
                num_trials=sweep.num_trials,
            )
            storage.write_text_atomic(layout.space_copy, space_text)
        else:
            meta_text = storage.read_text(layout.meta)
            space_text = storage.read_text(layout.space_copy)
        journal = local_study_journal(layout, cache_dir(sweep), name)
        trainable = tune.with_resources(make_trainable(_trial_plan(sweep, layout.root)), {"CPU": 0, DRIVER_RESOURCE: 1})
        print(
            f"Experiment {name!r}: {sweep.num_trials} trials, up to {at_once} at a time, "
            f"{res.num_workers} worker(s) each; storage {layout.root}",
            flush=True,
        )
        opened.lock.watch(stop.storage_lost)
        fit(trainable, sweep, layout, opened.storage_root, name, at_once, journal, opened.resume, meta_text, stop)
    finally:
        ray.shutdown()
        reaper.done()
        if journal:
            save_study_journal(journal, layout)
    if stop.lost_reason:
        nothing_kept = write_back_after_loss(layout, meta_text, space_text)
        raise StorageLost(stop.lost_reason, layout.root, None if nothing_kept else layout.results, nothing_kept)
    if stop.interrupted:
        raise SweepInterrupted(
            f"interrupted; the finished epochs are kept and the results so far are in "
            f"{layout.results}. Continue with: {hint}",
            layout.root,
            layout.results,
        )


def _trial_plan(sweep: Sweep, experiment_dir: str) -> TrialPlan:
    res = sweep.spec.resources
    return TrialPlan(
        task=sweep.spec.task,
        base_config=sweep.base_config,
        experiment_dir=experiment_dir,
        cache_dir=str(cache_dir(sweep)),
        metric=sweep.metric,
        num_workers=res.num_workers,
        use_gpu=res.use_gpu,
        cpus_per_worker=res.cpus_per_worker,
        gpus_per_worker=res.gpus,
        placement_strategy=res.placement_strategy,
        worker_restarts=sweep.spec.failure.worker_restarts,
        controller_failure_limit=sweep.spec.failure.start_attempts,
        keep_checkpoints=sweep.spec.storage.keep_checkpoints,
    )
