"""An experiment's Optuna study for plots and importance: the journal the searcher keeps, else rebuilt from the
trials' report histories (the same facts the searcher told Optuna: final value of completed trials, per-epoch
intermediate values of pruned ones, failures)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from raysweep.experiment import storage
from raysweep.experiment.layout import STUDY_FILE
from raysweep.experiment.study import TRIAL_ID_ATTR, encode_value, outcome, study_storage
from raysweep.spec.load import Sweep
from raysweep.spec.schema import Choice, Grid, LogUniform, QUniform, RandInt, Uniform

log = logging.getLogger(__name__)


def distributions(sweep: Sweep) -> dict[str, BaseDistribution]:
    """Optuna distributions of the searched keys, as `DefineByRun` suggests them."""
    out: dict[str, BaseDistribution] = {}
    for key, dist in sweep.params.items():
        if isinstance(dist, (Choice, Grid)):
            out[key] = CategoricalDistribution([encode_value(dist, v) for v in dist.values])
        elif isinstance(dist, RandInt):
            out[key] = IntDistribution(dist.low, dist.high)
        elif isinstance(dist, QUniform):
            out[key] = FloatDistribution(dist.low, dist.high, step=dist.q)
        elif isinstance(dist, LogUniform):
            out[key] = FloatDistribution(dist.low, dist.high, log=True)
        elif isinstance(dist, Uniform):
            out[key] = FloatDistribution(dist.low, dist.high)
    return out


def rebuilt_study(sweep: Sweep, trials: Sequence[Mapping[str, Any]]) -> optuna.Study:
    """An in-memory study with one frozen trial per Tune trial, numbered in the order given (`collect.trial_rows`
    lists them in the order Tune created them; their ids are random)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if sweep.mode == "max" else "minimize")
    dists = distributions(sweep)
    for trial in trials:
        history = trial.get("history") or []
        if trial.get("status") not in ("TERMINATED", "ERROR"):
            state, value = TrialState.RUNNING, None
        else:
            state, value = outcome(history[-1] if history else None, sweep.metric, trial.get("status") == "ERROR")
        params, used = {}, {}
        for key, value_ in (trial.get("sampled") or {}).items():
            if key in dists:
                param = sweep.params[key]
                encoded = encode_value(param, value_) if isinstance(param, (Choice, Grid)) else value_
                if dists[key]._contains(dists[key].to_internal_repr(encoded)):
                    params[key], used[key] = encoded, dists[key]
        intermediate = {}
        for report in history:
            v, epoch = report.get(sweep.metric), report.get("epoch")
            if epoch is not None and isinstance(v, (int, float)) and math.isfinite(v) and report.get("evaluated", True):
                intermediate[int(epoch)] = float(v)
        if state == TrialState.PRUNED and intermediate:
            value = intermediate[max(intermediate)]  # what Optuna's own pruners record
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=value if state in (TrialState.COMPLETE, TrialState.PRUNED) else None,
                params=params,
                distributions=used,
                intermediate_values=intermediate,
                user_attrs={TRIAL_ID_ATTR: trial["trial_id"]},
            )
        )
    return study


def load_study(experiment_dir: str, sweep: Sweep, trials: Sequence[Mapping[str, Any]]) -> tuple[optuna.Study, str]:
    """(study, where it came from): the experiment's journal when it exists locally and holds the trials, else the
    rebuilt one."""
    journal = storage.join(experiment_dir, STUDY_FILE)
    if not storage.is_uri(journal) and storage.exists(journal):
        try:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            backend = study_storage(journal)
            names = optuna.get_all_study_names(backend)
            if len(names) == 1:
                study = optuna.load_study(study_name=names[0], storage=backend)
                if study.trials:
                    return study, journal
        except Exception as exc:  # noqa: BLE001 - a journal being written or of another version: rebuild instead
            log.warning(
                "%s: not readable as an Optuna journal (%s); rebuilding the study from the trials", journal, exc
            )
    return rebuilt_study(sweep, trials), "rebuilt from the trials' reports"


def common_rung(study: optuna.Study) -> int | None:
    """The last epoch every finished trial was evaluated at (ASHA's first rung when some were pruned), or None."""
    finished = [
        t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.intermediate_values
    ]
    if len(finished) < 2:
        return None
    shared = set.intersection(*(set(t.intermediate_values) for t in finished))
    return max(shared) if shared else None


def study_at_epoch(study: optuna.Study, epoch: int) -> optuna.Study:
    """A copy where every trial evaluated at `epoch` is complete with its value there: completed and pruned trials
    compared at the same budget, for parallel coordinates and importance when few trials ran to the end."""
    at = optuna.create_study(directions=study.directions)
    for trial in study.trials:
        if epoch in trial.intermediate_values:
            at.add_trial(
                optuna.trial.create_trial(
                    state=TrialState.COMPLETE,
                    value=trial.intermediate_values[epoch],
                    params=trial.params,
                    distributions=trial.distributions,
                    user_attrs=trial.user_attrs,
                )
            )
    return at
