"""Start-up timeline marks for `benchmarks/bench_trial_overhead.py`: off unless `RAYSWEEP_TIMELINE` names a file.

Each mark appends one JSON line {"event", "t" (wall clock), "pid"} to that file, from whichever process of the
trial reaches it (Tune driver, Train controller, workers); a local Ray instance inherits the variable from the
`raysweep tune` process that started it. With the variable unset a mark costs one dictionary look-up.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any

TIMELINE_ENV = "RAYSWEEP_TIMELINE"


def enabled() -> bool:
    return bool(os.environ.get(TIMELINE_ENV))


def mark(event: str) -> None:
    path = os.environ.get(TIMELINE_ENV)
    if not path:
        return
    line = json.dumps({"event": event, "t": time.time(), "pid": os.getpid()})
    with open(path, "a") as handle:  # one short write per line: lines of concurrent processes do not interleave
        handle.write(line + "\n")


def _first_call(event: str, function: Callable[..., Any], nth: int = 1) -> Callable[..., Any]:
    calls = [0]

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == nth:
            mark(event)
        return function(*args, **kwargs)

    return wrapper


def instrument_worker(task_name: str) -> None:
    """In a Train worker: mark the task's import, `build`, its first training step and the first report."""
    import ray.train

    from raysweep.tasks.registry import get_task

    task_cls = get_task(task_name)
    mark("task imported")
    build = task_cls.build

    @functools.wraps(build)
    def timed_build(self: Any, *args: Any, **kwargs: Any) -> Any:
        mark("Task.build start")
        parts = build(self, *args, **kwargs)
        mark("Task.build done")
        return parts

    task_cls.build = timed_build  # type: ignore[method-assign]
    task_cls.train_step = _first_call("first training step", task_cls.train_step)  # type: ignore[method-assign]
    task_cls.train_step = _first_call("second training step", task_cls.train_step, nth=2)  # type: ignore[method-assign]
    ray.train.report = _first_call("first report", ray.train.report)
