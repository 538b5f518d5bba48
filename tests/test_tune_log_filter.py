"""A failed trial's traceback from Tune's controller becomes one line on the console (the reason stays in error.txt)."""

from __future__ import annotations

import logging

from ray.exceptions import RayTaskError

from raysweep.errors import TrialFailure
from raysweep.sweep.console import quiet_tune_hints


def _emit(exception: BaseException) -> list[str]:
    logger = logging.getLogger("ray.tune.execution.tune_controller")
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    logger.addHandler(handler)
    try:
        with quiet_tune_hints():
            logger.error("Trial task failed for trial raysweep_trial_8f1c803a", exc_info=exception)
        logger.error("Trial task failed for trial raysweep_trial_2", exc_info=exception)  # outside: untouched
    finally:
        logger.removeHandler(handler)
    return lines


def test_a_failed_trial_is_one_line_with_its_reason() -> None:
    try:
        raise TrialFailure("loss is NaN at epoch 3")
    except TrialFailure as exc:
        error = exc
    inside, outside = _emit(error)
    assert inside == "Trial task failed for trial raysweep_trial_8f1c803a: TrialFailure: loss is NaN at epoch 3"
    assert "Traceback" in outside


def test_a_ray_task_error_names_the_trials_own_exception() -> None:
    try:
        raise TrialFailure("no readable checkpoint to resume from: a/state.pt: EOFError")
    except TrialFailure as exc:
        wrapped = RayTaskError("raysweep_trial", "Traceback (most recent call last):\n  File x\n", exc)
    inside, _ = _emit(wrapped)
    assert "\n" not in inside and "Traceback" not in inside
    assert inside.endswith("TrialFailure: no readable checkpoint to resume from: a/state.pt: EOFError"), inside
