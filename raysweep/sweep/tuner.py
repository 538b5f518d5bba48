"""The Ray Tune run of a sweep: searcher, scheduler and run config, and fitting a new or restored `Tuner`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raysweep.experiment import storage
from raysweep.experiment.layout import ExperimentLayout
from raysweep.spec.load import Sweep
from raysweep.sweep import sessions
from raysweep.sweep.stop_signals import StopSignals

log = logging.getLogger(__name__)


def fit(
    trainable: Callable[..., Any],
    sweep: Sweep,
    layout: ExperimentLayout,
    storage_root: str,
    name: str,
    concurrency: int,
    journal: str,
    resume: bool,
    meta_text: str,
    stop: StopSignals,
) -> None:
    """Run Tune until the sweep ends or `stop` ends it (Ctrl-C, storage loss); a new sweep writes the meta file when
    its first trial starts, a resumed one restores Tune's state and continues unfinished and errored trials."""
    from ray import tune

    from raysweep.sweep.console import quiet_tune_hints

    with stop.installed(), quiet_tune_hints():
        try:
            if resume:
                moved = sessions.archive_results(layout.root)
                log.info("kept the histories of %d trials as result.session-<k>.json", moved)
                tuner = tune.Tuner.restore(
                    layout.root, trainable=trainable, resume_unfinished=True, resume_errored=True
                )
            else:
                from raysweep.sweep.meta_callback import MetaOnFirstTrial

                if Path(journal).is_file():  # left by a start that never began a trial: its study is empty
                    Path(journal).unlink()
                config = run_config(sweep, storage_root, name)
                config.callbacks = [*(config.callbacks or []), MetaOnFirstTrial(layout.meta, meta_text)]
                tuner = tune.Tuner(
                    trainable, tune_config=tune_config(sweep, concurrency, journal, name), run_config=config
                )
            tuner.fit()
        except KeyboardInterrupt:  # a second Ctrl-C (Tune stopped without its last snapshot), or one before
            stop.interrupted = True  # Tune's loop began


def tune_config(sweep: Sweep, concurrency: int, journal: str, study_name: str):
    from ray import tune

    from raysweep.experiment.study import study_storage
    from raysweep.sweep.optuna_space import DefineByRun, grid_points_to_evaluate, make_sampler
    from raysweep.sweep.scheduler import build_scheduler
    from raysweep.sweep.searcher import EpochAwareOptunaSearch

    searcher = EpochAwareOptunaSearch(
        space=DefineByRun(sweep),
        metric=sweep.metric,
        mode=sweep.mode,
        points_to_evaluate=grid_points_to_evaluate(sweep) or None,
        sampler=make_sampler(sweep),
        study_name=study_name,
        storage=study_storage(journal),
    )
    return tune.TuneConfig(
        search_alg=searcher,
        scheduler=build_scheduler(sweep),
        num_samples=sweep.num_trials,
        max_concurrent_trials=concurrency,
    )


def run_config(sweep: Sweep, storage_root: str, name: str):
    from ray import tune

    from raysweep.sweep.console import TrialTable
    from raysweep.sweep.tracking import tracking_callbacks

    reporter = TrialTable(sweep.metric, sweep.mode, list(sweep.params), sweep.max_epochs)
    stop = {"time_total_s": sweep.spec.trials.time_limit_s} if sweep.spec.trials.time_limit_s else None
    return tune.RunConfig(
        name=name,
        storage_path=storage_root,
        stop=stop,
        progress_reporter=reporter,
        verbose=1,
        callbacks=tracking_callbacks(sweep, storage.join(storage_root, name), name),
        failure_config=tune.FailureConfig(max_failures=sweep.spec.failure.trial_retries),
    )
