"""Which shared artefacts a sweep needs: the distinct values of the task's `prepare_keys` its trials can take.

`Task.prepare` runs once per such combination before any trial starts (e.g. DEFR's text embeddings for every text
encoder × prompt template the search can pick), so trials and their workers only read the cache.
"""

from __future__ import annotations

import json
from typing import Any

from raysweep.config_tree import get_path
from raysweep.spec.load import Sweep
from raysweep.spec.schema import Choice, Grid, Rows
from raysweep.sweep.optuna_space import condition_holds


def prepare_combinations(sweep: Sweep) -> list[dict[str, Any]]:
    """Each distinct {prepare key: value} a trial of `sweep` can have, in search order; always at least one.

    Choice and grid values are enumerated, `rows` entries row by row, and a parameter counts only where its `when`
    holds (elsewhere the fixed config's value stays). Continuous distributions cannot name a value to prepare: a
    prepare key swept that way keeps its fixed value here.
    """
    keys = sweep.card.prepare_keys
    relevant = set(keys) | {
        cond for dist in sweep.params.values() if not isinstance(dist, Rows) for cond in (dist.when or {})
    }
    states: list[dict[str, Any]] = [{}]  # the relevant searched keys set so far, one dict per reachable combination
    for key, dist in sweep.spec.search.items():
        if isinstance(dist, Rows):
            options = _distinct([{k: v for k, v in point.items() if k in relevant} for point in dist.points()])
            states = _distinct([{**state, **option} for state in states for option in options])
        elif isinstance(dist, (Choice, Grid)) and key in relevant:
            grown = []
            for state in states:
                if condition_holds(dist.when, state, sweep.base_config):
                    grown += [{**state, key: value} for value in dist.values]
                else:
                    grown.append(state)
            states = _distinct(grown)
    base = sweep.base_config
    return _distinct([{k: state[k] if k in state else get_path(base, k) for k in keys} for state in states])


def _distinct(dicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """First occurrence of each dict, compared by value (values may be lists, so not hashable)."""
    seen, out = set(), []
    for item in dicts:
        marker = json.dumps(item, sort_keys=True, default=str)
        if marker not in seen:
            seen.add(marker)
            out.append(item)
    return out
