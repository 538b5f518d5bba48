"""The function `TorchTrainer` ships to the Train controller and workers, in a module that imports nothing heavy.

Ray pickles `train_loop_per_worker` by reference, so every process that unpickles it imports its module: the
Train controller too, which only passes it on. Importing `raysweep.sweep.worker` there would load torch and the task
code (~0.5 GB, seconds of imports) into a process that never trains; this entry point imports it on the worker.
"""

from __future__ import annotations

from typing import Any

from raysweep.sweep import timeline


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    timeline.mark("worker loop entered")
    if timeline.enabled():
        timeline.instrument_worker(loop_config["task"])
    from raysweep.sweep.worker import train_loop_per_worker as run

    run(loop_config)
