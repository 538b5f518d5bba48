"""Task names → cards (torch-free) and, through them, the Task classes, imported only where a task does work.

An entry names a `TaskCard` ("module:CARD") or a `Task` subclass ("module:Class", whose card is read off its class
attributes)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from raysweep.errors import ConfigError, did_you_mean
from raysweep.tasks.card import TaskCard, card_of

if TYPE_CHECKING:
    from raysweep.tasks.base import Task

TASKS: dict[str, str] = {
    "defr": "raysweep.tasks.defr.card:CARD",
    "hqm": "raysweep.tasks.hqm.card:CARD",
}


def get_card(name: str, where: str = "task") -> TaskCard:
    if name not in TASKS:
        raise ConfigError(f"{where}: unknown task {name!r}{did_you_mean(name, TASKS)}; allowed: {', '.join(TASKS)}")
    module, attr = TASKS[name].split(":")
    entry = getattr(importlib.import_module(module), attr)
    return entry if isinstance(entry, TaskCard) else card_of(entry)


def get_task(name: str, where: str = "task") -> type[Task]:
    return get_card(name, where).load()
