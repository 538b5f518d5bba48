"""Space file → Optuna: a define-by-run function (conditional parameters), a seeded sampler, grid points."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from raysweep.experiment.study import encode_value
from raysweep.spec.load import Sweep, get_path
from raysweep.spec.schema import Choice, Grid, LogUniform, QUniform, RandInt, Uniform


def condition_holds(when: Mapping[str, Any] | None, chosen: Mapping[str, Any], base: Mapping[str, Any]) -> bool:
    """Whether a parameter's `when` holds: each key's value (sampled so far, else fixed in the base config) is one
    of the wanted values."""
    for key, wanted in (when or {}).items():
        wanted_values = wanted if isinstance(wanted, list) else [wanted]
        current = chosen[key] if key in chosen else get_path(base, key)
        if current not in wanted_values:
            return False
    return True


class DefineByRun:
    """The function Optuna calls per trial; returns {dotted key: value} for the sampled (active) parameters.

    A class, not a closure: Tune pickles the searcher (and this with it) into its experiment snapshots.
    """

    def __init__(self, sweep: Sweep):
        self.params = dict(sweep.params)
        self.base = sweep.base_config

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        chosen: dict[str, Any] = {}
        for key, dist in self.params.items():
            if not condition_holds(getattr(dist, "when", None), chosen, self.base):
                continue
            if isinstance(dist, (Choice, Grid)):
                options = [encode_value(dist, v) for v in dist.values]
                picked = trial.suggest_categorical(key, options)
                chosen[key] = dist.values[options.index(picked)]
            elif isinstance(dist, RandInt):
                chosen[key] = trial.suggest_int(key, dist.low, dist.high)
            elif isinstance(dist, QUniform):
                chosen[key] = trial.suggest_float(key, dist.low, dist.high, step=dist.q)
            elif isinstance(dist, LogUniform):
                chosen[key] = trial.suggest_float(key, dist.low, dist.high, log=True)
            elif isinstance(dist, Uniform):
                chosen[key] = trial.suggest_float(key, dist.low, dist.high)
        return chosen


def grid_points_to_evaluate(sweep: Sweep) -> list[dict[str, Any]]:
    """Each grid combination enqueued `num_samples` times, so the sampler fills in only the other parameters."""
    points = []
    for point in sweep.grid_points():
        encoded = {k: encode_value(sweep.params[k], v) for k, v in point.items()}  # type: ignore[arg-type]
        points += [dict(encoded) for _ in range(sweep.spec.trials.num_samples)]
    return points


def make_sampler(sweep: Sweep) -> optuna.samplers.BaseSampler:
    settings = sweep.spec.optuna
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    return optuna.samplers.TPESampler(
        seed=settings.seed,
        n_startup_trials=settings.n_startup_trials,
        multivariate=settings.multivariate,
        group=settings.group and settings.multivariate,
        constant_liar=settings.constant_liar,
    )
