"""Task names → classes, imported lazily so `raysweep validate` of a DEFR file never imports the HQM model code."""

from __future__ import annotations

import importlib

from raysweep.errors import ConfigError, did_you_mean
from raysweep.tasks.base import Task

TASKS: dict[str, str] = {
    "defr": "raysweep.tasks.defr.task:DefrTask",
    "hqm": "raysweep.tasks.hqm.task:HqmTask",
}


def get_task(name: str, where: str = "task") -> type[Task]:
    if name not in TASKS:
        raise ConfigError(f"{where}: unknown task {name!r}{did_you_mean(name, TASKS)}; allowed: {', '.join(TASKS)}")
    module, attr = TASKS[name].split(":")
    return getattr(importlib.import_module(module), attr)
