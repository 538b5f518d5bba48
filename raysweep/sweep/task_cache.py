"""The task's once-per-sweep preparation (embedded data, caches), run before any trial starts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

from raysweep.spec.load import Sweep
from raysweep.tasks.base import TaskConfig

DEFAULT_CACHE = "~/.cache/raysweep"


def cache_dir(sweep: Sweep) -> Path:
    return Path(os.path.expanduser(sweep.spec.storage.cache_dir or DEFAULT_CACHE))


def prepare_task(sweep: Sweep) -> None:
    """Run the task's preparation here, before any trial starts: once for every combination of its `prepare_keys`
    the search can pick (e.g. each text encoder × prompt template).

    Workers run it again (a cache hit) and apply its config updates themselves, so trial configs keep the user's
    values (e.g. `data.root: null` for the embedded data) and nodes without this machine's cache still work.
    """
    from raysweep.sweep.console import preparing
    from raysweep.sweep.prepare import prepare_combinations

    combinations = prepare_combinations(sweep)
    with preparing(
        f"task {sweep.spec.task!r}: data and caches for {len(combinations)} setting(s) of "
        f"{', '.join(sweep.task_cls.prepare_keys)} in {cache_dir(sweep)}"
    ):
        for combination in combinations:
            sweep.task_cls.prepare(cast(TaskConfig, sweep.config_for(combination)), cache_dir(sweep))
